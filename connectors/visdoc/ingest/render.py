"""PDF pages rendered in worker processes for :class:`~visdoc.ingest.Ingestor`, tied to this process.

The workers are a :class:`~visdoc.ingest.workers.WorkerPool`: fresh interpreters that import only
visdoc (torch threads and fork do not mix, and unlike multiprocessing's "spawn" they never re-run
the caller's script, so a script that ingests needs no ``__main__`` guard). They die with the
process that started them, however it ends; Ctrl-C is left to this process, which stops them
(:meth:`RenderPool.close`).

A worker that dies (PyMuPDF crashing on one PDF) costs only the task it was running: that task is
tried once more on a new worker, and a task that kills that one too is the problem of its file
(:data:`CRASHED`). The other tasks in flight are kept. When the workers die on the tasks of
:data:`CRASHES_BEFORE_ANY_PAGE` different files and have rendered nothing yet, the fault is not in
the files (the workers cannot start): the run stops. (One damaged PDF cut into many tasks is only
its own problem.)
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Iterable, Iterator

from ..errors import SourceError, VisdocError
from ..sources import Problem, RenderedPage, render_pages
from .plan import Document
from .stages import RenderBudget, Unit, produce
from .workers import Task, WorkerDied, WorkerPool

TASKS_PER_WORKER = 3  # tasks in flight per worker, so rendering stays ahead of the model
CRASHES_BEFORE_ANY_PAGE = 3
CRASHED = "the page renderer crashed on this PDF (its worker process died); the PDF is probably damaged"


class RenderPool:
    """``workers`` processes rendering the PDF pages of work items a few tasks ahead of their use."""

    def __init__(self, workers: int, budget: RenderBudget) -> None:
        self.workers = workers
        self.budget = budget
        self._pool = WorkerPool(workers)
        self._crashed: set[str] = set()  # files one of whose tasks killed its worker twice
        self._rendered = False  # whether any task came back

    def units(self, work: Iterable[tuple[Document, list[int]]]) -> Iterator[Unit | Problem]:
        """The units (or problems) of each work item ``(document, pages)``, in order (:func:`~.stages.produce`).

        Closing the iterator stops the workers."""
        window: deque[tuple[Document, list[int], Task]] = deque()
        pending = iter(work)
        try:
            for doc, pages in itertools.islice(pending, TASKS_PER_WORKER * self.workers):
                window.append((doc, pages, self._submit(doc, pages)))
            while window:
                doc, pages, task = window.popleft()
                following = next(pending, None)
                if following is not None:
                    window.append((*following, self._submit(*following)))
                rendered = functools.partial(self._result, doc, task)
                yield from produce(doc, pages, self.budget, rendered=rendered)
                if len(self._crashed) >= CRASHES_BEFORE_ANY_PAGE and not self._rendered:
                    raise VisdocError(f"the page renderer's worker processes died on the first {len(self._crashed)} "
                                      "files: they cannot start")  # fmt: skip
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers: tasks not done are dropped."""
        self._pool.close()

    def _submit(self, doc: Document, pages: list[int]) -> Task:
        return self._pool.submit(render_pages, str(doc.file.path), pages, self.budget)

    def _result(self, doc: Document, task: Task) -> list[RenderedPage]:
        try:
            pages_rendered = self._pool.result(task)
        except WorkerDied:
            self._crashed.add(str(doc.file.path))
            raise SourceError(CRASHED) from None
        self._rendered = True
        return pages_rendered
