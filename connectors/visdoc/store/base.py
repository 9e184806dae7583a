"""The store interface every backend implements, so the CLI and integrations need not care."""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import lexical
from ..errors import VisdocError
from ..points import IMAGE_GRID, TEXT, PagePoint, image_grid
from .schema import (
    DEFAULT_LEXICAL_PREFETCH,
    DEFAULT_POOLED_PREFETCH,
    DEFAULT_PREFETCH,
    DENSE,
    LEXICAL,
    MULTI,
    POOLED,
    ROWCOL,
    CollectionSpec,
    Fusion,
    Hit,
    PageFilter,
    Record,
    SparseTerms,
    StoredPoint,
    pooled_prefetch_for,
)

SearchMode = Literal["rerank", "dense", "multivector", "lexical", "hybrid", "mmr"]
SEARCH_MODES: tuple[SearchMode, ...] = ("rerank", "dense", "multivector", "lexical", "hybrid", "mmr")
LEXICAL_BATCH = 256  # points whose lexical vectors one call writes (add_lexical)
SIZE_TTL = 30.0  # seconds a collection's point count is reused by searches (pooled_prefetch_for)

log = logging.getLogger("visdoc.store")


class StoreError(VisdocError):
    """A collection cannot be opened, created or used as asked."""


class CollectionNotFoundError(StoreError):
    """The collection does not exist (and no spec was given to create it)."""


class StoreLockedError(StoreError):
    """An embedded collection is already open in another process."""


class DiskFullError(StoreError):
    """An embedded collection's filesystem lacks the room a write, an optimize or opening needs;
    what was stored is kept. ``path`` (the data dir), ``needed`` and ``free`` (bytes, ``needed`` 0
    where unknown) say where and how much."""

    def __init__(self, message: str, path: str = "", needed: int = 0, free: int = 0) -> None:
        super().__init__(message)  # args stay (message,): it pickles, attributes included
        self.path = path
        self.needed = needed
        self.free = free


@dataclass
class SearchPlan:
    """A search, ready for a backend: query vectors as lists, first stages and their limits."""

    k: int
    mode: SearchMode
    dense: list[float]
    multivector: list[list[float]]
    where: PageFilter | None = None
    pooled: list[list[float]] | None = None
    first_stages: dict[str, int] = field(default_factory=dict)
    lexical: SparseTerms | None = None  # the query's terms (lexical and hybrid)
    lexical_limit: int = 0  # hybrid: BM25 candidates fused
    rerank_limit: int = 0  # hybrid: MaxSim-reranked candidates fused
    fusion: Fusion = field(default_factory=Fusion)
    mmr_lambda: float = 0.5  # mmr: relevance weight (1: relevance only, 0: diversity only)
    mmr_candidates: int = 0  # mmr: the best candidates by MaxSim that MMR selects from

    def vector(self, name: str) -> list[float] | list[list[float]]:
        """The query vector scored against the stored vector ``name``."""
        vectors = {DENSE: self.dense, MULTI: self.multivector, POOLED: self.pooled, ROWCOL: self.pooled}
        return vectors[name]  # type: ignore[return-value]

    @property
    def final(self) -> str:
        """The vector that scores the returned points (hybrid: the fused scores)."""
        return {"dense": DENSE, "lexical": LEXICAL}.get(self.mode, MULTI)


