"""Distributed ingestion on Ray (``visdoc ingest --ray``): the points of the single-process path."""

from __future__ import annotations

import os
import pickle
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

    from visdoc.ingest.ray import _pack, _unpack, _Writer
    from visdoc.sources import Problem
    from visdoc.store import CollectionSpec, PagePoint, open_store, point_id

    writer = _Writer.__new__(_Writer)  # its store, opened here instead of from a server's address
    writer.store = open_store("c", CollectionSpec(dim=4, pool_size=0), client=QdrantClient(":memory:"))
    point = PagePoint(point_id("d", 0), np.ones(4, np.float32), np.ones((3, 128), np.float32), {"page": 0})
    problem = Problem("/x/bad.pdf", "cannot open PDF")
    out = _unpack(writer(_pack([point, problem])))
    assert out == [1, problem] and writer.store.count() == 1


def test_actor_resources_refuse_actors_the_cluster_cannot_hold():
    from visdoc.errors import VisdocError
    from visdoc.ingest.ray import _actor_resources

    gpus4 = {"CPU": 64.0, "GPU": 4.0}
    assert _actor_resources(4, 1.0, None, gpus4) == (1.0, 1.0)
    assert _actor_resources(4, None, None, gpus4) == (1.0, 1.0)  # one GPU each by default
    assert _actor_resources(8, 0.5, 2.0, gpus4) == (0.5, 2.0)
    assert _actor_resources(3, 1 / 3, None, {"CPU": 8.0, "GPU": 1.0}) == (1 / 3, 1.0)
    for actors, gpus in ((8, 1.0), (8, None), (5, 0.9)):
        with pytest.raises(VisdocError, match=rf"{actors} GPU actors x .* GPUs; the cluster has 4"):
            _actor_resources(actors, gpus, None, gpus4)
    with pytest.raises(VisdocError, match="the cluster has 0"):
        _actor_resources(2, 1.0, None, {"CPU": 8.0})  # GPU actors asked of a CPU-only cluster
    with pytest.raises(VisdocError, match="4 GPU actors x 2 cores leave less than one of the cluster's 8 cores"):
        _actor_resources(4, 1.0, 2.0, {"CPU": 8.0, "GPU": 4.0})

    assert _actor_resources(2, None, None, {"CPU": 8.0}) == (0.0, 3.5)  # CPU actors: all cores but one
    assert _actor_resources(2, 0.0, None, gpus4) == (0.0, 31.5)
    with pytest.raises(VisdocError, match="2 CPU actors x 4 cores"):
        _actor_resources(2, None, 4.0, {"CPU": 8.0})


