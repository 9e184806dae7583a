"""Distributed ingestion on Ray (``visdoc ingest --ray``): the points of the single-process path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pymupdf
import pytest

from conftest import FIXTURE

SAMPLES = FIXTURE.parents[2] / "examples" / "data"
RAY_ENV = {  # a small, quiet local instance
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(200 << 20),
    "RAY_AUTH_MODE": "disabled",
}


def visdoc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = os.environ | {"VISDOC_MODEL": str(FIXTURE)} | (env or {})
    for name in ("QDRANT_URL", "RAY_ADDRESS", "VISDOC_EMBEDDING_URL"):
        full.pop(name, None)
    cmd = [sys.executable, "-m", "visdoc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=240)


@pytest.fixture
def documents(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    pdf = pymupdf.open()
    for i in range(3):
        page = pdf.new_page(width=612, height=792)
        page.insert_text((72, 72), f"Page {i + 1}: revenue by quarter", fontsize=14)
        page.draw_rect(pymupdf.Rect(72, 100 + 20 * i, 300, 200), color=(0, 0, 1), fill=(0.2, 0.3, 0.8))
    pdf.save(folder / "report.pdf")
    shutil.copy(SAMPLES / "sample-page.png", folder / "page.png")
    (folder / "notes.txt").write_text("Cold-chain logistics opened in the third quarter of the year. " * 80)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all\n")
    (folder / "truncated.png").write_bytes((SAMPLES / "sample-page.png").read_bytes()[:3000])
    return folder


@pytest.fixture
def ray_temp():
    """Ray's session folder for one test; afterwards no process of that instance may be left."""
    folder = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    yield folder
    leftover = _processes_mentioning(folder)
    for pid in leftover:  # clean up after a failure, then fail
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)
    assert not leftover, f"Ray processes still running after the command: {leftover}"


def test_ray_ingest_stores_the_points_of_the_single_process_ingest(documents, tmp_path, ray_temp):
    common = ["--datatype", "float32", "--batch-size", "4"]  # float32: compare vectors closely
    single = visdoc("ingest", str(documents), "--data-dir", str(tmp_path / "single"), "--workers", "0", *common)
    assert single.returncode == 1, single.stderr  # 1: something was skipped
    env = RAY_ENV | {"RAY_TMPDIR": ray_temp}
    ray = visdoc("ingest", str(documents), "--ray", "--actors", "2", "--data-dir", str(tmp_path / "ray"), *common,
                 env=env)  # fmt: skip
    assert ray.returncode == 1, ray.stderr
    for out in (single.stdout, ray.stdout):
        assert "5 files: 4 stored or completed" in out and "2 problems" in out  # truncated.png: its page fails
        assert f"skipped {documents / 'corrupt.pdf'}: cannot open PDF" in out
        assert f"skipped {documents / 'truncated.png'} (page 1): cannot decode image" in out
    expected, got = _points(tmp_path / "single"), _points(tmp_path / "ray")
    chunks = sum(payload["kind"] == "text_chunk" for payload, _, _ in got.values())
    assert sorted(got) == sorted(expected) and len(got) == 3 + 1 + chunks and chunks > 1  # PDF pages, image, text
    for pid, (payload, dense, multi) in expected.items():
        payload_ray, dense_ray, multi_ray = got[pid]
        assert _without_time(payload_ray) == _without_time(payload), payload["source"]
        np.testing.assert_allclose(dense_ray, dense, atol=1e-5)
        assert multi_ray.shape == multi.shape
        np.testing.assert_allclose(multi_ray, multi, atol=1e-5)

    (documents / "truncated.png").unlink()  # else its page would be tried again
    again = visdoc("ingest", str(documents), "--ray", "--data-dir", str(tmp_path / "ray"), env=env)
    assert "0 pages/chunks embedded" in again.stdout and "3 unchanged" in again.stdout, again.stdout + again.stderr
    assert _points(tmp_path / "ray").keys() == expected.keys()


def test_writer_actor_upserts_points_and_passes_problems_on():
    from qdrant_client import QdrantClient

    from visdoc.distributed import _pack, _unpack, _Writer
    from visdoc.sources import Problem
    from visdoc.store import CollectionSpec, PagePoint, open_store, point_id

    writer = _Writer.__new__(_Writer)  # its store, opened here instead of from a server's address
    writer.store = open_store("c", CollectionSpec(dim=4, pool_size=0), client=QdrantClient(":memory:"))
    point = PagePoint(point_id("d", 0), np.ones(4, np.float32), np.ones((3, 128), np.float32), {"page": 0})
    problem = Problem("/x/bad.pdf", "cannot open PDF")
    out = _unpack(writer(_pack([point, problem])))
    assert out == [1, problem] and writer.store.count() == 1


def _points(data_dir: Path) -> dict[str, tuple[dict, np.ndarray, np.ndarray]]:
    from visdoc.store import open_store

    with open_store("visdoc", data_dir=data_dir) as store:
        ids = [record.id for record in store.iter_records()]
        return {r.id: (r.payload, r.dense, r.multivector) for r in store.retrieve(ids, with_vectors=True)}


def _without_time(payload: dict) -> dict:
    return {key: value for key, value in payload.items() if key != "created_at"}


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids
