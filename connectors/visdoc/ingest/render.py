"""PDF pages rendered in worker processes for :class:`~visdoc.ingest.Ingestor`, tied to this process.

Workers are spawned (torch threads and fork do not mix) and die with the process that started
them, however it ends (SIGKILL, SIGTERM, SIGBUS): on Linux the kernel kills them when it exits
(``PR_SET_PDEATHSIG``, set by :func:`start_worker`), elsewhere a thread in each worker checks once
a second; a worker whose parent is gone before that is set up exits at once. Ctrl-C is left to the
parent, which stops the pool (:meth:`RenderPool.close`). Multiprocessing's resource tracker, which
the workers keep alive by holding its pipe, then exits on its own.

A worker that dies (PyMuPDF crashing on one PDF) breaks the pool: a new one is started, the task
whose result was lost is tried again, and a task that breaks the new pool too is the problem of
its file. The other tasks are tried again as their turn comes. When the workers die on the tasks
of :data:`CRASHES_BEFORE_ANY_PAGE` different files and have rendered nothing yet, the fault is not in
the files (the workers cannot start): the run stops. (One damaged PDF cut into many tasks is only
its own problem.)
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..errors import SourceError, VisdocError
from ..sources import Problem, RenderedPage, render_pages
from .plan import Document
from .stages import RenderBudget, Unit, produce

TASKS_PER_WORKER = 3  # tasks in flight per worker, so rendering stays ahead of the model
CRASHES_BEFORE_ANY_PAGE = 3
PR_SET_PDEATHSIG = 1  # linux/prctl.h
CRASHED = "the page renderer crashed on this PDF (its worker process died); the PDF is probably damaged"


def start_worker(parent: int) -> None:
    """Initializer of a render worker: die with ``parent`` and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _killed_with_parent():
        threading.Thread(target=_watch_parent, args=(parent,), name="visdoc-watch-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)


def _killed_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class RenderPool:
    """``workers`` processes rendering the PDF pages of work items a few tasks ahead of their use."""

    def __init__(self, workers: int, budget: RenderBudget) -> None:
        self.workers = workers
        self.budget = budget
        self._pool: ProcessPoolExecutor | None = None
        self._crashed: set[str] = set()  # files one of whose tasks killed its worker twice
        self._rendered = False  # whether any task came back

    def units(self, work: Iterable[tuple[Document, list[int]]]) -> Iterator[Unit | Problem]:
        """The units (or problems) of each work item ``(document, pages)``, in order (:func:`~.stages.produce`).

        Closing the iterator stops the workers."""
        window: deque[tuple[Document, list[int], Future, ProcessPoolExecutor]] = deque()
        pending = iter(work)
        try:
            for doc, pages in itertools.islice(pending, TASKS_PER_WORKER * self.workers):
                window.append((doc, pages, *self._submit(doc, pages)))
            while window:
                doc, pages, future, pool = window.popleft()
                following = next(pending, None)
                if following is not None:
                    window.append((*following, *self._submit(*following)))
                rendered = functools.partial(self._result, doc, pages, future, pool)
                yield from produce(doc, pages, self.budget, rendered=rendered)
                if len(self._crashed) >= CRASHES_BEFORE_ANY_PAGE and not self._rendered:
                    raise VisdocError(f"the page renderer's worker processes died on the first {len(self._crashed)} "
                                      "files: they cannot start")  # fmt: skip
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers: tasks not started are dropped, running ones finish (a few pages)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, doc: Document, pages: list[int]) -> tuple[Future, ProcessPoolExecutor]:
        pool = self._current()
        try:
            return pool.submit(render_pages, str(doc.file.path), pages, self.budget), pool
        except BrokenProcessPool:
            self._drop(pool)
            pool = self._current()
            return pool.submit(render_pages, str(doc.file.path), pages, self.budget), pool

    def _result(self, doc: Document, pages: list[int], future: Future, pool: ProcessPoolExecutor) -> list[RenderedPage]:
        try:
            pages_rendered = future.result()
        except BrokenProcessPool:  # some task killed a worker: this one, or another in flight
            self._drop(pool)
            retry, pool = self._submit(doc, pages)
            try:
                pages_rendered = retry.result()
            except BrokenProcessPool:
                self._drop(pool)
                self._crashed.add(str(doc.file.path))
                raise SourceError(CRASHED) from None
        self._rendered = True
        return pages_rendered

    def _current(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # torch threads and fork do not mix
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
            )
        return self._pool

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        """Forget a broken pool (once: other tasks of it fail the same way later)."""
        if pool is self._pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
