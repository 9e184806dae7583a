"""Query a visdoc collection with text or an image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .images import ImageInput
from .store import Fusion, Hit, PageFilter, QueryVectors, SearchMode, Store
from .store.schema import DEFAULT_LEXICAL_PREFETCH, DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH

if TYPE_CHECKING:
    from .encoder import Encoder


def embed_query(model: Encoder, query: str | ImageInput, store: Store, *, image: bool = False) -> QueryVectors:
    """Dense and multivector query embedding from one forward pass, sized for the collection, with
    the query's text for the lexical stage (an image query has none)."""
    spec = store.spec
    if image:
        result = model.encode_images([query], task=spec.task, dim=spec.dim, multivector=True)
    else:
        if not isinstance(query, str):
            raise TypeError("a text query must be a str (pass image=True for an image query)")
        result = model.encode_texts([query], task=spec.task, prompt_name="query", dim=spec.dim, multivector=True)
    return QueryVectors(result.dense[0], result.multivector[0], None if image else query)  # type: ignore[arg-type]


def search(
    model: Encoder,
    store: Store,
    query: str | ImageInput,
    *,
    k: int = 10,
    mode: SearchMode = "rerank",
    prefetch: int = DEFAULT_PREFETCH,
    pooled_prefetch: int | None = DEFAULT_POOLED_PREFETCH,
    where: PageFilter | None = None,
    image: bool = False,
    lexical_prefetch: int = DEFAULT_LEXICAL_PREFETCH,
    fusion: Fusion = Fusion(),  # noqa: B008 - frozen
    mmr_lambda: float = 0.5,
    mmr_candidates: int | None = None,
) -> list[Hit]:
    """Top ``k`` pages for a text (or, with ``image=True``, an image) query; the modes and their
    settings are :meth:`visdoc.store.Store.search`'s."""
    vectors = embed_query(model, query, store, image=image)
    return store.search(vectors, k=k, mode=mode, prefetch=prefetch, pooled_prefetch=pooled_prefetch,
                        lexical_prefetch=lexical_prefetch, where=where, fusion=fusion, mmr_lambda=mmr_lambda,
                        mmr_candidates=mmr_candidates)  # fmt: skip
