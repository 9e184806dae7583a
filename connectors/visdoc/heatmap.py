"""Where a query matched a page: similarity of the query's tokens to each image patch.

A page image becomes a grid of merged tokens (one per 28x28 pixels), stored in order, row by
row, inside the page's multivector (``image_grid`` in the payload says where). MaxSim scores a
page as the sum over query tokens of their best page token; the heatmap shows, per patch, the
best similarity any query token reaches there (and, per query token, that token's own map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GRID_FIELD = "image_grid"


@dataclass(frozen=True)
class ImageGrid:
    """``rows x cols`` merged image tokens stored at ``[start, start + rows * cols)`` of a multivector
    of ``tokens`` rows."""

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
        except (TypeError, KeyError, ValueError):
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


@dataclass
class Heatmap:
    """``overall[r, c]``: max over query tokens of the cosine with patch (r, c);
    ``per_token[i, r, c]``: query token i's cosine with patch (r, c)."""

    overall: np.ndarray  # [rows, cols] float32
    per_token: np.ndarray  # [query tokens, rows, cols] float32


def patch_heatmap(query: Any, page: Any, grid: ImageGrid) -> Heatmap:
    """Similarity maps of ``query`` (``[q, d]``) over the image patches of ``page`` (``[n, d]``).

    Rows are compared as stored (visdoc's vectors are unit length, so dot products are cosines).
    Raises ``ValueError`` when the page does not have the grid's token count.
    """
    q = np.asarray(query, dtype=np.float32)
    tokens = np.asarray(page, dtype=np.float32)
    if q.ndim != 2 or tokens.ndim != 2 or q.shape[1] != tokens.shape[1]:
        raise ValueError(f"query {q.shape} and page {tokens.shape} must be [tokens, dim] of one dim")
    if len(tokens) != grid.tokens:
        raise ValueError(f"page has {len(tokens)} tokens; its image grid was recorded for {grid.tokens}")
    patches = tokens[grid.start : grid.end]  # [rows * cols, d], row-major like the vision merger
    per_token = (q @ patches.T).reshape(len(q), grid.rows, grid.cols)
    overall = per_token.max(axis=0) if len(q) else np.zeros((grid.rows, grid.cols), np.float32)
    return Heatmap(overall=overall, per_token=per_token)