@dataclass
class QueryVectors:
    """A query's embeddings: dense ``[dim]`` and multivector ``[tokens, 128]`` (float32), and the
    query's ``text`` for the lexical stage (None for an image query)."""

    dense: object
    multivector: object
    text: str | None = None


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
    def delete_ids(self, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""

    @abc.abstractmethod
    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Points by id, in the order given; unknown ids are left out."""

    @abc.abstractmethod
    def count(self, where: PageFilter | None = None) -> int:
        """Number of points matching the filter (all points without one)."""

    def scroll(
        self, where: PageFilter | None = None, *, limit: int = 100, offset: str | None = None
    ) -> tuple[list[Record], str | None]:
        """One page of points (payload only) and the offset of the next page (None at the end)."""
        return self._scroll(where, limit, offset, with_payload=True)

    def scroll_ids(self, where: PageFilter | None = None, *, limit: int = 100,
                   offset: str | None = None) -> tuple[list[str], str | None]:  # fmt: skip
        """One page of point ids (nothing else is read), in id order, and the next page's offset."""
        records, next_offset = self._scroll(where, limit, offset, with_payload=False)
        return [r.id for r in records], next_offset

    @abc.abstractmethod
    def _scroll(self, where: PageFilter | None, limit: int, offset: str | None, *,
                with_payload: bool) -> tuple[list[Record], str | None]:  # fmt: skip
        """One page of points without vectors (payload if ``with_payload``) and the next page's offset."""

    @abc.abstractmethod
    def retrieve_stored(self, ids: Sequence[str]) -> list[StoredPoint]:
        """Points by id with every named vector as stored, in the order given; unknown ids are left out."""

    @abc.abstractmethod
    def upsert_stored(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points read by :meth:`retrieve_stored` (of any backend) as they are:
        no vector is recomputed. The collection's spec must be the one they were read from."""

    def search(
        self,
        query: QueryVectors,
        *,
        k: int = 10,
        mode: SearchMode = "rerank",
        prefetch: int = DEFAULT_PREFETCH,
        pooled_prefetch: int | None = DEFAULT_POOLED_PREFETCH,
        lexical_prefetch: int = DEFAULT_LEXICAL_PREFETCH,
        where: PageFilter | None = None,
        fusion: Fusion = Fusion(),  # noqa: B008 - frozen
        mmr_lambda: float = 0.5,
        mmr_candidates: int | None = None,
    ) -> list[Hit]:
        """Top ``k`` pages. ``where`` filters every stage of every mode.

        ``rerank``: candidates from the dense vector (``prefetch``) and from the pooled token
        centroids (``pooled_prefetch``, when the collection has them; None: 64, or 128 past 20,000
        points, :func:`~visdoc.store.schema.pooled_prefetch_for`), reranked by exact MaxSim on
        the full multivector. ``dense`` and ``multivector`` (exact MaxSim) use one stage.
        ``lexical``: BM25 of ``query.text`` against the pages' text (IDF from the engine);
        refused for a query without text (an image). ``hybrid``: one query fusing (``fusion``)
        the ``lexical_prefetch`` best BM25 pages with the ``max(prefetch, k)`` best of ``rerank``:
        an exact term match ranks high even where the vectors miss it, MaxSim still orders the
        vector side; without query text (or terms) it is ``rerank``. ``mmr``: maximal marginal
        relevance over the ``mmr_candidates`` (default ``max(prefetch, k)``) best of ``rerank``
        (exact MaxSim picks them): each next page maximises ``mmr_lambda * relevance - (1 -
        mmr_lambda) * similarity to the pages already chosen``, both by the dense vector (cheap;
        MaxSim between candidates costs ~40 ms a page); scores are the dense cosine, in MMR's order.

        On a collection without lexical vectors (made before they existed) ``hybrid`` runs as
        ``rerank`` and ``lexical`` finds nothing, each with a warning naming :meth:`add_lexical`.
        """
        import numpy as np

        from ..pooling import pool_query

        check_mode(mode)
        if not 0 <= mmr_lambda <= 1:
            raise ValueError(f"mmr_lambda must be between 0 and 1 (1: relevance only), not {mmr_lambda}")
        if mode in ("lexical", "hybrid"):
            if mode == "lexical" and query.text is None:
                raise ValueError(
                    "lexical search needs the query's text: an image query has none (use hybrid or rerank)"
                )
            if not self.spec.lexical:
                self._warn_no_lexical()
                if mode == "lexical":
                    return []
                mode = "rerank"
        terms = lexical.query_vector(query.text) if mode in ("lexical", "hybrid") and query.text else None
        if mode == "lexical" and not (terms and terms[0]):
            return []  # only stop words or punctuation
        if mode == "hybrid" and not (terms and terms[0] and lexical_prefetch > 0):
            mode = "rerank"  # no lexical stage: an image query, only stop words, or lexical_prefetch 0
        multi = np.asarray(query.multivector, dtype=np.float32)
        plan = SearchPlan(
            k=k,
            mode=mode,
            dense=np.asarray(query.dense, dtype=np.float32).tolist(),
            multivector=multi.tolist(),
            where=where,
            lexical=terms,
            lexical_limit=max(lexical_prefetch, k),
            rerank_limit=max(prefetch, k),
            fusion=fusion,
            mmr_lambda=mmr_lambda,
            mmr_candidates=mmr_candidates or max(prefetch, k),
        )
        if mode in ("rerank", "hybrid", "mmr"):
            if pooled_prefetch is None:
                pooled_prefetch = pooled_prefetch_for(self._size())
            plan.first_stages = first_stages(self.spec, prefetch, pooled_prefetch, k)
            if POOLED in plan.first_stages or ROWCOL in plan.first_stages:  # both are scored with query sums
                plan.pooled = pool_query(multi).tolist()
        return self._search(plan)

    def _size(self) -> int:
        """The collection's point count, counted again at most every :data:`SIZE_TTL` seconds."""
        counted = getattr(self, "_counted", None)
        now = time.monotonic()
        if counted is None or now - counted[0] > SIZE_TTL:
            self._counted = counted = (now, self.count())
        return counted[1]

    def _warn_no_lexical(self) -> None:
        if not getattr(self, "_warned_no_lexical", False):
            self._warned_no_lexical = True
            log.warning("collection %r has no lexical vectors (made before they existed): hybrid search runs as "
                        "rerank and lexical search finds nothing; add them with Store.add_lexical() or "
                        "`visdoc reindex-text --collection %s` (no re-embedding)", self.name, self.name)  # fmt: skip

    def add_lexical(self, show_progress: bool = False) -> int:
        """Give every point a lexical (BM25) vector of its payload text, declaring the vector on a
        collection made before lexical vectors existed; no re-embedding. Run again, it recomputes
        them (after a change of :mod:`visdoc.lexical`'s analysis). Returns the points that got one
        (those with text)."""
        from tqdm.auto import tqdm

        self._declare_lexical()
        written = 0
        with tqdm(total=self.count(), unit="point", desc="lexical", disable=not show_progress) as bar:
            batch: list[tuple[str, SparseTerms]] = []
            for record in self.iter_records(batch=LEXICAL_BATCH):
                bar.update(1)
                terms = lexical.document_vector(str(record.payload.get(TEXT) or ""))
                if terms[0]:
                    batch.append((record.id, terms))
                if len(batch) >= LEXICAL_BATCH:
                    written += self._write_lexical(batch)
                    batch = []
            if batch:
                written += self._write_lexical(batch)
        self._finish_lexical()
        self.spec = dataclasses.replace(self.spec, lexical=True)
        return written

    @abc.abstractmethod
    def _declare_lexical(self) -> None:
        """Declare the lexical sparse vector (IDF) on the collection, unless it is there."""

    @abc.abstractmethod
    def _write_lexical(self, vectors: Sequence[tuple[str, SparseTerms]]) -> int:
        """Set the lexical vector of these points (id, terms); returns how many."""

    @abc.abstractmethod
    def _finish_lexical(self) -> None:
        """Make the written vectors durable and record ``lexical=True`` in the stored spec."""

    @abc.abstractmethod
    def _search(self, plan: SearchPlan) -> list[Hit]:
        """Run a search plan: ``first_stages`` (vector name -> limit) prefetched, then the final query."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the collection."""

    def optimize(self) -> None:  # noqa: B027 - a no-op unless the backend needs it
        """Build indexes after a bulk load (a server does this by itself)."""

    def finish_pending(self) -> None:  # noqa: B027 - a no-op unless the backend needs it
        """Run the optimize that writes since the last completed one still need (an earlier run
        failed or was stopped before it); a no-op when there is none or the backend needs none."""

    def engine_process(self) -> AbstractContextManager[None]:
        """While the block runs, the backend's engine works in a child process, where building and
        storing points does not hold this process's GIL. A no-op unless the engine runs in this
        process (the embedded backend)."""
        return nullcontext()

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


def first_stages(spec: CollectionSpec, prefetch: int, pooled_prefetch: int, k: int) -> dict[str, int]:
    """Candidate counts per first-stage vector for a rerank search."""
    stages = {DENSE: max(prefetch, k)} if prefetch > 0 else {}
    if spec.pool_size > 0 and pooled_prefetch > 0:
        stages[POOLED] = max(pooled_prefetch, k)
    if spec.rowcol and pooled_prefetch > 0:
        stages[ROWCOL] = max(pooled_prefetch, k)
    if not stages:
        raise ValueError("rerank needs a first stage: set prefetch and/or pooled_prefetch above 0")
    return stages


def stored_vectors(point: PagePoint, spec: CollectionSpec) -> dict[str, list]:
    """The named vectors a point is stored with, as plain lists (token pooling applied); the
    lexical one, when the point has text, as :data:`SparseTerms` for the backend to wrap."""
    import numpy as np

    from ..pooling import pool_tokens

    multi = np.asarray(point.multivector, dtype=np.float32)
    vectors = {DENSE: np.asarray(point.dense, dtype=np.float32).tolist()}
    if spec.pool_size:
        vectors[POOLED] = pooled(multi, spec)
    if spec.rowcol and point.grid is not None:
        vectors[ROWCOL] = row_column_means(multi, point.grid, point.content_span).tolist()
    if spec.token_pool_factor > 1:
        multi = pool_tokens(multi, spec.token_pool_factor, point.content_span)
    vectors[MULTI] = multi.tolist()
    if spec.lexical:
        terms = lexical.document_vector(str(point.payload.get(TEXT) or ""))
        if terms[0]:  # a page without text (a scan) has no lexical vector
            vectors[LEXICAL] = terms  # type: ignore[assignment]
    return vectors


def stored_payload(point: PagePoint, spec: CollectionSpec) -> dict[str, Any]:
    """A point's payload as stored: a page image's token grid is added (``image_grid``: rows, cols
    and where its tokens are in the multivector) unless token pooling merges them or it is there."""
    if point.grid is None or spec.token_pool_factor > 1 or IMAGE_GRID in point.payload:
        return point.payload
    grid = image_grid(point.grid, point.content_span, len(point.multivector))
    return point.payload if grid is None else {**point.payload, IMAGE_GRID: grid.to_payload()}


def row_column_means(tokens: Any, grid: tuple[int, int], span: tuple[int, int] | None) -> Any:
    """Unit means of each row and each column of a page's patch tokens (``rows + cols`` vectors)."""
    import numpy as np

    rows, cols = grid
    start = span[0] if span else 0
    patches = np.asarray(tokens, dtype=np.float32)[start : start + rows * cols].reshape(rows, cols, -1)
    means = np.concatenate([patches.mean(axis=1), patches.mean(axis=0)])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def pooled(multivector: object, spec: CollectionSpec) -> list[list[float]]:
    """The pooled first-stage vectors of a page, as plain lists."""
    import numpy as np

    from ..pooling import pool_page

    return pool_page(np.asarray(multivector, dtype=np.float32), spec.pool_size).tolist()
