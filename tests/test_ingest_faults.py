"""One bad file never aborts or spoils a run: each failure of a file or page, from any stage, is a
reported problem in words; a file that changes while it is read is never stored half; the render
workers die with an interrupted run (issue 16)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import psutil
import pymupdf
import pytest
from PIL import Image

import visdoc.ingest.plan as plan
import visdoc.ingest.stages as stages
import visdoc.sources.pdf as pdf_source
from conftest import FIXTURE
from visdoc.ingest import IngestHooks, Ingestor
from visdoc.points import SOURCE, document_id, point_id
from visdoc.sources import discover, file_sha256, render_pages
from visdoc.store import CollectionSpec, PageFilter, open_store

SAMPLES = FIXTURE.parents[2] / "examples" / "data"
SMALL = 28 * 28 * 32  # pixels per page: a few dozen tokens, fast on the tiny model
CHANGED = "changed while it was read; run again"


def make_pdf(path: Path, pages: int, text: str = "first version", size: tuple[int, int] = (612, 792)) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((40, 60), f"{text}, page {i + 1}", fontsize=14)
        page.draw_rect(pymupdf.Rect(40, 80 + 5 * i, 200, 160), color=(0, 0, 1), fill=(0.2, 0.3, 0.8))
    doc.save(path)
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A 1x1 PNG whose header claims ``side`` x ``side`` pixels: PIL refuses it as a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def open_docs(tiny, folder: Path):
    return open_store("docs", CollectionSpec(dim=tiny.dims[-1], model="tiny"), data_dir=folder)


@pytest.fixture
def store(tmp_path, tiny_fp32):
    s = open_docs(tiny_fp32, tmp_path / "data")
    yield s
    s.close()


def ingest(model, store, *paths, hooks=None, **options):
    options = {"workers": 0, "max_pixels": SMALL} | options
    return Ingestor(model, store, **options).ingest(paths, hooks=hooks)


def contents(store) -> dict[str, dict]:
    return {r.id: {k: v for k, v in r.payload.items() if k != "created_at"} for r in store.iter_records()}


def sources(store) -> set[str]:
    return {Path(r.payload[SOURCE]).name for r in store.iter_records()}


def test_a_decompression_bomb_is_reported_and_the_pdf_beside_it_is_stored(tiny_fp32, store, tmp_path):
    make_pdf(tmp_path / "good.pdf", 2)
    bomb_png(tmp_path / "huge.png")
    report = ingest(tiny_fp32, store, tmp_path / "good.pdf", tmp_path / "huge.png", workers=1)
    [problem] = report.problems
    assert Path(problem.path).name == "huge.png" and "decompression bomb" in problem.message
    assert store.count() == 2 and sources(store) == {"good.pdf"}


@pytest.mark.parametrize("workers", [0, 1])
def test_a_file_deleted_mid_run_is_reported_and_the_later_files_are_stored(tiny_fp32, store, tmp_path, workers):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abc":
        make_pdf(folder / f"{name}.pdf", 2, text=name)
    hooks = IngestHooks(on_stored=lambda n: (folder / "b.pdf").unlink(missing_ok=True))  # after a's pages
    report = ingest(tiny_fp32, store, folder, batch_size=2, workers=workers, hooks=hooks)
    [problem] = report.problems
    assert problem.path == str(folder / "b.pdf") and "the file is gone" in problem.message, problem
    assert sources(store) == {"a.pdf", "c.pdf"} and store.count() == 4


class ReplacingModel:
    """The tiny model, replacing a file just before its ``call``-th encode."""

    def __init__(self, model, call: int, replace) -> None:
        self._model, self._call, self._replace, self.calls = model, call, replace, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_images(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self._call:
            self._replace()
        return self._model.encode_images(*args, **kwargs)


@pytest.mark.parametrize("moment", ["before it is rendered", "before it is written", "after a first write"])
def test_a_file_replaced_mid_run_is_reported_and_never_stored_half(tiny_fp32, store, tmp_path, moment):
    make_pdf(tmp_path / "a.pdf", 2, text="a")
    b = make_pdf(tmp_path / "b.pdf", 6)
    old_id = document_id(file_sha256(b))

    replaced: list[bool] = []

    def replace() -> None:  # once: renamed over it (a new inode), or rewritten in place
        if not replaced:
            replaced.append(True)
            new = make_pdf(tmp_path / "b.new", 3, text="second version")
            if moment == "before it is written":
                new.replace(b)
            else:
                b.write_bytes(new.read_bytes())

    stored: list[int] = []

    def on_stored(n: int) -> None:  # steps of 2: a's pages, then b's pages 1-2, 3-4 ...
        stored.append(n)
        if moment == "before it is rendered" or (moment == "after a first write" and len(stored) == 2):
            replace()

    model = ReplacingModel(tiny_fp32, 2, replace) if moment == "before it is written" else tiny_fp32
    report = ingest(model, store, tmp_path / "a.pdf", b, batch_size=2, hooks=IngestHooks(on_stored=on_stored))
    assert [(p.path, p.page) for p in report.problems] == [(str(b), None)] and CHANGED in report.problems[0].message
    assert sources(store) == {"a.pdf"} and store.count(PageFilter(document_ids=(old_id,))) == 0
    assert report.pages_stored == store.count() == 2

    again = ingest(tiny_fp32, store, tmp_path / "a.pdf", b)
    assert not again.problems and again.pages_stored == 3
    new = [r.payload for r in store.iter_records(PageFilter(sources=(str(b),)))]
    assert sorted(p["page"] for p in new) == [0, 1, 2] and all("second version" in p["text"] for p in new)
    assert {p["document_id"] for p in new} == {document_id(file_sha256(b))}


@pytest.fixture(scope="module")
def four_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("four")
    make_pdf(folder / "a.pdf", 2, text="a")
    make_pdf(folder / "b.pdf", 2, text="b", size=(400, 400))  # square pages: the only square images
    Image.open(SAMPLES / "sample-page.png").save(folder / "c.png")
    (folder / "d.txt").write_text("A short note about cold-chain logistics in the third quarter.")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(tiny_fp32, four_files, tmp_path_factory):
    """The collection an uninterrupted run stores from the four files but ``bad``."""
    done: dict[str, dict] = {}

    def of(bad: str) -> dict:
        if bad not in done:
            with open_docs(tiny_fp32, tmp_path_factory.mktemp("reference")) as reference:
                others = [path for path in sorted(four_files.iterdir()) if path.name != bad]
                assert not ingest(tiny_fp32, reference, *others, batch_size=8).problems
                done[bad] = contents(reference)
        return done[bad]

    return of


class FailingModel:
    """The tiny model failing every encode that holds a square image (the pages of b.pdf)."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_images(self, images, *args, **kwargs):
        if any(image.width == image.height for image in images):
            raise RuntimeError("injected")
        return self._model.encode_images(images, *args, **kwargs)


