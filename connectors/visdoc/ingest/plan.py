"""The first stage of ingestion: what each file is, and which of its pages the store still misses.

A file is hashed (its document id is the hash's prefix, :func:`visdoc.points.document_id`) and its
pages counted (PDF pages, image frames) or its text cut into chunks. Against the store, a
document whose pages are all there is skipped, one that was interrupted keeps only its missing
pages, and pages stored from the same path with other content (an older version) are deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ..points import DOCUMENT_ID, document_id, point_id
from ..sources import (
    CHANGED,
    FileState,
    Problem,
    SourceFile,
    explain,
    file_sha256,
    file_state,
    pdf_info,
)
from ..sources.text import TextChunks, text_chunks
from ..store import PageFilter, Store


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
class Document:
    """A file to (finish) storing: identity, unit count and which units are still missing, and
    ``state``, what the file was when it was hashed (see :func:`changed`)."""

    file: SourceFile
    document_id: str
    content_hash: str
    total: int
    missing: list[int]
    title: str = ""
    chunks: TextChunks | None = None  # a text's chunks, read lazily (TextChunks.select)
    state: FileState | None = None


def reported(report: IngestReport, items: Iterable[Any]) -> Iterator[Any]:
    """The items that are not problems; the problems go to the report."""
    for item in items:
        if isinstance(item, Problem):
            report.problems.append(item)
        else:
            yield item


def failure(path: Path | str, exc: BaseException, page: int | None = None) -> Problem:
    """An unexpected error of one file (or page) as its problem, in words (:func:`~visdoc.sources.explain`)."""
    return Problem(str(path), explain(exc, path), page)


def changed(doc: Document) -> Problem | None:
    """The problem of a document whose file is no longer what was hashed (gone, rewritten or
    replaced); ``None`` while it is the same (or nothing was recorded)."""
    if doc.state is None:
        return None
    try:
        now = file_state(doc.file.path)
    except OSError as exc:
        return failure(doc.file.path, exc)
    return None if now == doc.state else Problem(str(doc.file.path), CHANGED)


def identify(file: SourceFile, tokenizer: Any, chunk_tokens: int = 512, chunk_overlap: int = 64) -> Document | Problem:
    """Hash a file and count its pages (PDF pages, image frames) or cut it into chunks (text).

    A file that cannot be read, or changes while it is read, comes back as its :class:`Problem`.
    Nothing is looked up in a store.
    """
    try:
        state = file_state(file.path)
        content_hash = file_sha256(file.path)
        doc = Document(file, document_id(content_hash), content_hash, 0, [], state=state)
        if file.kind == "pdf":
            info = pdf_info(file.path)
            doc.total, doc.title = info.pages, info.title
        elif file.kind == "image":
            doc.total = frame_count(file.path)
        else:
            doc.chunks = text_chunks(file.path, tokenizer, chunk_tokens, chunk_overlap)
            doc.total = len(doc.chunks)
    except Exception as exc:  # a decompression bomb, a PyMuPDF error ...: this file's problem, not the run's
        return failure(file.path, exc)
    return changed(doc) or doc


def plan_documents(store: Store, identified: Iterable[Document], report: IngestReport) -> list[Document]:
    """The documents (in the given order) that still miss pages in ``store``, ``missing`` filled in.

    Pages stored from the same path with other content are deleted first (content that an
    earlier file of the run has is kept); the same content at a second path is stored once.
    """
    documents: list[Document] = []
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


def _drop_older_versions(store: Store, doc: Document, keep: set[str]) -> int:
    """Delete pages stored from the same path with other content; returns how many versions.

    Content that another file of this run still has (a copy at another path) is kept.
    """
    source = PageFilter(sources=(str(doc.file.path),))
    older = {r.payload.get(DOCUMENT_ID) for r in store.iter_records(source)} - {doc.document_id} - keep
    for older_id in older:
        store.delete(PageFilter(document_ids=(older_id,), sources=(str(doc.file.path),)))
    return len(older)


def page_count(path: Path) -> int:
    """Pages of a PDF or frames of an image file; :class:`SourceError` when it cannot be read."""
    if path.suffix.lower() == ".pdf":
        return pdf_info(path).pages
    return frame_count(path)


def frame_count(path: Path) -> int:
    """Frames of an image file (1 for most formats, the pages of a multi-page TIFF)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read image: {exc}") from None
