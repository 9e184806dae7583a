"""The store interface every backend implements, so the CLI and integrations need not care."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import VisdocError
from .schema import DEFAULT_PREFETCH, CollectionSpec, Hit, PageFilter, PagePoint, Record

SearchMode = Literal["rerank", "dense", "multivector"]
SEARCH_MODES: tuple[SearchMode, ...] = ("rerank", "dense", "multivector")


class StoreError(VisdocError):
    """A collection cannot be opened, created or used as asked."""


class CollectionNotFoundError(StoreError):
    """The collection does not exist (and no spec was given to create it)."""


class StoreLockedError(StoreError):
    """An embedded collection is already open in another process."""


@dataclass
class QueryVectors:
    """A query's embeddings: dense ``[dim]`` and multivector ``[tokens, 128]`` (float32)."""

    dense: object
    multivector: object


class Store(abc.ABC):
    """A visdoc collection in Qdrant: pages with a dense and a multivector, plus payload."""

    spec: CollectionSpec
    name: str

    @abc.abstractmethod
    def upsert(self, points: Sequence[PagePoint]) -> None:
        """Insert or replace points; returns once they are durable and searchable."""

    @abc.abstractmethod
    def delete(self, where: PageFilter) -> None:
        """Delete every point matching the filter (which must not be empty)."""

    @abc.abstractmethod
    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Points by id, in the order given; unknown ids are left out."""

    @abc.abstractmethod
    def count(self, where: PageFilter | None = None) -> int:
        """Number of points matching the filter (all points without one)."""

    @abc.abstractmethod
    def scroll(
        self, where: PageFilter | None = None, *, limit: int = 100, offset: str | None = None
    ) -> tuple[list[Record], str | None]:
        """One page of points (payload only) and the offset of the next page (None at the end)."""

    @abc.abstractmethod
    def search(
        self,
        query: QueryVectors,
        *,
        k: int = 10,
        mode: SearchMode = "rerank",
        prefetch: int = DEFAULT_PREFETCH,
        where: PageFilter | None = None,
    ) -> list[Hit]:
        """Top ``k`` pages: dense prefetch then MaxSim rerank, or one stage only."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the collection."""

    def delete_document(self, document_id: str) -> int:
        """Delete all pages of a document; returns how many there were."""
        where = PageFilter(document_ids=(document_id,))
        n = self.count(where)
        if n:
            self.delete(where)
        return n

    def iter_records(self, where: PageFilter | None = None, *, batch: int = 256) -> Iterator[Record]:
        """Every point matching the filter (payload only), page by page."""
        offset: str | None = None
        while True:
            records, offset = self.scroll(where, limit=batch, offset=offset)
            yield from records
            if offset is None:
                return

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_mode(mode: str) -> SearchMode:
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {list(SEARCH_MODES)}")
    return mode  # type: ignore[return-value]
