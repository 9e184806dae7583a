"""Ingestion: files -> pages or chunks -> embeddings -> Qdrant points, resumable and idempotent.

Each file is hashed; its pages get point ids from (content hash, page), so a second run stores
only what is missing (nothing for unchanged files, the rest of an interrupted run), and a
changed file replaces the pages of its previous version. PDF pages render in worker processes
ahead of the model; with a GPU or remote model, two steps are in flight (the next one prepares
while the current one runs, so the device does not wait between steps), the step after is
gathered and the last one is written to the store meanwhile. Bad files and pages are reported
and skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .documents import METADATA, image_reference, page_grid
from .errors import ImageLoadError
from .sources import (
    Problem,
    RenderedPage,
    SourceError,
    SourceFile,
    chunk_spans,
    discover,
    file_sha256,
    pdf_info,
    read_text,
)
from .sources.pdf import render_pages
from .store import CollectionSpec, PageFilter, PagePoint, Store, point_id

if TYPE_CHECKING:
    from .model import JinaV4

PAGES_PER_RENDER_TASK = 4
# Pages and chunks from which a run off the CPU stores through the engine's child process: starting it
# and reopening the collection here take about 0.4 s, repaid after ~65 pages by the ~6 ms per page
# that storing in-process added to an H200's forward passes; 256 leaves a margin.
ENGINE_PROCESS_MIN_UNITS = 256
_Embedded = tuple[list[PagePoint], list[Problem]]  # a step's points, and the pages it could not embed
DOCUMENT_ID_CHARS = 32


@dataclass
class IngestReport:
    """What one ingestion run did."""

    files: int = 0
    documents_stored: int = 0
    documents_unchanged: int = 0
    documents_replaced: int = 0
    pages_stored: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.files} files: {self.documents_stored} stored or completed, {self.documents_unchanged} unchanged, "
            f"{self.documents_replaced} replaced an older version; {self.pages_stored} pages/chunks embedded "
            f"in {self.seconds:.1f} s; {len(self.problems)} problems"
        ]
        lines += [f"  skipped {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass
class _Document:
    """A file to (finish) storing: identity, unit count and which units are still missing."""

    file: SourceFile
    document_id: str
    content_hash: str
    total: int
    missing: list[int]
    title: str = ""
    chunks: list[str] = field(default_factory=list)


@dataclass
class _Unit:
    """One page or chunk ready to encode."""

    doc: _Document
    index: int
    content: Any  # a PIL image or, for text chunks, the chunk's text
    text: str
    label: str


class Ingestor:
    """Embeds files with a :class:`~visdoc.JinaV4` and stores them in a :class:`~visdoc.store.Store`.

    ``workers`` processes render PDF pages (default: the cores but one, at most 4); ``batch_size``
    pages or chunks are embedded and stored per step (default: 8 on CPU, 128 on GPU; see
    :func:`default_batch_size`). ``write_process`` runs the store's engine in a child process for
    the run (:meth:`~visdoc.store.Store.engine_process`), so that storing pages does not hold up the
    thread that feeds a GPU; default: when the model computes off the CPU and the run has at least
    :data:`ENGINE_PROCESS_MIN_UNITS` pages and chunks.
    """

    def __init__(
        self,
        model: JinaV4,
        store: Store,
        *,
        workers: int | None = None,
        batch_size: int | None = None,
        max_pixels: int | None = None,
        chunk_tokens: int = 512,
        chunk_overlap: int = 64,
        write_process: bool | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.workers = default_workers() if workers is None else workers
        self.batch_size = default_batch_size(model) if batch_size is None else batch_size
        self.max_pixels = max_pixels
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.write_process = write_process
        pixels = model.checkpoint.pixels
        self._budget = (pixels.factor, pixels.min_pixels, max_pixels or pixels.max_pixels)

    def ingest(self, paths: Iterable[str | os.PathLike], *, show_progress: bool = False) -> IngestReport:
        """Store every supported file under ``paths``; problems are collected, not raised."""
        from tqdm.auto import tqdm

        start = time.perf_counter()
        files, problems = discover(paths)
        report = IngestReport(files=len(files) + len(problems), problems=problems)
        identified = _reported_all(report, (self._identify(file) for file in files))
        todo = plan_documents(self.store, identified, report)
        total = sum(len(doc.missing) for doc in todo)
        bar = tqdm(total=total, unit="page", disable=not show_progress, desc="ingest")
        # On a GPU or server two steps are in flight (the next prepares while the current one runs)
        # and writes overlap encoding; on the CPU each step is encoded and written in turn, inline.
        overlap = _computes_off_cpu(self.model)
        offload = overlap and total >= ENGINE_PROCESS_MIN_UNITS if self.write_process is None else self.write_process
        engine = self.store.engine_process() if offload and total else nullcontext()
        encoder = ThreadPoolExecutor(2, thread_name_prefix="visdoc-encode") if overlap else None
        writer = ThreadPoolExecutor(1, thread_name_prefix="visdoc-upsert") if overlap else None
        encoding: deque[tuple[list[_Unit], Future[_Embedded]]] = deque()
        writing: Future[int] | None = None  # the last step's upsert

        def encode(batch: list[_Unit]) -> Future[_Embedded]:
            if encoder is not None:
                return encoder.submit(embed_units, self.model, self.store.spec, batch, self.max_pixels)
            done: Future[_Embedded] = Future()
            done.set_result(embed_units(self.model, self.store.spec, batch, self.max_pixels))
            return done

        def count_write() -> None:
            """Wait for the last write and count its pages; a failed write raises here."""
            nonlocal writing
            if writing is not None:
                report.pages_stored += writing.result()
                writing = None

        def store_oldest() -> None:
            """Store the oldest step's points once encoded (one write at a time, in order)."""
            nonlocal writing
            batch, encoded = encoding.popleft()
            points, problems = encoded.result()
            report.problems += problems
            count_write()
            if writer is None:
                report.pages_stored += self._upsert(points)
            else:
                writing = writer.submit(self._upsert, points)
            bar.update(len(batch))

        with engine, bar, encoder or nullcontext(), writer or nullcontext():
            for batch in _batches(self._units(todo, report), self.batch_size):
                if writing is not None and writing.done():
                    count_write()  # a failed write stops the run before another step starts
                encoding.append((batch, encode(batch)))
                if len(encoding) == (2 if overlap else 1):
                    store_oldest()
            while encoding:
                store_oldest()
            count_write()
            if report.pages_stored:
                self.store.optimize()
        report.documents_stored = len(todo)
        report.seconds = time.perf_counter() - start
        return report

    # -- planning ----------------------------------------------------------------------------

    def _identify(self, file: SourceFile) -> _Document | Problem:
        return identify(file, self.model.tokenizer, self.chunk_tokens, self.chunk_overlap)

    # -- producing units ---------------------------------------------------------------------

    def _units(self, documents: list[_Document], report: IngestReport) -> Iterator[_Unit]:
        """Pages and chunks of all documents; PDF pages are rendered ahead in worker processes."""
        pdfs = [doc for doc in documents if doc.file.kind == "pdf"]
        tasks = [(doc, doc.missing[i : i + PAGES_PER_RENDER_TASK]) for doc in pdfs
                 for i in range(0, len(doc.missing), PAGES_PER_RENDER_TASK)]  # fmt: skip
        for doc, page in self._rendered(tasks):
            yield from _reported_all(report, pdf_units(doc, [page]))
        for doc in documents:
            if doc.file.kind == "image":
                yield from _reported_all(report, image_units(doc))
            elif doc.file.kind == "text":
                yield from text_units(doc)

    def _rendered(self, tasks: list[tuple[_Document, list[int]]]) -> Iterator[tuple[_Document, RenderedPage]]:
        if not tasks:
            return
        if self.workers == 0:
            for doc, pages in tasks:
                yield from ((doc, page) for page in render_pages(str(doc.file.path), pages, self._budget))
            return
        context = multiprocessing.get_context("spawn")  # torch threads and fork do not mix
        with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            window: deque[tuple[_Document, Future]] = deque()
            pending = iter(tasks)
            for doc, pages in pending:  # keep a few tasks per worker in flight
                window.append((doc, pool.submit(render_pages, str(doc.file.path), pages, self._budget)))
                if len(window) >= 3 * self.workers:
                    break
            while window:
                doc, future = window.popleft()
                following = next(pending, None)
                if following is not None:
                    window.append((following[0], pool.submit(render_pages, str(following[0].file.path),
                                                             following[1], self._budget)))  # fmt: skip
                yield from ((doc, page) for page in future.result())

    # -- encoding and storing ----------------------------------------------------------------

    def _upsert(self, points: list[PagePoint]) -> int:
        self.store.upsert(points)
        return len(points)


