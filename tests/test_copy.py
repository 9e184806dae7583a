"""Moving collections as stored: embedded <-> server, resumable after a kill, checked at the end."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from qdrant_client import QdrantClient

from visdoc.cli import main
from visdoc.store import CollectionSpec, PagePoint, QueryVectors, StoreError, copy_collection, open_store, point_id
from visdoc.store.transfer import check_copy, difference

DIM = 32
WORDS = ["invoice", "revenue", "quarter", "contract", "shipping", "warranty", "audit", "budget"]


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def pages(n: int, seed: int = 0, dim: int = DIM, tokens: int = 24) -> list[PagePoint]:
    """Page images with a 4x4 patch grid between 4 template tokens; two in three have text."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, 6)) + f" code-{i}" if i % 3 else ""
        payload = {"document_id": f"doc{i % 4}", "source": f"/d/{i % 4}.pdf", "page": i, "kind": "page_image",
                   "text": text}  # fmt: skip
        out.append(PagePoint(point_id(f"doc{i % 4}", i), unit(rng.normal(size=dim)),
                             unit(rng.normal(size=(tokens, 128))), payload, (4, 20), (4, 4)))  # fmt: skip
    return out


def assert_same_points(a, b, ids) -> None:  # noqa: ANN001 - two stores
    """Every point of ``ids`` equal in both stores: payload, and each vector within float16 rounding."""
    mine, theirs = a.retrieve_stored(ids), {p.id: p for p in b.retrieve_stored(ids)}
    assert len(mine) == len(ids) == len(theirs)
    for point in mine:
        assert difference(point, theirs[point.id]) == "", point.id


def all_ids(store) -> list[str]:  # noqa: ANN001
    return sorted(r.id for r in store.iter_records())