def test_the_driver_fetches_configuration_and_tokenizer_but_no_weights(monkeypatch, tmp_path, documents):
    import fnmatch

    import huggingface_hub

    from visdoc import cli
    from visdoc.checkpoint import HUB_PATTERNS, read_config
    from visdoc.ingest import IngestReport
    from visdoc.ingest import ray as distributed
    from visdoc.store import CollectionSpec, open_store

    asked = []

    def fake_download(repo_id, revision=None, allow_patterns=None):  # what the hub would send
        asked.append(list(allow_patterns))
        folder = tmp_path / "hub" / str(len(asked))
        for source in FIXTURE.rglob("*"):
            name = source.relative_to(FIXTURE).as_posix()
            if source.is_file() and any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, folder / name)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    hub_id = "jinaai/jina-embeddings-v4"
    checkpoint = read_config(hub_id)
    assert checkpoint.matryoshka_dims == (16, 32, 64) and checkpoint.weight_files == ()
    assert all((checkpoint.path / name).is_file() for name in ("tokenizer.json", "adapters/adapter_config.json"))
    assert not list(checkpoint.path.rglob("*.safetensors*"))

    store = open_store("c", CollectionSpec(dim=64, pool_size=0), data_dir=tmp_path / "store")
    with store:
        ingestor = distributed.RayIngestor(hub_id, store)
        assert ingestor.checkpoint.pixels == checkpoint.pixels and ingestor._load_from == hub_id  # actors fetch it

    given = []

    class FakeRayIngestor:  # the command's driver side, without starting Ray
        def __init__(self, model, store, *, checkpoint, **options):
            given.append(checkpoint)

        def ingest(self, paths, show_progress=False):
            return IngestReport()

    monkeypatch.setattr(distributed, "RayIngestor", FakeRayIngestor)
    for name in ("VISDOC_EMBEDDING_URL", "QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    argv = ["ingest", str(documents), "--ray", "--model", hub_id, "--data-dir", str(tmp_path / "cli")]
    assert cli.main(argv) == 0 and given[0].matryoshka_dims == (16, 32, 64)

    assert len(asked) == 3 and all("safetensors" not in pattern for patterns in asked for pattern in patterns)
    assert any("safetensors" in pattern for pattern in HUB_PATTERNS)  # what a model replica fetches
    assert read_config(FIXTURE).weight_files  # a local folder: weights checked, not read


def test_unexpected_errors_in_a_stage_become_problems_of_their_file(monkeypatch, documents):
    from PIL import Image

    from visdoc.ingest import ray as distributed
    from visdoc.ingest import stages
    from visdoc.ingest.plan import identify
    from visdoc.ingest.ray import ITEM, _Embedder, _identify_row, _tasks, _unit_rows
    from visdoc.ingest.stages import Embedded
    from visdoc.ingest.stages import Unit as _Unit
    from visdoc.sources import Problem, SourceFile

    def run(stage, row, **kwargs):
        out = stage(row, **kwargs)
        return [pickle.loads(r[ITEM]) for r in (out if isinstance(out, list) else [out])]

    image = SourceFile(documents / "page.png", "image")
    with monkeypatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the sample page is now a decompression bomb
        got = run(_identify_row, {ITEM: pickle.dumps((7, image))}, tokenizer=None, chunk_tokens=8, chunk_overlap=0)
    assert got[0][0] == 7 and isinstance(got[0][1], Problem)
    assert got[0][1].path == str(image.path) and got[0][1].message.startswith("DecompressionBombError: ")

    pdf = identify(SourceFile(documents / "report.pdf", "pdf"), None)
    pdf.missing = [0, 1, 2]
    [task] = _tasks([pdf])

    def broken(path, pages, budget):
        raise RuntimeError("code=2: cannot find page tree")

    monkeypatch.setattr(stages, "render_pages", broken)
    budget, path, message = (28, 3136, 200_000), str(pdf.file.path), "RuntimeError: code=2: cannot find page tree"
    assert run(_unit_rows, task, budget=budget) == [Problem(path, message)]  # pages 1-3: the file
    assert run(_unit_rows, {ITEM: pickle.dumps((pdf, [2]))}, budget=budget) == [Problem(path, message, 2)]

    frames = identify(image, None)
    frames.missing = [0, 1]

    def image_units(doc):  # the first frame decodes, the second raises what image_units lets through
        yield _Unit(doc, 0, None, "", "1")
        raise ValueError("bad frame")

    monkeypatch.setattr(stages, "image_units", image_units)
    unit, problem = run(_unit_rows, _tasks([frames])[0], budget=budget)
    assert unit.index == 0 and problem == Problem(str(image.path), "ValueError: bad frame", 1)

    def embed_units(model, spec, units, max_pixels):  # one page makes every batch holding it fail
        if any(unit.index == 1 for unit in units):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return Embedded([f"point {unit.index}" for unit in units], [])

    monkeypatch.setattr(stages, "embed_units", embed_units)
    embedder = _Embedder.__new__(_Embedder)
    embedder.model, embedder.spec, embedder.max_pixels = None, None, None
    units = [_Unit(pdf, i, None, "", str(i + 1)) for i in range(3)]
    bad = Problem(path, "RuntimeError: CUDA error: an illegal memory access was encountered", 1)
    earlier = Problem(str(image.path), "cannot decode image")
    got = distributed._unpack(embedder(distributed._pack([*units, earlier])))
    assert got == ["point 0", "point 2", bad, earlier]


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