# -- steps shared with the distributed ingestion (visdoc.distributed) ---------------------------


def identify(file: SourceFile, tokenizer: Any, chunk_tokens: int = 512, chunk_overlap: int = 64) -> _Document | Problem:
    """Hash a file and count its pages (PDF pages, image frames) or cut it into chunks (text).

    A file that cannot be read comes back as its :class:`Problem`. Nothing is looked up in a store.
    """
    try:
        content_hash = file_sha256(file.path)
        doc = _Document(file, content_hash[:DOCUMENT_ID_CHARS], content_hash, 0, [])
        if file.kind == "pdf":
            info = pdf_info(file.path)
            doc.total, doc.title = info.pages, info.title
        elif file.kind == "image":
            doc.total = _frame_count(file.path)
        else:
            text = read_text(file.path)
            spans = chunk_spans(tokenizer.offsets(text), chunk_tokens, chunk_overlap)
            doc.chunks = [text[a:b] for a, b in spans]
            doc.total = len(doc.chunks)
    except (SourceError, OSError) as exc:
        return Problem(str(file.path), str(exc))
    return doc


def plan_documents(store: Store, identified: Iterable[_Document], report: IngestReport) -> list[_Document]:
    """The documents (in the given order) that still miss pages in ``store``, ``missing`` filled in.

    Pages stored from the same path with other content are deleted first (content that an
    earlier file of the run has is kept); the same content at a second path is stored once.
    """
    documents: list[_Document] = []
    seen: set[str] = set()
    for doc in identified:
        report.documents_replaced += _drop_older_versions(store, doc, keep=seen)
        if doc.document_id in seen:  # the same content at another path: stored once
            report.documents_unchanged += 1
            continue
        seen.add(doc.document_id)
        ids = [point_id(doc.document_id, i) for i in range(doc.total)]
        stored = {record.id for record in store.retrieve(ids)}
        doc.missing = [i for i, pid in enumerate(ids) if pid not in stored]
        documents.append(doc)
    todo = [doc for doc in documents if doc.missing]
    report.documents_unchanged += len(documents) - len(todo)
    return todo


