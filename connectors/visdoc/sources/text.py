"""Text and markdown files, cut into overlapping chunks of tokens."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError


def read_text(path: Path) -> str:
    """The file's text (UTF-8, undecodable bytes replaced); empty files raise :class:`SourceError`."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text.strip():
        raise SourceError("empty text file")
    return text


def chunk_spans(offsets: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of windows of ``size`` tokens that overlap by ``overlap`` tokens."""
    if not 0 <= overlap < size:
        raise ValueError("need 0 <= overlap < size")
    spans = []
    start = 0
    while start < len(offsets):
        end = min(start + size, len(offsets))
        spans.append((offsets[start][0], offsets[end - 1][1]))
        if end == len(offsets):
            break
        start = end - overlap
    return spans
