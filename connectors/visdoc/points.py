"""What a stored point is: its payload keys and kinds, its id, its page metadata, and how points are
built from an :class:`~visdoc.encoder.EncodeResult` and where each item came from.

This module is the one owner of the payload schema: every other module names payload keys and
kinds through the constants here, never as string literals (``tests/test_architecture.py`` checks).

One point is one page of a document (``page_image``: a rendered PDF page or an image frame) or one
chunk of a text file (``text_chunk``). Points ingested from files carry the ``SOURCE_KEYS`` below;
points added through LangChain or LlamaIndex carry their external id (``doc_id``), ``text`` and
the framework's ``metadata`` as given. Ids are deterministic (UUID5), so writing the same content
again replaces points instead of adding them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .encoder.contract import EncodeResult

# -- kinds ----------------------------------------------------------------------------------------

Kind = Literal["page_image", "text_chunk"]
PAGE_IMAGE: Kind = "page_image"
TEXT_CHUNK: Kind = "text_chunk"
KINDS: tuple[Kind, ...] = (PAGE_IMAGE, TEXT_CHUNK)

# -- payload keys ---------------------------------------------------------------------------------

KIND = "kind"
TEXT = "text"  # the page's text layer or the chunk's text
METADATA = "metadata"  # what a framework document's metadata is
DOC_ID = "doc_id"  # the external id of a point added through a framework
REF_DOC_ID = "ref_doc_id"  # LlamaIndex: the document a node belongs to
NODE = "node"  # LlamaIndex: the node as it serialises itself (text and image left out)
DOCUMENT_ID = "document_id"
CONTENT_HASH = "content_hash"
SOURCE = "source"
FILE_NAME = "file_name"
TITLE = "title"
PAGE = "page"  # 0-based
PAGE_LABEL = "page_label"
TOTAL_PAGES = "total_pages"
MODEL = "model"
TASK = "task"
DIM = "dim"
CREATED_AT = "created_at"
IMAGE_GRID = "image_grid"  # where a page image's patch tokens are in its multivector (added by the store)
IMAGE_PATH = "image_path"  # metadata: the page reference (``file.pdf#page=N`` or an image path)

INDEXED_FIELDS = {DOCUMENT_ID: "keyword", SOURCE: "keyword", PAGE: "integer"}

# -- ids ------------------------------------------------------------------------------------------

DOCUMENT_ID_CHARS = 32  # hex characters of the content's SHA-256 that name a document
DOCUMENT_ID_PATTERN = re.compile(f"[0-9a-f]{{{DOCUMENT_ID_CHARS}}}")
_PAGE_NAMESPACE = uuid.UUID("5b0f1c3e-7a43-4c1e-9d2a-6c1b2f0e8a11")
_EXTERNAL_NAMESPACE = uuid.UUID("0c6f1b1e-3f57-4a8e-9a55-2d7f5b0b7c3d")


def document_id(content_hash: str) -> str:
    """A document's id: the first :data:`DOCUMENT_ID_CHARS` hex characters of its SHA-256."""
    return content_hash[:DOCUMENT_ID_CHARS]


def point_id(document: str, page: int) -> str:
    """Deterministic point id of a page: re-ingesting the same content rewrites the same points."""
    return str(uuid.uuid5(_PAGE_NAMESPACE, f"{document}:{page}"))


def point_id_for(external_id: str) -> str:
    """The point id of a document named by a framework (any string maps to one UUID)."""
    return str(uuid.uuid5(_EXTERNAL_NAMESPACE, str(external_id)))


# -- page references and metadata -----------------------------------------------------------------


def image_reference(source: str | Path, page: int, total_pages: int = 1) -> str:
    """``path`` for a single image, ``path#page=N`` (1-based) for a page of a PDF or a TIFF."""
    source = str(source)
    return f"{source}#page={page + 1}" if source.lower().endswith(".pdf") or total_pages > 1 else source