def _drop_older_versions(store: Store, doc: _Document, keep: set[str]) -> int:
    """Delete pages stored from the same path with other content; returns how many versions.

    Content that another file of this run still has (a copy at another path) is kept.
    """
    source = PageFilter(sources=(str(doc.file.path),))
    older = {r.payload.get("document_id") for r in store.iter_records(source)} - {doc.document_id} - keep
    for document_id in older:
        store.delete(PageFilter(document_ids=(document_id,), sources=(str(doc.file.path),)))
    return len(older)


def pdf_units(doc: _Document, pages: Iterable[RenderedPage]) -> Iterator[_Unit | Problem]:
    """Rendered PDF pages as units; a page that failed to render as its problem."""
    for page in pages:
        if page.error:
            yield Problem(str(doc.file.path), page.error, page.page)
        else:
            yield _Unit(doc, page.page, page.image(), page.text, page.label)


def image_units(doc: _Document) -> Iterator[_Unit | Problem]:
    """The missing frames of an image file (one for most formats, several for multi-page TIFF)."""
    from PIL import Image

    try:
        with Image.open(doc.file.path) as image:
            for index in doc.missing:
                try:
                    image.seek(index)
                    frame = image.convert("RGB")
                except (OSError, ValueError, EOFError) as exc:
                    yield Problem(str(doc.file.path), f"cannot decode image: {exc}", index)
                    continue
                yield _Unit(doc, index, frame, "", str(index + 1))
    except OSError as exc:
        yield Problem(str(doc.file.path), f"cannot read image: {exc}")


def text_units(doc: _Document) -> Iterator[_Unit]:
    """The missing chunks of a text file."""
    return (_Unit(doc, i, doc.chunks[i], doc.chunks[i], f"chunk {i + 1}") for i in doc.missing)


