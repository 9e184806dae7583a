"""Faults never brick an embedded collection.

A child process runs one operation (create, write, optimize, delete) with one step of it patched
to SIGKILL its own process just before or after that step; this process then reopens the
collection, runs the operation again and compares the result with an uninterrupted run. A small
tmpfs (root only) plays a full disk: writes, optimizes and opens refuse with DiskFullError instead
of dying of SIGBUS, and once space is freed a re-run completes and finishes the pending optimize.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from visdoc.store import (
    CollectionNotFoundError,
    CollectionSpec,
    DiskFullError,
    PageFilter,
    PagePoint,
    StoreError,
    open_store,
    point_id,
)
from visdoc.store import disk as disk_module
from visdoc.store.folder import PENDING_FILE

SPEC = CollectionSpec(dim=16, model="test-model", pool_size=0)
NAME = "c"
SIGBUS_CODES = (-signal.SIGBUS, 128 + signal.SIGBUS)


def make_points(n: int = 40, tokens: int = 12, seed: int = 0) -> list[PagePoint]:
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        doc = f"doc{i % 2}"
        multi = rng.normal(size=(tokens, 128)).astype(np.float32)
        points.append(
            PagePoint(
                point_id(doc, i),
                rng.normal(size=SPEC.dim).astype(np.float32),
                multi / np.linalg.norm(multi, axis=1, keepdims=True),
                {"document_id": doc, "source": f"/data/{doc}.pdf", "page": i, "kind": "page_image"},
            )
        )
    return points


POINTS = make_points()


@functools.cache
def big_points() -> list[PagePoint]:
    """Enough vector data (10 MB) that the engine's optimize has work to do."""
    return make_points(40, tokens=1000)


# -- the child side ---------------------------------------------------------------------------


def _arm(target: str, when: str, nth: int) -> None:
    """Make the ``nth`` call of ``target`` (``EdgeShard.method`` or ``module.function``) SIGKILL this
    process just ``before`` or ``after`` it runs; ``during``: ``nth`` ms after the first call starts
    (from another process: the engine holds this one's GIL)."""
    import importlib

    import qdrant_edge

    owner_name, _, attribute = target.rpartition(".")
    owner = qdrant_edge.EdgeShard if owner_name == "EdgeShard" else importlib.import_module(owner_name)
    original = getattr(owner, attribute)
    calls = [0]

    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 1 and when == "during":
            subprocess.Popen(["sh", "-c", f"sleep {nth / 1000}; kill -9 {os.getpid()}"])
        if calls[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attribute, patched)


def child(data_dir: str, operation: str, target: str, when: str, nth: str, extra: str) -> None:
    """One operation on the collection (run in a child process by :func:`run_child`)."""
    arm = (lambda: _arm(target, when, int(nth))) if target else (lambda: None)
    options = json.loads(extra)
    if operation == "create":
        arm()
        open_store(NAME, SPEC, data_dir=data_dir).close()
    elif operation == "write":
        store = open_store(NAME, SPEC, data_dir=data_dir)
        store.upsert(POINTS[:20])
        print("acknowledged 20", flush=True)
        arm()
        store.upsert(POINTS[20:])
        store.close()
    elif operation == "optimize":
        with open_store(NAME, data_dir=data_dir) as store:
            arm()
            store.optimize()
    elif operation == "delete":
        with open_store(NAME, data_dir=data_dir) as store:
            arm()
            store.delete(PageFilter(document_ids=("doc1",)))
    elif operation == "fill":  # leave `leave` MiB free, then store steps of 8 points until refused
        store = open_store(NAME, SPEC, data_dir=data_dir)
        fill(Path(data_dir) / "filler", options["leave"] << 20)
        points, stored = make_points(400, tokens=100), 0
        try:
            for start in range(0, len(points), 8):
                store.upsert(points[start : start + 8])
                stored = start + 8
        except DiskFullError as exc:
            print(json.dumps({"stored": stored, "error": str(exc)}), flush=True)
        store.close()
    elif operation == "optimize-full":  # a collection that needs an optimize, then too little room for it
        store = open_store(NAME, SPEC, data_dir=data_dir)
        store.upsert(big_points())
        fill(Path(data_dir) / "filler", options["leave"] << 20)
        try:
            store.optimize()
        except DiskFullError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
        store.close()
    elif operation == "count":
        try:
            with open_store(NAME, data_dir=data_dir) as store:
                print(json.dumps({"count": store.count()}), flush=True)
        except DiskFullError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)


def fill(path: Path, leave: int) -> None:
    """A file taking all but ``leave`` bytes of the free space."""
    size = disk_module.free_bytes(path.parent) - leave
    with open(path, "wb") as file:
        if size > 0:
            os.posix_fallocate(file.fileno(), 0, size)