def page_metadata(
    source: str, page: int, total_pages: int, label: str, *, title: str = "", document: str | None = None,
    image: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """What frameworks show as a page's metadata (LangChain's PDF loader conventions): ``source``,
    ``page`` (0-based), ``total_pages``, ``page_label``, ``image_path`` for page images, ``title``
    when there is one and ``document_id`` for ingested files."""
    metadata: dict[str, Any] = {SOURCE: source, PAGE: page, TOTAL_PAGES: total_pages, PAGE_LABEL: label}
    if image:
        metadata[IMAGE_PATH] = image_reference(source, page, total_pages)
    if title:
        metadata[TITLE] = title
    if document is not None:
        metadata[DOCUMENT_ID] = document
    return metadata


def page_reference(payload: Mapping[str, Any]) -> str | None:
    """The page reference in a stored point's metadata, if it has one."""
    metadata = payload.get(METADATA)
    reference = metadata.get(IMAGE_PATH) if isinstance(metadata, Mapping) else None
    return str(reference) if reference else None


# -- the grid of a page image's tokens ------------------------------------------------------------


@dataclass(frozen=True)
class ImageGrid:
    """``rows x cols`` merged image tokens stored at ``[start, start + rows * cols)`` of a multivector
    of ``tokens`` rows (the ``image_grid`` payload field)."""

    rows: int
    cols: int
    start: int
    tokens: int

    @property
    def end(self) -> int:
        return self.start + self.rows * self.cols

    def to_payload(self) -> dict[str, int]:
        return {"rows": self.rows, "cols": self.cols, "start": self.start, "end": self.end, "tokens": self.tokens}

    @classmethod
    def from_payload(cls, value: Any) -> ImageGrid | None:
        """The grid stored in a payload, or None when it is missing or inconsistent."""
        try:
            rows, cols, start, tokens = (int(value[key]) for key in ("rows", "cols", "start", "tokens"))
            end = int(value.get("end", start + rows * cols))
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        return image_grid((rows, cols), (start, end), tokens)


def image_grid(grid: tuple[int, int] | None, span: tuple[int, int] | None, n_tokens: int) -> ImageGrid | None:
    """The grid of a page's tokens as embedded, when ``span`` holds exactly ``rows * cols`` tokens."""
    if grid is None:
        return None
    rows, cols = int(grid[0]), int(grid[1])
    start, end = span if span is not None else (0, n_tokens)
    if rows <= 0 or cols <= 0 or end - start != rows * cols or not 0 <= start <= end <= n_tokens:
        return None
    return ImageGrid(rows, cols, int(start), int(n_tokens))


# -- points ---------------------------------------------------------------------------------------


@dataclass
class PagePoint:
    """One stored page or text chunk: both vectors and the payload."""

    id: str
    dense: Any  # np.ndarray [dim] float32
    multivector: Any  # np.ndarray [tokens, 128] float32
    payload: dict[str, Any]
    content_span: tuple[int, int] | None = None  # tokens token pooling may merge (default: all)
    grid: tuple[int, int] | None = None  # (rows, cols) of a page image's content tokens


@dataclass(frozen=True)
class PageSource:
    """Where one ingested page or chunk comes from: its file, its place in it and its text."""

    document: str  # the document id
    content_hash: str
    source: str  # the file's absolute path
    page: int  # 0-based page, frame or chunk number
    label: str
    total_pages: int
    kind: Kind
    text: str = ""
    title: str = ""


def source_payload(item: PageSource, *, model: str, task: str, dim: int, created_at: str) -> dict[str, Any]:
    """The payload of an ingested page or chunk."""
    return {
        METADATA: page_metadata(
            item.source,
            item.page,
            item.total_pages,
            item.label,
            title=item.title,
            document=item.document,
            image=item.kind == PAGE_IMAGE,
        ),  # fmt: skip
        DOCUMENT_ID: item.document,
        SOURCE: item.source,
        FILE_NAME: Path(item.source).name,
        TITLE: item.title,
        PAGE: item.page,
        PAGE_LABEL: item.label,
        TOTAL_PAGES: item.total_pages,
        TEXT: item.text,
        CONTENT_HASH: item.content_hash,
        KIND: item.kind,
        MODEL: model,
        TASK: task,
        DIM: dim,
        CREATED_AT: created_at,
    }


def source_points(
    result: EncodeResult, items: Sequence[PageSource], *, model: str, task: str, dim: int
) -> list[PagePoint]:
    """Points of ingested pages and chunks from their encodings (dense and multivector, in order)."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [
        _point(
            result,
            i,
            point_id(item.document, item.page),
            source_payload(item, model=model, task=task, dim=dim, created_at=created),
        )  # fmt: skip
        for i, item in enumerate(items)
    ]


def framework_payload(external_id: str, text: str, metadata: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """Payload of a document added through a framework (its metadata kept as given)."""
    return {DOC_ID: external_id, TEXT: text, METADATA: dict(metadata), KIND: kind}


def framework_points(result: EncodeResult, payloads: Sequence[dict[str, Any]]) -> list[PagePoint]:
    """Points of framework documents from their encodings and :func:`framework_payload` payloads."""
    return [_point(result, i, point_id_for(payload[DOC_ID]), payload) for i, payload in enumerate(payloads)]


def _point(result: EncodeResult, index: int, pid: str, payload: dict[str, Any]) -> PagePoint:
    if result.dense is None or result.multivector is None:
        raise ValueError("a point needs both the dense vector and the multivector: encode with multivector=True")
    item = result.item(index)
    return PagePoint(pid, item.dense, item.multivector, payload, item.content_span, item.grid)


def unpack(point: Any) -> tuple[str, str, dict[str, Any]]:
    """(external id, text, metadata) of a stored point (a ``Hit`` or ``Record``), without visdoc's
    internal keys."""
    payload = point.payload
    return str(payload.get(DOC_ID, point.id)), str(payload.get(TEXT, "")), dict(payload.get(METADATA, {}))


def metadata_filter(conditions: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Equality conditions on metadata keys (a list value means any of them), as store fields."""
    return tuple((f"{METADATA}.{key}", value) for key, value in (conditions or {}).items())


def kind_of(payload: Mapping[str, Any]) -> str:
    """A stored point's kind (points written before kinds existed are page images)."""
    return str(payload.get(KIND, PAGE_IMAGE))


def summary(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that describe an ingested page to a person (the search page, the CLI)."""
    page = int(payload.get(PAGE, 0) or 0)
    return {
        DOCUMENT_ID: str(payload.get(DOCUMENT_ID, "")),
        FILE_NAME: str(payload.get(FILE_NAME, "")),
        TITLE: payload.get(TITLE, ""),
        SOURCE: payload.get(SOURCE, ""),
        PAGE: page,
        PAGE_LABEL: str(payload.get(PAGE_LABEL, page + 1)),
        TOTAL_PAGES: payload.get(TOTAL_PAGES, 0),
        KIND: kind_of(payload),
    }
