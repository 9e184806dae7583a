"""Document sources: PDFs, image files and text files, turned into pages or chunks."""

from ..errors import SourceError
from .files import CHANGED, EXTENSIONS, FileState, Problem, SourceFile, discover, explain, file_sha256, file_state
from .pdf import PdfInfo, RenderedPage, page_texts, pdf_info, render_pages
from .text import chunk_spans, read_text

__all__ = [
    "CHANGED",
    "EXTENSIONS",
    "FileState",
    "PdfInfo",
    "Problem",
    "RenderedPage",
    "SourceError",
    "SourceFile",
    "chunk_spans",
    "discover",
    "explain",
    "file_sha256",
    "file_state",
    "page_texts",
    "pdf_info",
    "read_text",
    "render_pages",
]