@pytest.mark.parametrize("stage", ["hash", "render", "decode", "encode", "write"])
def test_an_error_in_any_stage_is_a_problem_of_its_file_alone(
    tiny_fp32, store, four_files, uninterrupted, monkeypatch, stage
):
    bad = "c.png" if stage == "decode" else "b.pdf"
    bad_path = str(four_files / bad)

    def failing(original):
        def call(*args, **kwargs):
            first = args[0]
            path = str(getattr(getattr(first, "file", None), "path", first))
            if path == bad_path:
                raise RuntimeError("injected")
            return original(*args, **kwargs)

        return call

    model = tiny_fp32
    if stage == "hash":
        monkeypatch.setattr(plan, "file_sha256", failing(plan.file_sha256))
    elif stage == "render":
        monkeypatch.setattr(stages, "render_pages", failing(stages.render_pages))
    elif stage == "decode":
        monkeypatch.setattr(stages, "image_units", failing(stages.image_units))
    elif stage == "encode":
        model = FailingModel(tiny_fp32)
    else:
        upsert = store.upsert

        def refusing(points):
            if any(point.payload[SOURCE] == bad_path for point in points):
                raise RuntimeError("injected")
            upsert(points)

        monkeypatch.setattr(store, "upsert", refusing)
    report = ingest(model, store, four_files, batch_size=8)  # one step holds every file
    assert {p.path for p in report.problems} == {bad_path} and "injected" in report.problems[0].message
    assert contents(store) == uninterrupted(bad)


def test_a_full_disk_stops_the_run_instead_of_blaming_a_file(tiny_fp32, store, four_files, monkeypatch):
    from visdoc.store import DiskFullError

    upsert = store.upsert

    def full_for_large_writes(points):
        if len(points) > 1:  # the text and the image would still fit alone: the PDFs would be blamed
            raise DiskFullError("no room", str(store.path), needed=1 << 30, free=1 << 20)
        upsert(points)

    monkeypatch.setattr(store, "upsert", full_for_large_writes)
    with pytest.raises(DiskFullError):
        ingest(tiny_fp32, store, four_files, batch_size=8)
    assert store.count() == 0  # nothing of the step was stored as if its other files were fine