SPECS = {
    "default": CollectionSpec(dim=DIM, model="m"),
    "token pooling x2, row/column means": CollectionSpec(dim=DIM, model="m", token_pool_factor=2, rowcol=True),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_copy_embedded_to_server_and_back_keeps_every_vector_as_stored(tmp_path, name):
    spec = SPECS[name]
    points = pages(40)
    source = open_store("src", spec, data_dir=tmp_path / "a")
    source.upsert(points)
    source.optimize()
    client = QdrantClient(path=str(tmp_path / "q"))
    server = open_store("mid", source.spec, client=client)
    report = copy_collection(source, server, batch_bytes=60_000)
    assert (report.total, report.copied, report.present, report.checked) == (40, 40, 0, 32)
    assert open_store("mid", client=client).spec == spec  # the server's metadata holds the source's spec
    back = open_store("back", server.spec, data_dir=tmp_path / "b")
    copy_collection(server, back)
    assert back.spec == spec and (tmp_path / "b" / "back" / "visdoc.json").is_file()
    ids = all_ids(source)
    assert all_ids(server) == all_ids(back) == ids
    assert_same_points(source, server, ids)
    assert_same_points(source, back, ids)
    stored = source.retrieve_stored([points[5].id])[0].vectors
    copied = back.retrieve_stored([points[5].id])[0].vectors
    assert set(copied) == set(stored) >= {"dense", "multi", "pooled", "lexical"}
    assert copied["lexical"] == stored["lexical"]  # the sparse vector round-trips exactly
    if spec.token_pool_factor > 1:  # stays pooled: 16 content tokens -> 8, plus 8 template tokens
        assert len(copied["multi"]) == len(stored["multi"]) == 16 and len(copied["rowcol"]) == 8
    for i in (4, 17, 29):
        query = QueryVectors(points[i].dense, points[i].multivector[6:12], text=points[i].payload["text"])
        for mode in ("rerank", "lexical", "multivector"):
            want = {h.id: h.score for h in source.search(query, k=40, mode=mode)}  # every page: no ties at the end
            got = {h.id: h.score for h in back.search(query, k=40, mode=mode)}
            assert want and got == pytest.approx(want, abs=5e-3), mode
        hybrid = [{h.id for h in store.search(query, k=40, mode="hybrid")} for store in (source, back)]
        assert hybrid[0] == hybrid[1]  # its ranks, so scores, depend on how BM25 ties are broken
        exact = [h.id for h in server.search(query, k=5, mode="multivector")]
        assert exact == [h.id for h in source.search(query, k=5, mode="multivector")]
    for store in (source, server, back):
        store.close()
    client.close()


def test_a_second_run_sends_only_what_the_target_lacks(tmp_path):
    spec = CollectionSpec(dim=DIM, model="m")
    source = open_store("src", spec, data_dir=tmp_path)
    source.upsert(pages(60))
    target = open_store("dst", spec, data_dir=tmp_path)
    ids = all_ids(source)
    target.upsert_stored(source.retrieve_stored(ids[::2]))  # what a killed run had copied
    sent: list[list] = []
    upsert = target.upsert_stored
    target.upsert_stored = lambda batch: sent.append(batch) or upsert(batch)  # type: ignore[method-assign]
    report = copy_collection(source, target, batch_bytes=100_000)
    assert (report.copied, report.present) == (30, 30)
    assert sorted(p.id for batch in sent for p in batch) == ids[1::2]  # nothing sent twice
    assert len(sent[0]) == 8 and len(sent) > 4  # then sized in bytes: ~20 KB a point, 4 a step
    assert all(1 < len(batch) and sum(p.nbytes for p in batch) <= 100_000 for batch in sent[1:-1])
    assert target.count() == 60 and all_ids(target) == ids
    assert copy_collection(source, target).copied == 0
    source.close()
    target.close()


def test_points_as_stored_travel_through_the_engine_process(tmp_path):
    spec = CollectionSpec(dim=DIM, token_pool_factor=2)
    source = open_store("src", spec, data_dir=tmp_path)
    source.upsert(pages(20))
    target = open_store("dst", spec, data_dir=tmp_path)
    with source.engine_process(), target.engine_process():  # every call forwarded to a child, pickled
        assert copy_collection(source, target, batch_bytes=50_000).copied == 20
        assert source.scroll_ids(limit=5)[0] == all_ids(source)[:5]
    assert_same_points(source, target, all_ids(source))
    source.close()
    target.close()


def test_a_target_with_another_layout_is_refused_naming_the_difference(tmp_path):
    source = open_store("src", CollectionSpec(dim=DIM, token_pool_factor=2), data_dir=tmp_path)
    source.upsert(pages(3))
    other = open_store("dst", CollectionSpec(dim=DIM), data_dir=tmp_path)
    with pytest.raises(
        StoreError, match=r"'dst' cannot take a copy of 'src'.*token_pool_factor 1 \(the source has 2\)"
    ):
        copy_collection(source, other)
    assert other.count() == 0
    served = open_store("srv", CollectionSpec(dim=DIM, token_pool_factor=2, on_disk=True, hnsw_m=8),
                        client=QdrantClient(":memory:"))  # fmt: skip
    assert copy_collection(source, served).copied == 3  # placement and index settings may differ
    other.close()
    with pytest.raises(StoreError, match="stores dim 32, not 16"):
        open_store("dst", CollectionSpec(dim=16), data_dir=tmp_path)
    source.close()


def test_the_final_check_names_the_points_that_differ(tmp_path):
    spec = CollectionSpec(dim=DIM)
    source = open_store("src", spec, data_dir=tmp_path)
    source.upsert(pages(10))
    target = open_store("dst", spec, client=QdrantClient(":memory:"))
    copy_collection(source, target)
    ids = all_ids(source)
    changed = target.retrieve_stored(ids[2:4])
    changed[0].payload["page"] = 99
    changed[1].vectors["multi"] = (np.asarray(changed[1].vectors["multi"]) * -1).tolist()
    target.upsert_stored(changed)
    with pytest.raises(StoreError, match=rf"differs at 2 of 10 points checked: {ids[2]} \(payload\); "
                                         rf"{ids[3]} \(vector 'multi'\)"):  # fmt: skip
        check_copy(source, target, ids)
    target.delete_ids(ids[:1])
    with pytest.raises(StoreError, match="incomplete: the source holds 10 points, the target 9"):
        check_copy(source, target, ids)
    source.close()


def kill_once_copied(run: subprocess.Popen, count: int, *, of: int) -> None:
    """SIGKILL a copy once its progress bar (read from outside, on stderr) shows ``count`` of ``of`` points."""
    seen, done = b"", 0
    deadline = time.monotonic() + 60
    while done < count and time.monotonic() < deadline and run.poll() is None:
        if select.select([run.stderr], [], [], 1)[0]:
            seen += os.read(run.stderr.fileno(), 4096)
            done = max([int(n) for n in re.findall(rb"(\d+)/%d" % of, seen)] or [0])
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, seen.decode()[-2000:]


def visdoc_copy(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "visdoc", "copy", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ | env)  # fmt: skip


def test_a_killed_cli_copy_finishes_when_run_again(tmp_path):
    spec = CollectionSpec(dim=8, pool_size=0)
    with open_store("src", spec, data_dir=tmp_path) as source:
        source.upsert(pages(400, dim=8, tokens=4))
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    run = visdoc_copy(src, dst, "--batch-mb", "0.001", TQDM_MININTERVAL="0")  # one point per step
    kill_once_copied(run, 60, of=400)
    with open_store("dst", data_dir=tmp_path) as target:
        kept = target.count()
    assert 60 <= kept < 400
    again = visdoc_copy(src, dst, "--batch-mb", "0.05")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert f"copied {400 - kept} points from {src} to {dst} ({kept} were already there; 400 in all" in out.decode()
    assert "copy: 100%" in err.decode()  # the CLI shows progress
    with open_store("src", data_dir=tmp_path) as source, open_store("dst", data_dir=tmp_path) as target:
        ids = all_ids(source)
        assert target.count() == 400 and all_ids(target) == ids  # no duplicates, none missing
        assert_same_points(source, target, ids)


def test_cli_copy_names_collections_by_folder_or_url(tmp_path, monkeypatch, capsys):
    import qdrant_client

    from visdoc.cli.transfer import Location, parse_location

    assert parse_location("visdoc_data/visdoc") == Location("visdoc", data_dir="visdoc_data")
    assert parse_location("./docs/") == Location("docs", data_dir=".")
    assert parse_location("http://server:6333/visdoc") == Location("visdoc", url="http://server:6333")
    assert parse_location("https://q.example/api/docs") == Location("docs", url="https://q.example/api")
    for bad in ("visdoc", "http://server:6333", "http://server:6333/", "grpc://server:6334/visdoc"):
        with pytest.raises(Exception, match=re.escape(repr(bad))):
            parse_location(bad)

    with open_store("src", CollectionSpec(dim=DIM, model="m"), data_dir=tmp_path) as source:
        source.upsert(pages(12))
    src = str(tmp_path / "src")
    assert main(["copy", src, str(tmp_path / "dst"), "--sample", "4"]) == 0
    assert "copied 12 points from" in capsys.readouterr().out
    assert main(["copy", src, src]) == 2 and "same collection" in capsys.readouterr().err
    assert main(["copy", src, str(tmp_path / "x"), "--shard-number", "2"]) == 2
    assert "--shard-number: only for a server DST" in capsys.readouterr().err
    assert main(["copy", "nowhere", str(tmp_path / "x")]) == 2
    assert "'nowhere' names no folder" in capsys.readouterr().err

    made: dict = {}  # a server DST, played by qdrant-client's local mode
    real = qdrant_client.QdrantClient

    def client(url=None, api_key=None, **options):  # noqa: ANN001, ANN202
        made.update(url=url, api_key=api_key)
        local = real(path=str(tmp_path / "q"))
        create = local.create_collection
        local.create_collection = lambda name, **kw: made.update(kw) or create(name, **kw)
        return local

    monkeypatch.setattr(qdrant_client, "QdrantClient", client)
    args = ["copy", src, "http://server:6333/copied", "--target-api-key", "k", "--shard-number", "3",
            "--replication-factor", "2"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert (made["url"], made["api_key"], made["shard_number"], made["replication_factor"]) == (
        "http://server:6333", "k", 3, 2)  # fmt: skip
    assert main(["copy", "http://server:6333/copied", str(tmp_path / "back")]) == 0
    assert "copied 12 points from http://server:6333/copied to" in capsys.readouterr().out


COPY_TO_SERVER = """
import sys
from qdrant_client import QdrantClient
from visdoc.store import copy_collection, open_store

with open_store("src", data_dir=sys.argv[1]) as source:
    server = QdrantClient(path=sys.argv[2])  # qdrant-client's local mode stands in for a server
    with open_store("mid", source.spec, client=server) as target:
        copy_collection(source, target, batch_bytes=int(sys.argv[3]), show_progress=True)
    server.close()
"""


def test_a_copy_to_a_server_killed_midway_finishes_when_run_again_and_comes_back_equal(tmp_path):
    """embedded -> server (killed, then re-run) -> embedded: the same ids, payloads and vectors."""
    script = tmp_path / "copy_to_server.py"
    script.write_text(COPY_TO_SERVER)
    with open_store("src", CollectionSpec(dim=8, model="m"), data_dir=tmp_path) as source:
        source.upsert(pages(300, dim=8, tokens=6))
    server_path = str(tmp_path / "q")
    run = subprocess.Popen([sys.executable, str(script), str(tmp_path), server_path, "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=os.environ | {"TQDM_MININTERVAL": "0"})  # fmt: skip
    kill_once_copied(run, 40, of=300)
    client = QdrantClient(path=server_path)
    with open_store("src", data_dir=tmp_path) as source:
        server = open_store("mid", client=client)
        kept = server.count()
        assert 40 <= kept < 300
        report = copy_collection(source, server)  # the re-run
        assert (report.total, report.copied, report.present) == (300, 300 - kept, kept)
        back = open_store("back", server.spec, data_dir=tmp_path)
        copy_collection(server, back)
        ids = all_ids(source)
        assert all_ids(server) == all_ids(back) == ids and back.count() == 300  # no duplicates, none missing
        assert_same_points(source, back, ids)
        back.close()
        server.close()
    client.close()
