"""Ingestion in this process: the stages of :mod:`visdoc.ingest.stages` run by local threads and processes.

Concurrency, all of it here:

- PDF pages render in ``workers`` worker processes (PyMuPDF is not thread-safe), a few tasks per
  worker ahead of the model; the workers die with this process (:mod:`visdoc.ingest.render`).
  Image frames and text chunks are produced in this thread.
- Units are cut into steps of ``batch_size``. On the CPU each step is encoded and then written
  in this thread, in turn: extra threads would take cores from torch's.
- On a GPU or a remote model two steps are in flight: two encoder threads, so the next step
  prepares its first batches while the current one runs, and one writer thread that stores each
  encoded step in order while later ones encode. A failed encode or write that no single file
  explains stops the run before another step starts; what was written stays (see
  :mod:`visdoc.ingest.stages` and :mod:`visdoc.ingest.writes`).
- Off the CPU, runs of at least :data:`ENGINE_PROCESS_MIN_UNITS` pages write through the embedded
  engine's child process (:meth:`~visdoc.store.Store.engine_process`), so storing pages does not
  hold the GIL the thread feeding the GPU needs.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing, nullcontext
from typing import TYPE_CHECKING, Any

from ..sources import Problem, discover
from .plan import Document, IngestReport, identify, plan_documents, reported
from .render import RenderPool
from .stages import Embedded, IngestHooks, Unit, embed_step, produce, render_budget, tasks
from .writes import Writes

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..store import Store

# Pages and chunks from which a run off the CPU stores through the engine's child process: starting it
# and reopening the collection here take about 0.4 s, repaid after ~65 pages by the ~6 ms per page
# that storing in-process added to an H200's forward passes; 256 leaves a margin.
ENGINE_PROCESS_MIN_UNITS = 256
STEPS_IN_FLIGHT = 2  # off the CPU


class Ingestor:
    """Embeds files with an :class:`~visdoc.encoder.Encoder` and stores them in a :class:`~visdoc.store.Store`.

    ``workers`` processes render PDF pages (default: the cores but one, at most 4); ``batch_size``
    pages or chunks are embedded and stored per step (default: 8 on CPU, 128 on GPU; see
    :func:`default_batch_size`). ``write_process`` runs the store's engine in a child process for
    the run (default: when the model computes off the CPU and the run has at least
    :data:`ENGINE_PROCESS_MIN_UNITS` pages and chunks).
    """

    def __init__(
        self,
        model: Encoder,
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
        self._budget = render_budget(model.pixels, max_pixels)

    def ingest(
        self, paths: Iterable[str | os.PathLike], *, show_progress: bool = False, hooks: IngestHooks | None = None
    ) -> IngestReport:
        """Store every supported file under ``paths``; problems are collected, not raised.

        Ctrl-C (:class:`KeyboardInterrupt`) stops the run and its workers; what was stored stays."""
        from tqdm.auto import tqdm

        start = time.perf_counter()
        hooks = hooks or IngestHooks()
        files, problems = discover(paths)
        report = IngestReport(files=len(files) + len(problems), problems=problems)
        identified = (identify(f, self.model.tokenizer, self.chunk_tokens, self.chunk_overlap) for f in files)
        todo = plan_documents(self.store, reported(report, identified), report)
        total = sum(len(doc.missing) for doc in todo)
        overlap = computes_off_cpu(self.model)
        offload = overlap and total >= ENGINE_PROCESS_MIN_UNITS if self.write_process is None else self.write_process
        with ExitStack() as stack:
            stack.enter_context(self.store.engine_process() if offload and total else nullcontext())
            bar = stack.enter_context(tqdm(total=total, unit="page", disable=not show_progress, desc="ingest"))
            writes = Writes(self.store)
            steps = stack.enter_context(_Steps(self, report, hooks, bar, overlap, writes))
            units = stack.enter_context(closing(self._units(todo)))  # its end stops the render workers
            for batch in _batches(reported(report, units), self.batch_size):
                steps.add(batch)
            steps.finish()
            deleted, changed = writes.finish()
            report.pages_stored -= deleted
            report.problems += changed
            if report.pages_stored:
                hooks.check()
                self.store.optimize()
            elif not hooks.cancelled():  # an earlier run may have stored its pages, then failed to optimize
                self.store.finish_pending()
        report.problems = list(dict.fromkeys(report.problems))  # a file that changed: once
        whole = {problem.path for problem in report.problems if problem.page is None}
        report.documents_stored = sum(str(doc.file.path) not in whole for doc in todo)
        report.seconds = time.perf_counter() - start
        return report

    def _units(self, documents: list[Document]) -> Iterator[Unit | Problem]:
        """Pages and chunks of all documents: PDFs first, rendered ahead in worker processes."""
        pdfs = [item for item in tasks(documents) if item[0].file.kind == "pdf"]
        yield from self._rendered(pdfs)
        for doc, pages in tasks(d for d in documents if d.file.kind != "pdf"):
            yield from produce(doc, pages, self._budget)

    def _rendered(self, work: list[tuple[Document, list[int]]]) -> Iterator[Unit | Problem]:
        if not work:
            return
        if self.workers == 0:
            for doc, pages in work:
                yield from produce(doc, pages, self._budget)
            return
        yield from RenderPool(self.workers, self._budget).units(work)


class _Steps:
    """The steps of one run, encoded and written in order: inline on the CPU, else with
    :data:`STEPS_IN_FLIGHT` steps encoding in threads and one write at a time in a writer thread."""

    def __init__(
        self, ingestor: Ingestor, report: IngestReport, hooks: IngestHooks, bar: Any, overlap: bool, writes: Writes
    ) -> None:
        self.ingestor, self.report, self.hooks, self.bar, self.writes = ingestor, report, hooks, bar, writes
        self.depth = STEPS_IN_FLIGHT if overlap else 1
        self.encoders = ThreadPoolExecutor(2, thread_name_prefix="visdoc-encode") if overlap else None
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="visdoc-upsert") if overlap else None
        self.encoding: deque[tuple[list[Unit], Future[Embedded]]] = deque()
        self.writing: Future[tuple[int, list[Problem]]] | None = None  # the last step's write

    def add(self, batch: list[Unit]) -> None:
        """Start encoding a step; once enough are in flight, store the oldest."""
        if self.writing is not None and self.writing.done():
            self._count_write()  # a failed write stops the run before another step starts
        self.encoding.append((batch, self._encode(batch)))
        if len(self.encoding) == self.depth:
            self._store_oldest()

    def finish(self) -> None:
        """Store every step still in flight and wait for the last write."""
        while self.encoding:
            self._store_oldest()
        self._count_write()

    def _encode(self, batch: list[Unit]) -> Future[Embedded]:
        run = self.ingestor
        if self.encoders is not None:
            return self.encoders.submit(embed_step, run.model, run.store.spec, batch, run.max_pixels)
        done: Future[Embedded] = Future()
        done.set_result(embed_step(run.model, run.store.spec, batch, run.max_pixels))
        return done

    def _store_oldest(self) -> None:
        batch, encoded = self.encoding.popleft()
        step = encoded.result()
        self.report.problems += step.problems
        self._count_write()
        self.hooks.check()
        if self.writer is None:
            self._counted(self.writes.write(batch, step.points))
        else:
            self.writing = self.writer.submit(self.writes.write, batch, step.points)
        self.bar.update(len(batch))

    def _count_write(self) -> None:
        """Wait for the last write and count its points; a failed write raises here."""
        if self.writing is not None:
            writing, self.writing = self.writing, None
            self._counted(writing.result())

    def _counted(self, written: tuple[int, list[Problem]]) -> None:
        stored, problems = written
        self.report.problems += problems
        self.report.pages_stored += stored
        self.hooks.on_stored(stored)

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self.encoders, self.writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def _batches(units: Iterable[Unit], size: int) -> Iterator[list[Unit]]:
    batch: list[Unit] = []
    for unit in units:
        batch.append(unit)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def computes_off_cpu(model: Encoder) -> bool:
    """Whether gathering and storing steps may overlap encoding: yes for a GPU or a remote model;
    not when the model computes on this machine's CPU, where those threads take cores from torch's
    (the pipeline ran 30% slower with overlapped writes on 2 cores)."""
    return model.device is None or model.device.type != "cpu"


def default_batch_size(model: Any) -> int:
    """Pages or chunks per ingestion step (a page is ~800 tokens): about one forward pass of a local
    model's token budget on CPU (8), four where it prepares batches ahead (128 on CUDA, so that
    preparing each step's later passes overlaps the GPU), and 8 for a remote model."""
    passes = 4 if getattr(model, "preprocess_workers", 0) else 1
    return max(8, passes * getattr(model, "max_batch_tokens", 0) // 1024)


def default_workers() -> int:
    """Render workers: leave the model at least one core."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))