def test_discover_reports_links_pipes_loops_and_unreadable_folders(tmp_path, monkeypatch):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "locked").mkdir()
    (tmp_path / "elsewhere").mkdir()
    make_pdf(root / "good.pdf", 1)
    (root / "locked" / "secret.pdf").write_bytes(b"%PDF")
    os.symlink(root / "good.pdf", root / "alias.pdf")  # a link to a file is followed
    os.symlink(root / "nowhere.pdf", root / "dangling.pdf")
    os.mkfifo(root / "pipe.pdf")
    os.symlink(root, root / "sub" / "loop")
    os.symlink("self.pdf", root / "self.pdf")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    scandir = os.scandir

    def unreadable(path):  # root reads every folder: this one refuses as it would a user
        if Path(path) == root / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", unreadable)
    found, problems = discover([root, tmp_path / "missing.pdf"])
    assert [f.path.name for f in found] == ["alias.pdf", "good.pdf"]
    said = {str(Path(p.path).relative_to(tmp_path)): p.message for p in problems}
    assert set(said) == {"in/dangling.pdf", "in/pipe.pdf", "in/sub/loop", "in/self.pdf", "in/linked", "in/locked",
                         "missing.pdf"}  # fmt: skip
    assert said["in/dangling.pdf"].startswith("a link to nothing") and "named pipe" in said["in/pipe.pdf"]
    assert "(a loop)" in said["in/sub/loop"] and "loop of links" in said["in/self.pdf"]
    assert "not followed" in said["in/linked"] and "permission denied" in said["in/locked"]
    assert said["missing.pdf"] == "no such file or folder"
    _, [direct] = discover([root / "pipe.pdf"])
    assert "named pipe" in direct.message


