"""PDF pages through PyMuPDF: open with clear errors, render at the model's resolution, extract text.

PyMuPDF is not thread-safe, so rendering runs in worker processes (see :mod:`visdoc.ingest`);
each worker keeps its most recent document open between tasks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ..points import page_metadata
from ..preprocess import smart_resize
from .files import explain


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    title: str


@dataclass
class RenderedPage:
    """A page rendered to RGB pixels, with its text layer and label."""

    page: int
    width: int
    height: int
    rgb: bytes
    text: str
    label: str
    error: str | None = None

    def image(self) -> Any:
        from PIL import Image

        return Image.frombuffer("RGB", (self.width, self.height), self.rgb, "raw", "RGB", 0, 1)


def pdf_info(path: str | Path) -> PdfInfo:
    """Page count and title; corrupt, encrypted and empty PDFs raise :class:`SourceError`."""
    with _open(str(path)) as doc:
        return PdfInfo(pages=doc.page_count, title=(doc.metadata or {}).get("title") or "")


def render_pages(path: str, pages: list[int], budget: tuple[int, int, int]) -> list[RenderedPage]:
    """Render pages so their pixel count fits the model's budget ``(factor, min_pixels, max_pixels)``.

    The page is rendered straight at the size the model will keep (a multiple of ``factor``
    within the budget), so nothing is rendered only to be downsampled again. A page that fails
    comes back with ``error`` set instead of pixels.
    """
    stat = Path(path).stat()
    doc = _cached(path, stat.st_mtime_ns, stat.st_size)  # a rewritten file is opened afresh
    out = []
    for number in pages:
        try:
            out.append(_render(doc, number, budget))
        except Exception as exc:  # a broken page must not lose its neighbours
            error = explain(exc, path, otherwise="the page could not be rendered")
            out.append(RenderedPage(number, 0, 0, b"", "", str(number + 1), error))
    return out


def _render(doc: Any, number: int, budget: tuple[int, int, int]) -> RenderedPage:
    import pymupdf

    factor, min_pixels, max_pixels = budget
    page = doc.load_page(number)
    width_pt, height_pt = page.rect.width, page.rect.height
    zoom = math.sqrt(max_pixels / (width_pt * height_pt))
    height, width = smart_resize(round(height_pt * zoom), round(width_pt * zoom), factor, min_pixels, max_pixels)
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(width / width_pt, height / height_pt), alpha=False)
    if pixmap.n != 3:
        pixmap = pymupdf.Pixmap(pymupdf.csRGB, pixmap)
    label = page.get_label() or str(number + 1)
    return RenderedPage(number, pixmap.width, pixmap.height, bytes(pixmap.samples), page.get_text("text"), label)


@lru_cache(maxsize=1)
def _cached(path: str, mtime_ns: int, size: int) -> Any:
    return _open(path)


def _open(path: str) -> Any:
    import pymupdf

    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:
        raise SourceError(f"cannot open PDF: {exc}") from None
    if doc.needs_pass:
        doc.close()
        raise SourceError("PDF is encrypted (password required)")
    if doc.page_count == 0:
        doc.close()
        raise SourceError("PDF has no pages")
    return doc


def page_texts(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(text, metadata) per page, lazily, with the metadata frameworks expect of a PDF page:
    ``source``, ``page`` (0-based), ``total_pages``, ``page_label``, ``image_path``
    (``file.pdf#page=N``) and ``title`` when the PDF has one."""
    source = str(path)
    with _open(source) as doc:
        title = (doc.metadata or {}).get("title") or ""
        for number in range(doc.page_count):
            page = doc.load_page(number)
            label = page.get_label() or str(number + 1)
            metadata = page_metadata(source, number, doc.page_count, label, title=title)
            yield page.get_text("text"), metadata
