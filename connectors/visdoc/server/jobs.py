"""Uploads from the search page: saved under the work folder, ingested one at a time in the background.

An uploaded file is stored once per content (``uploads/<document id>/<name>``), so uploading the
same file again embeds nothing. A single worker thread runs the ordinary
:class:`~visdoc.ingest.Ingestor` on each file; a job reports pages embedded out of pages to embed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ingest import IngestCancelled, IngestHooks
from ..points import document_id
from ..sources import EXTENSIONS
from .validation import UIError, check_collection_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .library import Library

UPLOAD_SUFFIXES = tuple(suffix for suffix, kind in EXTENSIONS.items() if kind != "text")  # pages, not texts
KEEP_JOBS = 200
UPLOAD_STEP = 8  # pages per ingestion step: progress moves and a shutdown stops within a few seconds


@dataclass
class Job:
    """One uploaded file and its ingestion."""

    id: str
    collection: str
    file_name: str
    state: str = "queued"  # queued -> embedding -> done | failed
    done: int = 0
    total: int = 0
    pages_stored: int = 0
    message: str = ""
    problems: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    path: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["path"]  # the page needs no server paths
        return data


def safe_file_name(name: str) -> str:
    """The base name of an uploaded file, reduced to harmless characters, with a supported suffix."""
    base = re.split(r"[\\/]", name or "")[-1]
    stem, dot, suffix = base.rpartition(".")
    suffix = f".{suffix.lower()}" if dot else ""
    if suffix not in UPLOAD_SUFFIXES:
        raise UIError(415, f"unsupported file type {suffix or '(none)'!r}: upload {', '.join(UPLOAD_SUFFIXES)}")
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" .")[:100] or "upload"
    return stem + suffix


class Jobs:
    """The upload queue of a search page."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.settings = library.settings
        self.uploads = library.work_dir / "uploads"
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _jobs, _receiving and the worker's start
        self._receiving = 0  # uploads still streaming to disk

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(reversed(self._jobs.values()))
        return [job.to_json() for job in jobs]

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UIError(404, "no such job")
        return job

    async def receive(self, collection: str, file_name: str, body: AsyncIterator[bytes], declared: int | None) -> Job:
        """Save an upload (at most ``max_upload_bytes``) and queue its ingestion."""
        check_collection_name(collection)
        name = safe_file_name(file_name)
        limit = self.settings.max_upload_bytes
        if declared is not None and declared > limit:
            raise UIError(413, f"file of {declared} bytes; the limit is {limit}")
        with self._lock:  # the check and the reservation at once: concurrent uploads count each other
            if self._stop.is_set():
                raise UIError(503, "the server is shutting down")
            pending = self._receiving + sum(job.state in ("queued", "embedding") for job in self._jobs.values())
            if pending >= self.settings.max_queued_jobs:
                raise UIError(429, f"{pending} uploads are waiting; try again when some are done")
            self._receiving += 1
        try:
            job = await self._save(collection, name, body, limit)
            with self._lock:
                if self._stop.is_set():
                    raise UIError(503, "the server is shutting down")
                self._jobs[job.id] = job
                while len(self._jobs) > KEEP_JOBS:
                    self._jobs.popitem(last=False)
                self._start()
                self._queue.put(job)
        finally:
            with self._lock:
                self._receiving -= 1
        return job

    async def _save(self, collection: str, name: str, body: AsyncIterator[bytes], limit: int) -> Job:
        """Stream the body to a partial file, then keep it under its content's folder."""
        incoming = self.uploads / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        partial = incoming / f"{uuid.uuid4().hex}.part"
        sha, size = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as f:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise UIError(413, f"file larger than the limit of {limit} bytes")
                    sha.update(chunk)
                    f.write(chunk)
            if size == 0:
                raise UIError(400, "the file is empty")
            path = self._place(partial, document_id(sha.hexdigest()), name)
        finally:
            partial.unlink(missing_ok=True)
        return Job(uuid.uuid4().hex, collection, name, path=str(path))

    def _place(self, partial: Path, document_id: str, name: str) -> Path:
        """Where the upload lives from now on: one folder per content, the first name kept."""
        folder = self.uploads / document_id
        folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(p for p in folder.iterdir() if p.is_file())
        if existing:
            return existing[0]
        target = folder / name
        os.replace(partial, target)
        return target

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="visdoc-ui-ingest", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stop.is_set():
                return
            try:
                self._run(job)
            except IngestCancelled:
                job.state, job.message = "failed", "the server stopped; upload the file again to finish it"
            except UIError as exc:
                job.state, job.message = "failed", str(exc)
            except Exception as exc:  # reported to the page, the worker goes on
                job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                self.library.invalidate(job.collection)

    def _run(self, job: Job) -> None:
        from ..ingest import Ingestor, page_count

        store = self.library.store(job.collection, create=True)
        try:
            total = page_count(Path(job.path))
        except Exception:  # unreadable: the ingestion reports why
            total = 0
        job.state, job.total = "embedding", total
        ingestor = Ingestor(
            self.library.model, store, batch_size=UPLOAD_STEP, workers=max(1, self.settings.ingest_workers)
        )
        report = ingestor.ingest([job.path], hooks=self.hooks(job))
        job.pages_stored = report.pages_stored
        job.problems = [f"{p.message}" + (f" (page {p.page + 1})" if p.page is not None else "")
                        for p in report.problems]  # fmt: skip
        job.done = job.total if not job.problems else job.done
        if report.pages_stored == 0 and report.documents_unchanged and not job.problems:
            job.message = "already stored"
        job.state = "failed" if job.problems and not report.pages_stored else "done"
        if job.state == "failed":
            job.message = "; ".join(job.problems)

    def hooks(self, job: Job) -> IngestHooks:
        """A job's progress (pages stored) and its stop on shutdown: nothing more is stored or optimized."""

        def stored(n: int) -> None:
            job.done = min(job.total or n, job.done + n)

        return IngestHooks(on_stored=stored, cancelled=self._stop.is_set)

    def close(self) -> None:
        """Stop the worker and wait for it: a running ingestion stops after its current batch.

        No timeout: the stores are closed after this returns, and the ingestion must be out of them.
        Uploads that arrive from now on are refused (503).
        """
        with self._lock:
            self._stop.set()
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join()