def test_a_fifo_is_never_opened_to_wait_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.pdf")
    outcome: list[BaseException | str] = []

    def hash_it() -> None:
        try:
            outcome.append(file_sha256(tmp_path / "pipe.pdf"))
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=hash_it, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked in open(): release it before failing
        os.close(os.open(tmp_path / "pipe.pdf", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("hashing a FIFO blocked")
    assert "not a regular file" in str(outcome[0])


def test_skip_messages_say_in_words_what_is_wrong_with_the_file(tiny_fp32, store, tmp_path, monkeypatch):
    make_pdf(tmp_path / "a.pdf", 2)
    make_pdf(tmp_path / "b.pdf", 1)
    paths = (tmp_path / "a.pdf", tmp_path / "b.pdf")
    render, info = pdf_source._render, plan.pdf_info

    def render_page(doc, number, budget):
        if number == 1:
            raise AssertionError
        return render(doc, number, budget)

    def pdf_info(path):
        if Path(path).name == "b.pdf":
            raise ZeroDivisionError("division by zero")
        return info(path)

    monkeypatch.setattr(pdf_source, "_render", render_page)
    monkeypatch.setattr(plan, "pdf_info", pdf_info)
    report = ingest(tiny_fp32, store, *paths)
    said = {(Path(p.path).name, p.page): p.message for p in report.problems}
    assert said == {("a.pdf", 1): "the PDF is damaged (AssertionError)",
                    ("b.pdf", None): "the PDF is damaged (ZeroDivisionError: division by zero)"}  # fmt: skip
    assert store.count() == 1


def render_or_crash(path: str, pages: list[int], budget: tuple[int, int, int]):
    """What a render worker runs in the test below: a PDF named crash*.pdf kills its worker."""
    if Path(path).name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    return render_pages(path, pages, budget)


def test_a_pdf_that_kills_its_render_worker_is_the_only_problem(tiny_fp32, store, tmp_path, monkeypatch):
    import visdoc.ingest.render as render

    paths = [make_pdf(tmp_path / f"{name}.pdf", 2, text=name) for name in ("a", "crash", "z")]
    monkeypatch.setattr(render, "render_pages", render_or_crash)
    report = ingest(tiny_fp32, store, *paths, workers=1, batch_size=2)
    [problem] = report.problems
    assert problem.path == str(tmp_path / "crash.pdf") and "crashed" in problem.message
    assert sources(store) == {"a.pdf", "z.pdf"} and store.count() == 4


def test_a_long_pdf_that_kills_every_worker_first_is_still_only_its_own_problem(tiny_fp32, store, tmp_path,
                                                                              monkeypatch):  # fmt: skip
    import visdoc.ingest.render as render

    crash = make_pdf(tmp_path / "crash-long.pdf", 4 * render.CRASHES_BEFORE_ANY_PAGE)  # as many render tasks
    good = make_pdf(tmp_path / "z.pdf", 2, text="z")
    monkeypatch.setattr(render, "render_pages", render_or_crash)
    report = ingest(tiny_fp32, store, crash, good, workers=1, batch_size=2)
    assert {p.path for p in report.problems} == {str(crash)} and sources(store) == {"z.pdf"}


# -- an interrupted `visdoc ingest` ----------------------------------------------------------------

PAGES = 80  # 2-4 s of rendering and embedding at SMALL: long enough to interrupt it
ENV = os.environ | {"VISDOC_MODEL": str(FIXTURE)}


def _ingest_command(data_dir: Path, pdf: Path) -> list[str]:
    return [sys.executable, "-m", "visdoc", "ingest", str(pdf), "--data-dir", str(data_dir), "--workers", "1",
            "--batch-size", "2", "--max-pixels", str(SMALL)]  # fmt: skip


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _interrupt_while_rendering(data_dir: Path, pdf: Path, signum: int, log: Path) -> tuple[int, list[psutil.Process]]:
    """Start ``visdoc ingest``, send ``signum`` once a render worker runs; returns its exit status
    and its child processes as they were."""
    with open(log, "w") as out:
        child = subprocess.Popen(_ingest_command(data_dir, pdf), env=ENV, stdout=out, stderr=subprocess.STDOUT)
    try:
        parent, deadline = psutil.Process(child.pid), time.monotonic() + 120
        while True:  # a render worker runs and a few pages are stored
            kids = [p for p in parent.children(recursive=True) if _alive(p)]
            done = [int(n) for n in re.findall(r"(\d+)/\d+ \[", log.read_text()[-300:])]
            if any("spawn_main" in " ".join(p.cmdline()) for p in kids) and max(done, default=0) >= 2:
                break
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        child.send_signal(signum)
        return child.wait(60), kids
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_render_workers_and_the_resource_tracker_die_with_an_interrupted_ingest(tiny_fp32, tmp_path, signum):
    pdf = make_pdf(tmp_path / "long.pdf", PAGES)
    status, kids = _interrupt_while_rendering(tmp_path / "data", pdf, signum, tmp_path / "log")
    try:
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [" ".join(p.cmdline())[-60:] for p in kids if _alive(p)]
        assert not left, f"still running after the ingest ended: {left}"
    finally:
        for p in kids:  # ours: don't leave them behind when the test fails
            if _alive(p):
                p.kill()
    output = (tmp_path / "log").read_text()
    if signum == signal.SIGTERM:
        assert status != 0 and "stopped" in output and "Traceback" not in output, output
        with open_store("visdoc", data_dir=tmp_path / "data") as interrupted:
            interrupted_count = interrupted.count()
        assert 0 < interrupted_count < PAGES  # it stopped midway and kept what was stored
        doc = document_id(hashlib.sha256(pdf.read_bytes()).hexdigest())
        with open_store("visdoc", data_dir=tmp_path / "data") as resumed:  # the re-run, in this process
            again = ingest(tiny_fp32, resumed, pdf, batch_size=8)
            assert not again.problems and again.pages_stored + interrupted_count == PAGES
            assert sorted(r.id for r in resumed.iter_records()) == sorted(point_id(doc, i) for i in range(PAGES))


def test_a_file_name_that_is_not_utf8_is_reported_and_the_others_are_stored(tiny_fp32, store, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "good.txt").write_text("A note about the harbour's cold storage.")
    bad = os.fsdecode(bytes(folder) + b"/caf\xe9.txt")
    with open(bad, "w") as file:
        file.write("Latin-1 named notes.")
    report = ingest(tiny_fp32, store, folder)
    assert [p.message for p in report.problems] == [
        "its name is not valid UTF-8, which the collection's payload must be; rename it"
    ]
    assert "caf\\xe9.txt" in report.problems[0].path and report.summary()  # printable
    assert sources(store) == {"good.txt"}


def test_folders_nested_deeper_than_the_recursion_limit_are_walked(tmp_path, monkeypatch):
    import inspect
    import sys

    deep = path = tmp_path / "deep"
    deep.mkdir()
    for _ in range(300):
        path = path / "a"
        path.mkdir()
    (path / "note.txt").write_text("bottom")
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)  # restored after the test
    sys.setrecursionlimit(len(inspect.stack(0)) + 150)  # fewer frames than folder levels
    try:
        found, problems = discover([deep])
    finally:
        sys.setrecursionlimit(1000)
    assert [f.path.name for f in found] == ["note.txt"] and not problems
