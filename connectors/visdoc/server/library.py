"""What the search page reads: collections, their documents, search hits, page images and files.

:class:`Library` composes the parts, one job each: :mod:`.stores` (open collections),
:mod:`.listing` (documents), :mod:`.queries` and :mod:`.results` (search), :mod:`.heatmaps`,
:mod:`.pages` (page images) and :mod:`.files` (source files). Everything a client asks for is
looked up by collection name and point or document id (:mod:`.validation`); file paths only ever
come from the stored payload, and a source file is served (or rendered) only while its content
still has the hash it was ingested with.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import SourceFiles
from .heatmaps import Heatmaps
from .listing import DocumentListing
from .pages import PageImages
from .queries import Queries
from .results import Results
from .stores import Stores
from .validation import UIError

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..store import QueryVectors, Store
    from .settings import UISettings


class Library:
    """The collections of one store location, opened on first use and kept open, and what the page
    reads from them."""

    def __init__(self, model: Encoder, settings: UISettings) -> None:
        self.model = model
        self.settings = settings
        self.work_dir = settings.resolved_work_dir()
        self.stores = Stores(model, settings)
        self.listing = DocumentListing(self.stores)
        self.queries = Queries(model)
        self.results = Results(self.stores, self.queries, settings)
        self.files = SourceFiles(self.stores)
        self.pages = PageImages(model, self.stores, self.files, self.work_dir)
        self.heatmaps = Heatmaps(model, self.stores, self.queries, self.pages)

    def preload(self) -> None:
        """Open the first collection now rather than on the first request (if it exists)."""
        try:
            self.store(self.settings.collection)
        except UIError:
            pass  # not created yet (or locked): the page says so when asked

    def collections(self) -> list[dict[str, Any]]:
        """Every collection at the store location (the default one even before it exists)."""
        return self.stores.collections()

    def store(self, name: str, *, create: bool = False) -> Store:
        """The open collection ``name`` (created for this model when ``create``)."""
        return self.stores.open(name, create=create)

    def invalidate(self, name: str) -> None:
        """Forget cached listings of ``name`` (after an ingestion)."""
        self.listing.invalidate(name)

    def documents(self, name: str) -> dict[str, Any]:
        """The documents of ``name`` and whether the listing is truncated (see :mod:`.listing`)."""
        return self.listing.documents(name)

    def query_vectors(self, name: str, query: str) -> tuple[QueryVectors, list[str]]:
        """The query's embedding for collection ``name`` and its token labels (cached)."""
        return self.queries.vectors(self.store(name), query)

    def search(self, name: str, query: str, *, k: int = 12, documents: tuple[str, ...] = (),
               mode: str = "rerank") -> list[dict[str, Any]]:  # fmt: skip
        """The page's results for ``query`` (see :mod:`.results`)."""
        return self.results.search(name, query, k=k, documents=documents, mode=mode)

    def heatmap(self, name: str, point_id: str, query: str) -> dict[str, Any]:
        """Per-patch similarity of the query's tokens on page ``point_id`` (see :mod:`.heatmaps`)."""
        return self.heatmaps.heatmap(name, point_id, query)

    def page_image(self, name: str, point_id: str, size: str) -> Path:
        """A cached WebP of page ``point_id`` (``thumb`` or ``page``), rendered on first use."""
        return self.pages.page_image(name, point_id, size)

    def source_file(self, name: str, document_id: str, file_name: str) -> tuple[Path, str]:
        """The stored source file of a document and its media type."""
        return self.files.source_file(name, document_id, file_name)

    def close(self) -> None:
        """Close the open stores and the Qdrant client; :meth:`store` refuses (503) from now on."""
        self.stores.close()