def embed_units(model: JinaV4, spec: CollectionSpec, units: list[_Unit], max_pixels: int | None = None) -> _Embedded:
    """Encode pages and chunks (one forward pass for both vectors) into points; images the model
    cannot load are returned as problems and left out."""
    pages = [u for u in units if u.doc.file.kind != "text"]
    chunks = [u for u in units if u.doc.file.kind == "text"]
    points: list[PagePoint] = []
    problems: list[Problem] = []
    while pages:
        try:
            result = model.encode_images([u.content for u in pages], task=spec.task, dim=spec.dim,
                                         multivector=True, max_pixels=max_pixels)  # fmt: skip
        except ImageLoadError as exc:
            bad = pages.pop(exc.index)
            problems.append(Problem(str(bad.doc.file.path), exc.reason, bad.index))
            continue
        points += _points(model, spec, pages, result, "page_image", max_pixels)
        break
    if chunks:
        result = model.encode_texts([u.content for u in chunks], task=spec.task, prompt_name="passage",
                                    dim=spec.dim, multivector=True)  # fmt: skip
        points += _points(model, spec, chunks, result, "text_chunk", max_pixels)
    return points, problems


def _points(
    model: JinaV4, spec: CollectionSpec, units: list[_Unit], result: Any, kind: str, max_pixels: int | None
) -> list[PagePoint]:
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [
        PagePoint(
            id=point_id(u.doc.document_id, u.index),
            dense=result.dense[i],
            multivector=result.multivector[i],
            content_span=model.tokenizer.content_span(kind, len(result.multivector[i])),
            grid=page_grid(model, u.content, max_pixels) if kind == "page_image" else None,
            payload={
                METADATA: _metadata(u, kind),
                "document_id": u.doc.document_id,
                "source": str(u.doc.file.path),
                "file_name": u.doc.file.path.name,
                "title": u.doc.title,
                "page": u.index,
                "page_label": u.label,
                "total_pages": u.doc.total,
                "text": u.text,
                "content_hash": u.doc.content_hash,
                "kind": kind,
                "model": model.name,
                "task": spec.task,
                "dim": spec.dim,
                "created_at": created,
            },
        )
        for i, u in enumerate(units)
    ]


def _metadata(unit: _Unit, kind: str) -> dict[str, Any]:
    """What frameworks show as a page's metadata (LangChain's PDF loader conventions)."""
    source = str(unit.doc.file.path)
    metadata = {"source": source, "page": unit.index, "total_pages": unit.doc.total, "page_label": unit.label,
                "document_id": unit.doc.document_id, "title": unit.doc.title}  # fmt: skip
    if kind == "page_image":
        metadata["image_path"] = image_reference(source, unit.index, unit.doc.total)
    return metadata


def _reported_all(report: IngestReport, items: Iterable[Any]) -> Iterator[Any]:
    """The items that are not problems; the problems go to the report."""
    for item in items:
        if isinstance(item, Problem):
            report.problems.append(item)
        else:
            yield item


def _computes_off_cpu(model: Any) -> bool:
    """Whether gathering and storing steps may overlap encoding: yes for a GPU or a remote model;
    not when the model computes on this machine's CPU, where those threads take cores from torch's
    (the pipeline ran 30% slower with overlapped writes on 2 cores)."""
    device = getattr(model, "device", None)
    return device is None or device.type != "cpu"


def default_batch_size(model: Any) -> int:
    """Pages or chunks per ingestion step (a page is ~800 tokens): about one forward pass of the
    model's token budget on CPU (8), four where batches are prepared ahead of the model (128 on
    CUDA, so that preparing each step's later passes overlaps the GPU), and 8 for a remote model."""
    passes = 4 if getattr(model, "preprocess_workers", 0) else 1
    return max(8, passes * getattr(model, "max_batch_tokens", 0) // 1024)


def default_workers() -> int:
    """Render workers: leave the model at least one core."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _batches(units: Iterable[_Unit], size: int) -> Iterator[list[_Unit]]:
    batch: list[_Unit] = []
    for unit in units:
        batch.append(unit)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def page_count(path: Path) -> int:
    """Pages of a PDF or frames of an image file; :class:`SourceError` when it cannot be read."""
    if path.suffix.lower() == ".pdf":
        return pdf_info(path).pages
    return _frame_count(path)


def _frame_count(path: Path) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read image: {exc}") from None
