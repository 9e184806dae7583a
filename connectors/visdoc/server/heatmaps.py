"""Where a query matched a stored page: the heatmap JSON, from the page's token grid (stored, or
derived from its image for pages stored before grids were recorded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..points import IMAGE_GRID, PAGE_IMAGE, ImageGrid, image_grid, kind_of
from .pages import PageImages
from .queries import Queries
from .stores import Stores
from .validation import UIError, check_point_id

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..store import Record, Store


class Heatmaps:
    """Per-patch similarity of a query's tokens on a stored page (see :mod:`visdoc.heatmap`)."""

    def __init__(self, model: Encoder, stores: Stores, queries: Queries, pages: PageImages) -> None:
        self.model = model
        self.stores = stores
        self.queries = queries
        self.pages = pages

    def heatmap(self, name: str, point_id: str, query: str) -> dict[str, Any]:
        """``rows``, ``cols``, the query's ``tokens``, the ``overall`` map and one map ``per_token``."""
        import numpy as np

        from ..heatmap import patch_heatmap

        point_id = check_point_id(point_id)
        store = self.stores.open(name)
        records = store.retrieve([point_id], with_vectors=True)
        if not records:
            raise UIError(404, "no such page")
        record = records[0]
        if kind_of(record.payload) != PAGE_IMAGE or record.multivector is None:
            raise UIError(409, "this result is a text chunk: it has no page image")
        grid = ImageGrid.from_payload(record.payload.get(IMAGE_GRID)) or self.derived_grid(store, record)
        if grid is None:
            raise UIError(409, "the page's image token grid is unknown (stored before grids were recorded, "
                               "or token pooling merged its patches)")  # fmt: skip
        vectors, labels = self.queries.vectors(store, query)
        try:
            heat = patch_heatmap(vectors.multivector, record.multivector, grid)
        except ValueError as exc:
            raise UIError(409, str(exc)) from None
        flat = heat.per_token.reshape(len(heat.per_token), -1)
        return {
            "rows": grid.rows,
            "cols": grid.cols,
            "tokens": labels,
            "overall": np.round(heat.overall.reshape(-1), 4).tolist(),
            "per_token": np.round(flat, 4).tolist(),
        }

    def derived_grid(self, store: Store, record: Record) -> ImageGrid | None:
        """The grid of a page stored without one: from its image at the model's pixel budget
        (None when token pooling merged the patches or the image cannot be read)."""
        from ..preprocess import ImagePreprocessor

        if store.spec.token_pool_factor > 1:
            return None
        pixels = self.model.pixels
        try:
            image = self.pages.render(record.payload, None)
            grid = ImagePreprocessor(pixels).grid(image.width, image.height).merged(pixels.merge_size)
        except (UIError, ValueError, OSError):
            return None
        n = len(record.multivector)
        return image_grid(grid, self.model.tokenizer.content_span(PAGE_IMAGE, n), n)