def run_child(data_dir: Path, operation: str, target: str = "", when: str = "", nth: int = 1, **extra):
    tests = str(Path(__file__).parent)
    code = "import sys; sys.path.insert(0, sys.argv[1]); from test_store_faults import child; child(*sys.argv[2:])"
    args = [sys.executable, "-c", code, tests, str(data_dir), operation, target, when, str(nth), json.dumps(extra)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


# -- this side --------------------------------------------------------------------------------


def contents(store, vectors: bool = True) -> dict[str, dict]:
    """Every point's payload, by id, with its dense vector (rounded) unless ``vectors`` is false."""
    records = store.retrieve([r.id for r in store.iter_records()], with_vectors=vectors)
    return {r.id: {**r.payload, **({"dense": np.round(r.dense, 4).tolist()} if vectors else {})} for r in records}


def reference(
    tmp_path: Path, points: list[PagePoint], delete: PageFilter | None = None, vectors: bool = True
) -> dict[str, dict]:
    """The collection an uninterrupted run leaves."""
    with open_store(NAME, SPEC, data_dir=tmp_path / "reference") as store:
        store.upsert(points)
        if delete is not None:
            store.delete(delete)
        store.optimize()
        return contents(store, vectors)


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory) -> dict[str, dict]:
    return reference(tmp_path_factory.mktemp("big"), big_points(), vectors=False)


def assert_killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])


CREATE_KILLS = [
    ("EdgeShard.create", "after", 1, True),  # the engine made its segment data; no field index, no spec
    ("EdgeShard.update", "after", 1, True),  # one field index
    ("EdgeShard.flush", "after", 1, True),  # the shard is complete, the spec not written
    ("os.fsync", "after", 1, True),  # the spec's temporary file is written, not renamed
    ("os.replace", "after", 1, False),  # the spec is in place
]


@pytest.mark.parametrize(("target", "when", "nth", "interrupted"), CREATE_KILLS)
def test_a_kill_while_creating_leaves_a_collection_the_next_create_replaces(
    tmp_path, caplog, target, when, nth, interrupted
):
    data = tmp_path / "data"
    assert_killed(run_child(data, "create", target, when, nth))
    if interrupted:
        with pytest.raises(CollectionNotFoundError, match="interrupted while it was being created"):
            open_store(NAME, data_dir=data)
    else:
        with open_store(NAME, data_dir=data) as store:
            assert store.spec == SPEC and store.count() == 0
    with caplog.at_level(logging.WARNING, logger="visdoc.store"):
        store = open_store(NAME, SPEC, data_dir=data)
    assert ("replacing it" in caplog.text) == interrupted
    with store:
        assert store.spec == SPEC
        store.upsert(POINTS)
        store.optimize()
        assert contents(store) == reference(tmp_path, POINTS)
    assert sorted(p.name for p in (data / NAME).iterdir()) == [".lock", "shard", "visdoc.json"]


WRITE_KILLS = [("EdgeShard.update", "before", 1), ("EdgeShard.update", "after", 1), ("EdgeShard.update", "after", 2)]


@pytest.mark.parametrize(("target", "when", "nth"), WRITE_KILLS)
def test_a_kill_while_writing_keeps_what_was_stored_and_the_rerun_completes(tmp_path, target, when, nth):
    data = tmp_path / "data"
    result = run_child(data, "write", target, when, nth)
    assert_killed(result)
    assert "acknowledged 20" in result.stdout
    expected = reference(tmp_path, POINTS)
    with open_store(NAME, data_dir=data) as store:
        before = contents(store)
        assert len(before) >= 20 and store.count() == len(before)
        assert all(before[p.id] == expected[p.id] for p in POINTS[:20])  # nothing acknowledged is lost
        assert (data / NAME / PENDING_FILE).exists()
        store.upsert(POINTS[20:])  # the same operation again
        store.finish_pending()
        assert contents(store) == expected and store.count() == len(POINTS)
    assert not (data / NAME / PENDING_FILE).exists()


OPTIMIZE_KILLS = [
    ("EdgeShard.optimize", "before", 1),
    ("EdgeShard.optimize", "after", 1),  # segments merged, not flushed
    ("EdgeShard.flush", "after", 1),  # flushed, the pending mark not cleared
    ("EdgeShard.optimize", "during", 60),  # while the engine builds and swaps segments (~0.3 s)
]


@pytest.mark.parametrize(("target", "when", "nth"), OPTIMIZE_KILLS)
def test_a_kill_while_optimizing_loses_nothing_and_the_optimize_stays_pending(
    tmp_path, big_reference, target, when, nth
):
    data = tmp_path / "data"
    points = big_points()
    with open_store(NAME, SPEC, data_dir=data) as store:
        store.upsert(points)
    assert_killed(run_child(data, "optimize", target, when, nth))
    with open_store(NAME, data_dir=data) as store:
        assert store.count() == len(points)
        assert (data / NAME / PENDING_FILE).exists()
        store.finish_pending()  # what the next ingestion does, even when it stores nothing
        assert store._shard.info().indexed_vectors_count > 0  # the dense HNSW index was built
        assert contents(store, vectors=False) == big_reference
    assert not (data / NAME / PENDING_FILE).exists()


