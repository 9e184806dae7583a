"""Ingestion: sources to points, idempotent and resumable, bad input reported and skipped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pymupdf
import pytest
from PIL import Image

import visdoc.ingest.local as ingest_module
from conftest import FIXTURE
from visdoc.ingest import Ingestor, default_batch_size
from visdoc.sources import chunk_spans, discover
from visdoc.store import CollectionSpec, PageFilter, open_store

ROOT = FIXTURE.parents[2]
SAMPLES = ROOT / "examples" / "data"


def make_pdf(path: Path, pages: int, *, size=(612, 792)) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 72), f"Page {i + 1} of the test document", fontsize=14)
        page.draw_rect(pymupdf.Rect(72, 100 + 5 * i, 300, 200 + 5 * i), color=(0, 0, 1), fill=(0.2, 0.3, 0.8))
    doc.save(path)
    return path


@pytest.fixture
def store(tmp_path, tiny_fp32):
    s = open_store("docs", CollectionSpec(dim=tiny_fp32.dims[-1], model="tiny"), data_dir=tmp_path / "data")
    yield s
    s.close()


def ingest(model, store, *paths, **options):
    return Ingestor(model, store, workers=options.pop("workers", 0), **options).ingest(paths)


def test_samples_are_stored_with_complete_payload(tiny_fp32, store, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n" + "Cold-chain logistics opened in the third quarter. " * 40)
    report = ingest(tiny_fp32, store, SAMPLES, notes, chunk_tokens=64, chunk_overlap=16)
    assert not report.problems, report.summary()
    pdf = [r.payload for r in store.iter_records(PageFilter(sources=(str(SAMPLES / "annual-report.pdf"),)))]
    assert sorted(p["page"] for p in pdf) == [0, 1, 2]
    page = next(p for p in pdf if p["page"] == 1)
    assert page["page_label"] == "2" and page["total_pages"] == 3 and page["kind"] == "page_image"
    assert "Financial highlights" in page["text"] and page["title"] == "Northwind Traders Annual Report 2025"
    assert len(page["content_hash"]) == 64 and page["document_id"] == page["content_hash"][:32]
    assert {page["model"], page["task"], page["dim"]} == {tiny_fp32.name, "retrieval", tiny_fp32.dims[-1]}
    assert page["created_at"].endswith("+00:00")
    chunks = [r.payload for r in store.iter_records(PageFilter(kind="text_chunk"))]
    assert len(chunks) == chunks[0]["total_pages"] > 3 and all(c["source"] == str(notes) for c in chunks)
    assert store.count() == 3 + 1 + len(chunks) == report.pages_stored


def test_pages_are_rendered_at_the_resolution_the_model_keeps(tiny_fp32):
    from visdoc.sources import render_pages

    pixels = tiny_fp32.checkpoint.pixels
    budget = (pixels.factor, pixels.min_pixels, pixels.max_pixels)
    [page] = render_pages(str(SAMPLES / "annual-report.pdf"), [0], budget)
    assert (page.width, page.height) == (672, 896)  # Letter at ~80 DPI: 768 tokens, nothing to downsample
    assert tiny_fp32.preprocessor.grid(page.width, page.height).h * 14 == page.height
    [small] = render_pages(str(SAMPLES / "annual-report.pdf"), [0], (28, 3136, 28 * 28 * 100))
    assert small.width * small.height <= 28 * 28 * 100 and small.width % 28 == 0


def test_reingesting_is_a_noop_and_a_changed_file_replaces_its_pages(tiny_fp32, store, tmp_path):
    pdf = make_pdf(tmp_path / "report.pdf", 3)
    first = ingest(tiny_fp32, store, pdf)
    assert first.pages_stored == 3
    again = ingest(tiny_fp32, store, pdf)
    assert again.pages_stored == 0 and again.documents_unchanged == 1 and store.count() == 3
    old_id = next(store.iter_records()).payload["document_id"]
    make_pdf(pdf, 2)  # same path, new content
    changed = ingest(tiny_fp32, store, pdf)
    assert changed.documents_replaced == 1 and changed.pages_stored == 2
    assert store.count() == 2 and store.count(PageFilter(document_ids=(old_id,))) == 0


def test_bad_inputs_are_reported_by_path_and_the_rest_is_stored(tiny_fp32, store, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_pdf(folder / "good.pdf", 2)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all\n")
    encrypted = pymupdf.open()
    encrypted.new_page().insert_text((72, 72), "secret")
    encrypted.save(folder / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    (folder / "empty.pdf").write_bytes(
        b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n2 0 obj <</Type/Pages/Kids[]/Count 0>> endobj\n"
        b"trailer <</Root 1 0 R>>\n%%EOF\n"
    )
    shutil.copy(SAMPLES / "sample-page.png", folder / "good.png")
    (folder / "truncated.png").write_bytes((SAMPLES / "sample-page.png").read_bytes()[:3000])
    (folder / "notes.docx").write_bytes(b"PK\x03\x04 not supported")
    (folder / "empty.txt").write_text("  \n")
    (folder / "ok.txt").write_text("A short but perfectly fine note.")
    report = ingest(tiny_fp32, store, folder, tmp_path / "missing-folder")
    problems = {Path(p.path).name: p for p in report.problems}
    assert set(problems) == {"corrupt.pdf", "encrypted.pdf", "empty.pdf", "truncated.png", "notes.docx",
                             "empty.txt", "missing-folder"}  # fmt: skip
    assert "encrypted" in problems["encrypted.pdf"].message and "no pages" in problems["empty.pdf"].message
    assert "unsupported" in problems["notes.docx"].message and "empty" in problems["empty.txt"].message
    assert problems["truncated.png"].page == 0 and "truncated.png (page 1)" in str(problems["truncated.png"])
    assert store.count() == 2 + 1 + 1  # good.pdf pages, good.png, ok.txt
    assert "skipped" in report.summary() and "encrypted.pdf" in report.summary()


def test_multi_frame_tiff_becomes_pages(tiny_fp32, store, tmp_path):
    frames = [Image.new("RGB", (200, 260), color) for color in ("white", "gray", "black")]
    frames[0].save(tmp_path / "scan.tiff", save_all=True, append_images=frames[1:])
    ingest(tiny_fp32, store, tmp_path / "scan.tiff")
    assert sorted(r.payload["page"] for r in store.iter_records()) == [0, 1, 2]
    assert {r.payload["total_pages"] for r in store.iter_records()} == {3}


def test_worker_processes_give_the_same_points_as_inline_rendering(tiny_fp32, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", 5)
    results = []
    for workers in (0, 1):
        spec = CollectionSpec(dim=tiny_fp32.dims[-1])
        with open_store("c", spec, data_dir=tmp_path / f"w{workers}") as store:
            ingest(tiny_fp32, store, pdf, workers=workers, batch_size=2)
            ids = sorted(r.id for r in store.iter_records())
            results.append((ids, store.retrieve(ids, with_vectors=True)))
    (ids0, recs0), (ids1, recs1) = results
    assert ids0 == ids1 and len(ids0) == 5
    for a, b in zip(recs0, recs1, strict=True):
        np.testing.assert_allclose(a.dense, b.dense, atol=1e-6)


def test_text_chunks_overlap_by_the_requested_tokens():
    offsets = [(i * 2, i * 2 + 1) for i in range(10)]
    assert chunk_spans(offsets, 4, 1) == [(0, 7), (6, 13), (12, 19)]
    assert chunk_spans(offsets, 20, 5) == [(0, 19)]
    with pytest.raises(ValueError):
        chunk_spans(offsets, 4, 4)


def test_discover_walks_folders_and_skips_hidden_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.PDF").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "y.pdf").write_bytes(b"")
    (tmp_path / "z.md").write_text("z")
    found, problems = discover([tmp_path])
    assert [(f.path.name, f.kind) for f in found] == [("x.PDF", "pdf"), ("z.md", "text")] and not problems


def _run_ingest(data_dir: Path, pdf: Path, kill_after: int | None = None) -> subprocess.CompletedProcess | None:
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    cmd = [sys.executable, "-m", "visdoc", "ingest", str(pdf), "--data-dir", str(data_dir), "--batch-size", "2",
           "--workers", "1"]  # fmt: skip
    if kill_after is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = threading.Event()

    def watch() -> None:
        buffer = ""
        while chunk := proc.stderr.read(1):
            buffer += chunk
            counts = [int(n) for n in re.findall(r"(\d+)/\d+ \[", buffer[-200:])]
            if counts and max(counts) >= kill_after:
                seen.set()

    threading.Thread(target=watch, daemon=True).start()
    assert seen.wait(300), "ingestion made no progress"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


@pytest.mark.slow
def test_killed_ingestion_resumes_to_the_same_points(tmp_path):
    pdf = make_pdf(tmp_path / "long.pdf", 24)
    _run_ingest(tmp_path / "killed", pdf, kill_after=8)
    with open_store("visdoc", data_dir=tmp_path / "killed") as store:
        partial = store.count()
    assert 0 < partial < 24  # it really stopped midway
    resumed = _run_ingest(tmp_path / "killed", pdf)
    assert resumed.returncode == 0, resumed.stderr
    clean = _run_ingest(tmp_path / "clean", pdf)
    assert clean.returncode == 0, clean.stderr
    with (
        open_store("visdoc", data_dir=tmp_path / "killed") as a,
        open_store("visdoc", data_dir=tmp_path / "clean") as b,
    ):
        ids_a = sorted(r.id for r in a.iter_records())
        ids_b = sorted(r.id for r in b.iter_records())
        assert a.count() == b.count() == 24 and ids_a == ids_b


def test_a_pdf_rewritten_in_place_is_rendered_afresh_in_the_same_process(tiny_fp32, store, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    ingest(tiny_fp32, store, pdf)  # workers=0: rendering happens in this process
    doc = pymupdf.open()
    for i in range(3):
        doc.new_page().insert_text((72, 72), f"second version, page {i + 1}")
    doc.save(pdf)
    report = ingest(tiny_fp32, store, pdf)
    assert not report.problems and report.pages_stored == 3
    texts = sorted(r.payload["text"] for r in store.iter_records())
    assert len(texts) == 3 and all(t.startswith("second version") for t in texts)


def test_the_same_file_at_two_paths_is_stored_once_and_survives_a_change_of_one_copy(tiny_fp32, store, tmp_path):
    folder = tmp_path / "copies"
    folder.mkdir()
    make_pdf(folder / "a.pdf", 2)
    shutil.copy(folder / "a.pdf", folder / "b.pdf")
    first = ingest(tiny_fp32, store, folder)
    assert first.pages_stored == 2 and store.count() == 2  # embedded once
    make_pdf(folder / "b.pdf", 3)  # b changes, a still holds the old content
    ingest(tiny_fp32, store, folder)
    documents = {r.payload["document_id"] for r in store.iter_records()}
    assert len(documents) == 2 and store.count() == 2 + 3


def test_ingestion_steps_fill_several_forward_passes_where_batches_are_prepared_ahead(tiny_fp32):
    assert default_batch_size(tiny_fp32) == 8  # CPU: one forward pass of 8,192 tokens
    assert Ingestor(tiny_fp32, None, workers=0).batch_size == 8  # type: ignore[arg-type]
    gpu = SimpleNamespace(max_batch_tokens=32768, preprocess_workers=8)
    assert default_batch_size(gpu) == 128  # four passes: preparing the later ones overlaps the GPU
    assert default_batch_size(object()) == 8  # a remote model


class OffHost:
    """The tiny model seen as computing off this machine's CPU (a GPU or a server): Ingestor then
    gathers the next step and writes the last one while the model encodes."""

    device = SimpleNamespace(type="meta")

    def __init__(self, model, fail_on_call: int | None = None) -> None:
        self._model, self._fail_on_call, self.calls = model, fail_on_call, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_images(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self._fail_on_call:
            raise RuntimeError("device lost")
        return self._model.encode_images(*args, **kwargs)


def test_overlapped_steps_store_the_same_points_as_the_inline_pipeline(tiny_fp32, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", 7)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    stored = []
    runs = [("inline", tiny_fp32, None, False), ("overlapped", OffHost(tiny_fp32), True, True),
            ("overlapped, small run: writes here", OffHost(tiny_fp32), None, False)]  # fmt: skip
    for name, model, write_process, in_child in runs:
        with open_store("c", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path / name) as store:
            engine_process, engines = store.engine_process, []
            store.engine_process = lambda opened=engine_process, calls=engines: calls.append(1) or opened()
            ingestor = Ingestor(model, store, workers=1, batch_size=2, write_process=write_process)
            report = ingestor.ingest([pdf, tmp_path / "broken.pdf", SAMPLES])
            assert len(engines) == in_child
            assert [p.path for p in report.problems] == [str(tmp_path / "broken.pdf")]
            ids = sorted(r.id for r in store.iter_records())
            stored.append((report.pages_stored, ids, store.retrieve(ids, with_vectors=True)))
    count, ids, records = stored[0]
    assert count == len(ids) and len(ids) > 7
    for other_count, other_ids, other_records in stored[1:]:
        assert other_count == count and other_ids == ids
        for a, b in zip(records, other_records, strict=True):
            assert {**a.payload, "created_at": None} == {**b.payload, "created_at": None}
            np.testing.assert_allclose(a.dense, b.dense, atol=1e-6)
            np.testing.assert_allclose(a.multivector, b.multivector, atol=1e-6)


def test_off_the_cpu_a_large_run_stores_through_the_engine_process(tiny_fp32, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "ENGINE_PROCESS_MIN_UNITS", 6)
    pdf = make_pdf(tmp_path / "doc.pdf", 6)
    for model, expected in ((OffHost(tiny_fp32), 1), (tiny_fp32, 0)):  # on the CPU writes stay inline
        with open_store("c", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path / str(expected)) as store:
            engine_process, engines = store.engine_process, []
            store.engine_process = lambda opened=engine_process, calls=engines: calls.append(1) or opened()
            assert Ingestor(model, store, workers=0, batch_size=2).ingest([pdf]).pages_stored == 6
            assert len(engines) == expected and store.count() == 6


def test_an_encode_failure_mid_run_stops_the_overlapped_pipeline_and_keeps_earlier_steps(tiny_fp32, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", 12)
    model = OffHost(tiny_fp32, fail_on_call=3)
    with open_store("c", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path / "data") as store:
        with pytest.raises(RuntimeError, match="device lost"):
            Ingestor(model, store, workers=1, batch_size=2).ingest([pdf])
        assert store.count() == 4  # the two steps encoded before the failure were written
    assert not _pipeline_threads()  # no encoder or writer thread left behind


def test_a_failed_write_stops_the_overlapped_pipeline_within_a_step(tiny_fp32, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", 12)
    model = OffHost(tiny_fp32)
    with open_store("c", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path / "data") as store:
        upsert, writes = store.upsert, []

        def failing_upsert(points):
            writes.append(len(points))
            if len(writes) == 2:
                raise OSError("disk full")
            upsert(points)

        store.upsert = failing_upsert
        with pytest.raises(OSError, match="disk full"):
            Ingestor(model, store, workers=1, batch_size=2).ingest([pdf])
        assert store.count() == 2 and len(writes) == 2  # the first step is kept, nothing after the failure
        assert model.calls <= 4  # of 6 steps: at most the two in flight when the write failed
    assert not _pipeline_threads()


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("visdoc-encode", "visdoc-upsert"))]
