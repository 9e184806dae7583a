"""Document sources: PDFs, image files and text files, turned into pages or chunks."""

from ..errors import SourceError
from .files import EXTENSIONS, Problem, SourceFile, discover, file_sha256
from .pdf import PdfInfo, RenderedPage, page_texts, pdf_info, render_pages
from .text import chunk_spans, read_text

__all__ = [
    "file_sha256",
    "EXTENSIONS",
    "PdfInfo",
    "Problem",
    "RenderedPage",
    "SourceError",
    "SourceFile",
    "chunk_spans",
    "discover",
    "page_texts",
    "pdf_info",
    "read_text",
    "render_pages",
]