DELETE_KILLS = [("EdgeShard.update", "before", 1), ("EdgeShard.update", "after", 1)]


@pytest.mark.parametrize(("target", "when", "nth"), DELETE_KILLS)
def test_a_kill_while_deleting_keeps_the_rest_and_the_rerun_completes(tmp_path, target, when, nth):
    data = tmp_path / "data"
    doc1 = PageFilter(document_ids=("doc1",))
    with open_store(NAME, SPEC, data_dir=data) as store:
        store.upsert(POINTS)
        store.optimize()
    assert_killed(run_child(data, "delete", target, when, nth))
    expected = reference(tmp_path, POINTS, delete=doc1)
    with open_store(NAME, data_dir=data) as store:
        assert {k: v for k, v in contents(store).items() if v["document_id"] == "doc0"} == expected
        store.delete(doc1)
        store.finish_pending()
        assert contents(store) == expected and store.count() == len(expected)
    assert not (data / NAME / PENDING_FILE).exists()


def test_disk_checks_refuse_with_the_room_needed_and_keep_the_pending_optimize(tmp_path, monkeypatch):
    data = tmp_path / "data"
    store = open_store(NAME, SPEC, data_dir=data)
    store.upsert(POINTS[:20])
    store.optimize()
    monkeypatch.setattr(disk_module, "free_bytes", lambda path: 5 << 20)  # any filesystem can play a full one
    with pytest.raises(DiskFullError) as refused:
        store.upsert(POINTS[20:])
    error = refused.value
    assert str(data) in str(error) and "5.0 MiB free" in str(error) and error.needed > error.free == 5 << 20
    assert error.path == str(data)
    again = pickle.loads(pickle.dumps(error))  # it crosses from the engine's child process intact
    assert type(again) is DiskFullError and (again.path, again.needed, again.free) == (str(data), error.needed, 5 << 20)
    with pytest.raises(DiskFullError, match="to delete"):
        store.delete(PageFilter(document_ids=("doc0",)))
    store.close()
    with pytest.raises(DiskFullError, match="to create collection 'other'"):
        open_store("other", SPEC, data_dir=data)
    assert not (data / "other").exists()
    monkeypatch.undo()
    with open_store(NAME, data_dir=data) as store:
        assert store.count() == 20
        (data / NAME / PENDING_FILE).touch()  # as a write whose optimize failed leaves it
        store.finish_pending()
    assert not (data / NAME / PENDING_FILE).exists()


def test_a_new_collection_is_created_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="visdoc.store"), open_store(NAME, SPEC, data_dir=tmp_path) as store:
        store.upsert(POINTS)
    assert caplog.records == []


def test_a_spec_left_empty_or_missing_is_an_interrupted_creation(tmp_path, caplog):
    data = tmp_path / "data"
    open_store(NAME, SPEC, data_dir=data).close()
    (data / NAME / "visdoc.json").write_text("")  # what an in-place write cut short left
    with pytest.raises(CollectionNotFoundError, match="the next ingest into it replaces it"):
        open_store(NAME, data_dir=data)
    with caplog.at_level(logging.WARNING, logger="visdoc.store"), open_store(NAME, SPEC, data_dir=data) as store:
        store.upsert(POINTS)
    assert "interrupted while it was being created" in caplog.text
    (data / NAME / "visdoc.json").unlink()  # a spec lost although points are stored: never delete them
    with pytest.raises(StoreError, match="holds 40 points but no readable visdoc.json"):
        open_store(NAME, SPEC, data_dir=data)
    assert (data / NAME / "shard").is_dir()


def test_an_ingestion_that_stores_nothing_finishes_a_pending_optimize(tmp_path):
    from visdoc.ingest import Ingestor

    data = tmp_path / "data"
    model = SimpleNamespace(pixels=SimpleNamespace(factor=28, min_pixels=1, max_pixels=1), device=None,
                            tokenizer=None, dims=(SPEC.dim,), name="test-model")  # fmt: skip
    with open_store(NAME, SPEC, data_dir=data) as store:
        store.upsert(POINTS)  # as if the run stopped on a full disk before its optimize
        assert (data / NAME / PENDING_FILE).exists()
        report = Ingestor(model, store, workers=0, batch_size=8).ingest([])
        assert report.pages_stored == 0
        assert not (data / NAME / PENDING_FILE).exists()


# -- a full filesystem ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 MiB tmpfs (needs root): tmpfs also allocates what opening a collection maps and reads."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def make_room(mount: Path) -> None:
    """Free the space: delete the filler and grow the filesystem (tmpfs takes memory only as it fills)."""
    (mount / "filler").unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,size=1g", str(mount)], check=True)


