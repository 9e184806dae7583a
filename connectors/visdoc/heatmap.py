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

from .points import ImageGrid

__all__ = ["Heatmap", "patch_heatmap"]


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
