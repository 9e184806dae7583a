"""The store interface behaves the same on the embedded engine and on qdrant-client (local mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from visdoc.store import (
    CollectionNotFoundError,
    CollectionSpec,
    PageFilter,
    PagePoint,
    QueryVectors,
    StoreError,
    StoreLockedError,
    open_store,
    point_id,
)

DIM = 32


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def make_points(n: int = 24, seed: int = 0) -> list[PagePoint]:
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        doc = f"doc{i % 3}"
        points.append(
            PagePoint(
                point_id(doc, i),
                unit(rng.normal(size=DIM)),
                unit(rng.normal(size=(int(rng.integers(5, 40)), 128))),
                {"document_id": doc, "source": f"/data/{doc}.pdf", "page": i, "kind": "page_image"},
            )
        )
    return points


def exact_maxsim(query: np.ndarray, points: list[PagePoint]) -> np.ndarray:
    return np.array([(query @ p.multivector.T).max(axis=1).sum() for p in points])


@pytest.fixture(params=["edge", "edge-engine-process", "server-local"])
def store(request, tmp_path):
    spec = CollectionSpec(dim=DIM, model="test-model")
    if request.param == "edge-engine-process":  # every call forwarded to the engine's child process
        s = open_store("pages", spec, data_dir=tmp_path)
        with s.engine_process():
            yield s
        s.close()
        return
    if request.param == "edge":
        s = open_store("pages", spec, data_dir=tmp_path)
    else:
        from qdrant_client import QdrantClient

        s = open_store("pages", spec, client=QdrantClient(":memory:"))
    yield s
    s.close()


def test_upsert_count_retrieve_and_scroll(store):
    points = make_points()
    store.upsert(points)
    store.upsert(points[:5])  # same ids: replaced, not duplicated
    assert store.count() == len(points)
    wanted = [points[7].id, str(uuid.uuid4()), points[2].id]
    records = store.retrieve(wanted, with_vectors=True)
    assert [r.id for r in records] == [points[7].id, points[2].id]
    assert records[0].payload["page"] == 7
    np.testing.assert_allclose(records[0].multivector, points[7].multivector, atol=2e-3)  # float16 storage
    np.testing.assert_allclose(records[0].dense, points[7].dense, atol=1e-5)
    first, offset = store.scroll(limit=10)
    assert len(first) == 10 and offset is not None
    assert sorted(r.id for r in store.iter_records(batch=7)) == sorted(p.id for p in points)


def test_filters_select_documents_sources_and_page_ranges(store):
    points = make_points()
    store.upsert(points)
    assert store.count(PageFilter(document_ids=("doc1",))) == 8
    assert store.count(PageFilter(document_ids=("doc0", "doc1"))) == 16
    assert store.count(PageFilter(sources=("/data/doc2.pdf",))) == 8
    in_range = store.count(PageFilter(document_ids=("doc0",), page_from=3, page_to=12))
    assert in_range == len([p for p in points if p.payload["document_id"] == "doc0" and 3 <= p.payload["page"] <= 12])
    subset = (points[1].id, points[5].id)
    assert store.count(PageFilter(ids=subset)) == 2
    query = QueryVectors(points[0].dense, points[0].multivector[:4])
    assert {h.id for h in store.search(query, k=10, mode="multivector", where=PageFilter(ids=subset))} == set(subset)
    hits = store.search(query, k=50, where=PageFilter(page_from=10))
    assert hits and all(h.payload["page"] >= 10 for h in hits)


def test_search_modes_rank_like_exact_maxsim(store):
    points = make_points()
    store.upsert(points)
    target = points[9]
    query = QueryVectors(target.dense, target.multivector[:6])
    exact = exact_maxsim(query.multivector, points)
    expected = [points[i].id for i in np.argsort(-exact)[:5]]
    multi = store.search(query, k=5, mode="multivector")
    assert [h.id for h in multi] == expected
    np.testing.assert_allclose([h.score for h in multi], np.sort(exact)[::-1][:5], atol=2e-2)
    rerank = store.search(query, k=5, mode="rerank", prefetch=len(points))  # prefetch all: same as exact
    assert [h.id for h in rerank] == expected
    dense = store.search(query, k=3, mode="dense")
    assert dense[0].id == target.id and dense[0].score == pytest.approx(1.0, abs=1e-4)
    narrow = store.search(query, k=2, prefetch=2, pooled_prefetch=0)  # only the dense top-2 are reranked
    top2 = {h.id for h in store.search(query, k=2, mode="dense")}
    assert {h.id for h in narrow} == top2
    pooled_only = store.search(query, k=5, prefetch=0, pooled_prefetch=len(points))
    assert [h.id for h in pooled_only] == expected
    assert store.search(query, k=1, prefetch=0, pooled_prefetch=3)[0].id == target.id  # centroids find it
    with pytest.raises(ValueError, match="needs a first stage"):
        store.search(query, prefetch=0, pooled_prefetch=0)
    with pytest.raises(ValueError, match="unknown search mode"):
        store.search(query, mode="fuzzy")  # hybrid is a mode now: see tests/test_hybrid.py


def test_delete_by_document_and_refusal_of_empty_filters(store):
    store.upsert(make_points())
    assert store.delete_document("doc2") == 8
    assert store.count() == 16 and store.count(PageFilter(document_ids=("doc2",))) == 0
    assert store.delete_document("doc2") == 0
    with pytest.raises(ValueError, match="empty filter"):
        store.delete(PageFilter())


def test_finish_pending_runs_the_optimize_writes_left_pending(store):
    store.upsert(make_points())
    folder = getattr(store, "path", None)  # an embedded collection's folder
    pending = None if folder is None else folder / "optimize.pending"
    assert pending is None or pending.exists()
    store.finish_pending()
    store.finish_pending()  # nothing pending any more: a no-op
    assert store.count() == 24
    assert pending is None or not pending.exists()


def test_pooled_first_stage_can_be_left_out(tmp_path):
    with open_store("c", CollectionSpec(dim=DIM, pool_size=0), data_dir=tmp_path) as store:
        points = make_points()
        store.upsert(points)
        query = QueryVectors(points[3].dense, points[3].multivector[:4])
        assert store.search(query, k=1)[0].id == points[3].id  # dense prefetch alone
        with pytest.raises(ValueError, match="needs a first stage"):
            store.search(query, prefetch=0)


def test_embedded_collection_persists_and_keeps_its_spec(tmp_path):
    spec = CollectionSpec(dim=DIM, model="m", multivector_datatype="float32")
    with open_store("c", spec, data_dir=tmp_path) as store:
        store.upsert(make_points())
    with open_store("c", data_dir=tmp_path) as store:
        assert store.spec == spec and store.count() == 24
    with pytest.raises(StoreError, match="dim 32, not 64"):
        open_store("c", CollectionSpec(dim=64), data_dir=tmp_path)
    with pytest.raises(CollectionNotFoundError, match="no collection 'other'"):
        open_store("other", data_dir=tmp_path)


def test_second_process_on_an_embedded_collection_gets_a_clear_error(tmp_path):
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        store.upsert(make_points(3))
        code = f"from visdoc.store import open_store\nopen_store('c', data_dir={str(tmp_path)!r})\n"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode != 0
        assert "StoreLockedError" in result.stderr and f"process {os.getpid()}" in result.stderr
        with pytest.raises(StoreLockedError):  # in this process too
            open_store("c", data_dir=tmp_path)
    with open_store("c", data_dir=tmp_path) as store:  # released on close
        assert store.count() == 3


def _alive(pid: int) -> bool:
    """Whether the process exists (an exited child not yet waited for still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_engine_process_takes_the_collection_and_hands_it_back(tmp_path):
    points = make_points()
    query = QueryVectors(points[4].dense, points[4].multivector[:5])
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        store.upsert(points[:10])
        with store.engine_process():
            pid = store._child.pid
            assert pid != os.getpid() and _alive(pid)
            store.upsert(points[10:])
            with pytest.raises(Exception, match="dimension"):  # the engine's own error, raised here
                store.upsert([PagePoint(point_id("x", 0), unit(np.ones(DIM + 1)), unit(np.ones((3, 128))), {})])
            assert store.count() == 24
            with pytest.raises(StoreLockedError):  # this process still holds the collection
                open_store("c", data_dir=tmp_path)
            store.delete_ids([points[0].id])
        assert store._child is None and not _alive(pid)
        assert store.count() == 23  # what the child wrote, seen here
        left = points[1:]
        expected = [left[i].id for i in np.argsort(-exact_maxsim(query.multivector, left))[:5]]
        assert [h.id for h in store.search(query, k=5, mode="multivector")] == expected
    with open_store("c", data_dir=tmp_path) as store:
        assert store.count() == 23


def test_engine_process_blocks_nest_and_share_one_child(tmp_path):
    points = make_points()
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        with store.engine_process():
            pid = store._child.pid
            with store.engine_process():  # an Ingestor inside a caller's block does this
                assert store._child.pid == pid
                store.upsert(points[:12])
            assert store._child.pid == pid and store.count() == 12  # still there for the outer block
        assert store._child is None and store.count() == 12


def test_engine_process_switches_under_concurrent_readers(tmp_path):
    points = make_points()
    errors, stop = [], threading.Event()
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        store.upsert(points[:4])

        def read() -> None:
            while not stop.is_set():
                try:
                    assert store.count() >= 4
                    store.retrieve([points[0].id])
                except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                    errors.append(exc)
                    return

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        for i in range(4):
            with store.engine_process():
                store.upsert(points[4 + 5 * i : 9 + 5 * i])
        stop.set()
        for t in readers:
            t.join()
        assert not errors and store.count() == 24


def test_a_dead_engine_process_gives_a_clear_error_and_the_collection_comes_back(tmp_path):
    points = make_points()
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        with pytest.raises(StoreError, match="engine process of collection 'c' stopped"):
            with store.engine_process():
                store.upsert(points[:10])
                os.kill(store._child.pid, signal.SIGKILL)
                store.upsert(points[10:])
        assert store.count() == 10  # acknowledged writes survive
        store.upsert(points[10:])
        assert store.count() == 24


def test_an_interrupted_call_stops_the_engine_process_and_keeps_the_collection(tmp_path, monkeypatch):
    points = make_points()
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        with store.engine_process():
            store.upsert(points[:10])
            child = store._child
            monkeypatch.setattr(child, "_conn", _InterruptedAfterSending(child._conn))
            with pytest.raises(KeyboardInterrupt):  # Ctrl-C while waiting for the reply
                store.upsert(points[10:])
            with pytest.raises(StoreError, match="interrupted"):
                store.count()
        assert not _alive(child.pid)
        assert store.count() in (10, 24)  # the interrupted write may or may not have been done
        store.upsert(points)
        assert store.count() == 24


def test_a_hung_engine_process_is_stopped_at_the_end_of_the_block(tmp_path, monkeypatch):
    from visdoc.store import engine_process

    monkeypatch.setattr(engine_process, "REPLY_TIMEOUT_S", 1.0)
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        pids = []

        def hang_in_block() -> None:
            with store.engine_process():
                store.upsert(make_points()[:5])
                pids.append(store._child.pid)
                os.kill(pids[0], signal.SIGSTOP)

        block = threading.Thread(target=hang_in_block)
        block.start()
        block.join(timeout=60)
        assert not block.is_alive(), "the end of the block waits for a hung child"
        assert not _alive(pids[0]) and store.count() == 5


def test_a_collection_that_cannot_be_reopened_says_so_and_leaves_no_process(tmp_path, monkeypatch):
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        reopen = store._reopen

        def fail_once():
            monkeypatch.setattr(store._qe, "EdgeShard", None)  # loading fails here
            try:
                return reopen()
            finally:
                monkeypatch.undo()

        monkeypatch.setattr(store, "_reopen", fail_once)
        with pytest.raises(StoreError, match="could not reopen collection 'c'"):
            with store.engine_process():
                store.upsert(make_points()[:5])
                pid = store._child.pid
        assert not _alive(pid)
        with pytest.raises(StoreError, match="close it and open it again"):
            store.count()
    with open_store("c", data_dir=tmp_path) as store:
        assert store.count() == 5


def test_closing_the_store_inside_the_block_releases_everything(tmp_path):
    with open_store("c", CollectionSpec(dim=DIM), data_dir=tmp_path) as store:
        with store.engine_process():
            store.upsert(make_points()[:5])
            pid = store._child.pid
            store.close()
            with pytest.raises(StoreError, match="closed"):
                store.count()
        assert not _alive(pid)
    with open_store("c", data_dir=tmp_path) as store:  # neither the lock nor the engine is held
        assert store.count() == 5


class _InterruptedAfterSending:
    """A connection whose next recv() is interrupted, as by Ctrl-C; later ones work."""

    def __init__(self, conn) -> None:
        self._conn, self._interrupted = conn, False

    def recv(self):
        if not self._interrupted:
            self._interrupted = True
            raise KeyboardInterrupt
        return self._conn.recv()

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_server_uploads_are_split_by_request_size():
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    store = open_store("c", CollectionSpec(dim=DIM), client=client, max_request_bytes=400_000)
    sizes = []
    original = client.upsert

    def spy(collection_name, points, **kwargs):
        sizes.append(sum(len(p.model_dump_json()) for p in points))  # what REST would send
        assert kwargs.get("wait") is True
        return original(collection_name, points, **kwargs)

    client.upsert = spy
    store.upsert(make_points(24))
    assert len(sizes) > 1 and max(sizes) <= 400_000 and store.count() == 24


def test_server_collection_is_created_with_cluster_options():
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    calls = {}
    original = client.create_collection

    def spy(name, **kwargs):
        calls.update(kwargs)
        return original(name, **kwargs)

    client.create_collection = spy
    spec = CollectionSpec(dim=DIM, quantization="binary")
    open_store("c", spec, client=client, shard_number=4, replication_factor=2, write_consistency_factor=2)
    assert (calls["shard_number"], calls["replication_factor"], calls["write_consistency_factor"]) == (4, 2, 2)
    multi = calls["vectors_config"]["multi"]
    assert multi.multivector_config.comparator.value == "max_sim" and multi.hnsw_config.m == 0
    assert multi.datatype.value == "float16" and multi.quantization_config.binary is not None
    assert calls["vectors_config"]["dense"].size == DIM
    assert open_store("c", client=client).spec == spec  # read back from the collection metadata


def test_cluster_options_an_existing_server_collection_lacks_are_refused(monkeypatch):
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    open_store("c", CollectionSpec(dim=DIM), client=client).close()
    original = client.get_collection

    def as_a_server_reports(name):  # local mode has no shards and reports none
        info = original(name)
        info.config.params.shard_number, info.config.params.replication_factor = 2, 1
        return info

    monkeypatch.setattr(client, "get_collection", as_a_server_reports)
    with pytest.raises(StoreError, match=r"exists with shard_number=2: shard_number: set only when"):
        open_store("c", CollectionSpec(dim=DIM), client=client, shard_number=4)
    open_store("c", CollectionSpec(dim=DIM), client=client, shard_number=2, replication_factor=1).close()  # as it is


@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL")
def test_real_qdrant_server_roundtrip():
    name = f"visdoc-test-{uuid.uuid4().hex[:8]}"
    store = open_store(name, CollectionSpec(dim=DIM), url=os.environ["QDRANT_URL"],
                       api_key=os.environ.get("QDRANT_API_KEY"))  # fmt: skip
    try:
        points = make_points()
        store.upsert(points)
        assert store.count() == len(points)
        query = QueryVectors(points[4].dense, points[4].multivector[:5])
        assert store.search(query, k=1)[0].id == points[4].id
        assert store.delete_document("doc1") == 8 and store.count() == 16
    finally:
        store.client.delete_collection(name)
        store.close()


def test_grpc_goes_to_the_port_next_to_the_rest_port_of_the_url():
    from visdoc.store.server import grpc_port_for

    assert grpc_port_for("http://localhost:6333") == 6334
    assert grpc_port_for("http://qdrant-cluster:7333") == 7334  # docker-compose's cluster profile
    assert grpc_port_for("https://example.cloud.qdrant.io") == 6334