def reply(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode not in SIGBUS_CODES, "SIGBUS"
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_full_disk_refuses_writes_and_opening_and_the_rerun_completes(small_disk, tmp_path):
    data = small_disk
    refused = reply(run_child(data, "fill", leave=24))
    assert refused["stored"] > 0
    assert f"not enough free space in {data}" in refused["error"] and "MiB free" in refused["error"]
    fill(data / "filler-rest", 0)  # now completely full: opening must refuse, not crash
    assert "not enough free space" in reply(run_child(data, "count"))["error"]
    (data / "filler-rest").unlink()
    make_room(data)
    points = make_points(400, tokens=100)
    expected = reference(tmp_path, points, vectors=False)
    with open_store(NAME, data_dir=data) as store:
        before = contents(store, vectors=False)
        assert all(before[p.id] == expected[p.id] for p in points[: refused["stored"]])  # all kept
        assert (data / NAME / PENDING_FILE).exists()
        store.upsert(points)  # the same run again
        store.finish_pending()
        assert contents(store, vectors=False) == expected and store.count() == len(points)
    assert not (data / NAME / PENDING_FILE).exists()


def test_a_full_disk_refuses_an_optimize_which_the_next_run_finishes(small_disk, big_reference):
    data = small_disk
    refused = reply(run_child(data, "optimize-full", leave=20))
    assert "optimize collection 'c'" in refused["error"] and "needs about" in refused["error"]
    make_room(data)
    with open_store(NAME, data_dir=data) as store:
        assert store.count() == len(big_points())
        assert (data / NAME / PENDING_FILE).exists()
        store.finish_pending()
        assert store._shard.info().indexed_vectors_count > 0
        assert contents(store, vectors=False) == big_reference
    assert not (data / NAME / PENDING_FILE).exists()


def test_visdoc_ingest_on_a_full_disk_stops_cleanly_and_the_rerun_completes(small_disk, tmp_path):
    import pymupdf

    from conftest import FIXTURE
    from visdoc.points import CREATED_AT

    pdf = tmp_path / "long.pdf"
    doc = pymupdf.open()
    for i in range(40):
        doc.new_page(width=612, height=792).insert_text((40, 60), f"page {i + 1} of a long report", fontsize=14)
    doc.save(pdf)

    def ingest(data: Path) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "visdoc", "ingest", str(pdf), "--data-dir", str(data), "--model", str(FIXTURE),
                "--collection", NAME, "--dim", "64", "--pool-size", "0", "--workers", "0"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)

    uninterrupted = ingest(tmp_path / "reference")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    data = small_disk / "data"
    data.mkdir()
    fill(small_disk / "filler", 48 << 20)  # room to create the collection and a few steps, not 40 pages
    stopped = ingest(data)
    assert stopped.returncode not in SIGBUS_CODES, "SIGBUS"
    assert stopped.returncode == 2 and "not enough free space" in stopped.stderr, stopped.stderr[-2000:]
    make_room(small_disk)  # (on tmpfs, opening the collection needs room too)
    with open_store(NAME, data_dir=data) as store:
        kept = store.count()
    assert 0 < kept < 40  # the steps before the disk filled stay
    rerun = ingest(data)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    def stable(store) -> dict[str, dict]:  # every point but when it was written
        return {pid: {k: v for k, v in point.items() if k != CREATED_AT} for pid, point in contents(store).items()}

    with open_store(NAME, data_dir=tmp_path / "reference") as done, open_store(NAME, data_dir=data) as store:
        assert stable(store) == stable(done) and store.count() == 40
    assert not (data / NAME / PENDING_FILE).exists()


def test_a_folder_that_is_not_a_collection_is_never_deleted(tmp_path):
    papers = tmp_path / NAME
    papers.mkdir()
    (papers / "draft.txt").write_text("my notes")
    with pytest.raises(StoreError, match="is not a visdoc collection .*draft.txt"):
        open_store(NAME, SPEC, data_dir=tmp_path)
    assert (papers / "draft.txt").read_text() == "my notes"


def test_a_shard_that_cannot_be_opened_is_moved_aside_not_deleted(tmp_path, caplog):
    junk = tmp_path / NAME / "shard" / "segments"
    junk.mkdir(parents=True)
    (junk / "data").write_bytes(b"not a segment")
    with caplog.at_level(logging.WARNING, logger="visdoc.store"), open_store(NAME, SPEC, data_dir=tmp_path) as store:
        store.upsert(POINTS[:2])
        assert store.count() == 2
    [aside] = (tmp_path / NAME).glob("shard.interrupted-*")
    assert (aside / "segments" / "data").read_bytes() == b"not a segment" and "moved to" in caplog.text
