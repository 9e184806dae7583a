"""What a LlamaIndex ``VectorStoreQuery`` asks of a visdoc collection: checked, and turned into search
arguments and a filter."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from visdoc.points import REF_DOC_ID, metadata_filter, point_id_for

if TYPE_CHECKING:
    from visdoc.store import Fusion, PageFilter

__all__ = ["MODES", "SEARCH_OPTIONS", "check_query", "page_filter", "search_options"]

# LlamaIndex's query modes visdoc implements, as visdoc search modes
MODES = {
    VectorStoreQueryMode.DEFAULT: "rerank",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.MMR: "mmr",
    VectorStoreQueryMode.TEXT_SEARCH: "lexical",
    VectorStoreQueryMode.SPARSE: "lexical",
}
MODES_SAID = (
    "'default' (dense and pooled prefetch, then exact MaxSim rerank), 'hybrid' (BM25 of the stored text fused with "
    "it: alpha, sparse_top_k, hybrid_top_k), 'mmr' (diverse pages among the MaxSim candidates: mmr_threshold), "
    "'text_search' and 'sparse' (BM25 of the stored text: sparse_top_k)"
)
SEARCH_OPTIONS = ("prefetch", "pooled_prefetch")  # the keyword arguments query() takes in every mode
MODE_OPTIONS = {  # and in one mode (vector_store_kwargs)
    "rerank": (),
    "hybrid": ("fusion",),
    "mmr": ("mmr_threshold", "mmr_prefetch_k", "mmr_prefetch_factor"),
    "lexical": (),
}
# VectorStoreQuery fields that change the results: those each mode reads (the others must be unset)
QUERY_FIELDS = ("alpha", "mmr_threshold", "sparse_top_k", "hybrid_top_k", "output_fields", "embedding_field")
MODE_FIELDS = {
    "rerank": (),
    "hybrid": ("alpha", "sparse_top_k", "hybrid_top_k"),
    "mmr": ("mmr_threshold",),
    "lexical": ("sparse_top_k",),
}
FIELD_MODES = {"alpha": "'hybrid'", "hybrid_top_k": "'hybrid'", "sparse_top_k": "'hybrid', 'text_search' and 'sparse'",
               "mmr_threshold": "'mmr'"}  # fmt: skip
UNSUPPORTED_FIELDS = tuple(f for f in QUERY_FIELDS if f not in FIELD_MODES)  # in no mode


def check_query(query: VectorStoreQuery, options: dict[str, Any]) -> str:
    """Refuse, naming it, every part of ``query`` (and every keyword argument) the store would otherwise
    ignore; returns the visdoc search mode."""
    mode = VectorStoreQueryMode(query.mode)
    if mode not in MODES:
        raise ValueError(
            f"VisdocVectorStore does not support vector_store_query_mode={mode.value!r}: its modes are {MODES_SAID}"
        )
    store_mode = MODES[mode]
    for name in QUERY_FIELDS:
        value = getattr(query, name)
        if value is not None and name not in MODE_FIELDS[store_mode]:
            where = f"it applies in mode {FIELD_MODES[name]}" if name in FIELD_MODES else "visdoc does not implement it"
            raise ValueError(f"VisdocVectorStore does not implement VectorStoreQuery.{name} in mode {mode.value!r} "
                             f"(got {value!r}): {where}")  # fmt: skip
    if not query.query_str:
        if query.query_embedding is not None:
            raise ValueError(
                "VisdocVectorStore got a query_embedding without a query string: it embeds the query text "
                "itself (dense + multivector), so it needs query_str; a vector alone (e.g. image-to-image "
                "retrieval) is not supported"
            )
        raise ValueError("VisdocVectorStore embeds queries itself: pass a query string")
    allowed = (*SEARCH_OPTIONS, *MODE_OPTIONS[store_mode])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"VisdocVectorStore.query does not take {unknown} in mode {mode.value!r}; its options there "
                        f"are {list(allowed)}")  # fmt: skip
    return store_mode


def search_options(query: VectorStoreQuery, options: dict[str, Any]) -> dict[str, Any]:
    """``Store.search`` arguments for ``query`` (checked by :func:`check_query`): ``mode`` and ``k``, and

    - ``hybrid``: ``k`` = ``hybrid_top_k`` or ``similarity_top_k``; ``sparse_top_k`` BM25 candidates
      (``lexical_prefetch``); ``alpha`` (1: vectors only, 0: text only, default 0.5) weighs the two
      lists, as fusion weights ``(1 - alpha, alpha)`` scaled so the larger is 1 (0.5 is the store's
      default, equal weights); ``fusion`` (a :class:`visdoc.store.Fusion`) sets the method and ``k``.
    - ``mmr``: ``mmr_threshold`` (the query field or keyword, default 0.5) is LlamaIndex's MMR weight
      of relevance against diversity (1: relevance only), visdoc's ``mmr_lambda``;
      ``mmr_prefetch_k`` (or ``mmr_prefetch_factor`` x ``similarity_top_k``) candidates.
    - ``lexical`` (``text_search``, ``sparse``): ``k`` = ``sparse_top_k`` or ``similarity_top_k``.
    """
    mode = check_query(query, options)
    k = query.similarity_top_k
    plan: dict[str, Any] = {"mode": mode, "k": k}
    if mode == "lexical":
        plan["k"] = query.sparse_top_k or k
    elif mode == "hybrid":
        plan["k"] = query.hybrid_top_k or k
        if query.sparse_top_k is not None:
            plan["lexical_prefetch"] = _count("sparse_top_k", query.sparse_top_k, minimum=0)
        plan["fusion"] = fusion(query.alpha, options.get("fusion"))
    elif mode == "mmr":
        plan["mmr_lambda"] = _mmr_threshold(query.mmr_threshold, options.get("mmr_threshold"))
        prefetch_k, factor = options.get("mmr_prefetch_k"), options.get("mmr_prefetch_factor")
        if prefetch_k is not None and factor is not None:
            raise ValueError("give mmr_prefetch_k or mmr_prefetch_factor, not both")
        if prefetch_k is not None:
            plan["mmr_candidates"] = _count("mmr_prefetch_k", prefetch_k)
        elif factor is not None:
            if not isinstance(factor, int | float) or factor <= 0:
                raise ValueError(f"mmr_prefetch_factor must be a number above 0, not {factor!r}")
            plan["mmr_candidates"] = max(k, math.ceil(factor * k))
    return plan


def alpha_weights(alpha: float) -> tuple[float, float]:
    """Fusion weights ``(lexical, vectors)`` of LlamaIndex's ``alpha`` (1: dense only, 0: sparse only):
    ``(1 - alpha, alpha)`` scaled so the larger is 1. Qdrant's weighted RRF is not scale-free (a
    weight divides the rank), so ``alpha=0.5`` gives the store's measured default, ``(1, 1)``."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 (text only) and 1 (vectors only), not {alpha!r}")
    top = max(1 - alpha, alpha)
    return ((1 - alpha) / top, alpha / top)


def fusion(alpha: float | None, given: Any = None) -> Fusion:
    """The hybrid fusion: ``given``'s method and ``k`` (default RRF, k=60) with ``alpha``'s weights;
    ``given``'s own weights when it sets some and ``alpha`` is None."""
    from visdoc.store import Fusion

    default = Fusion()
    if given is None:
        given = default
    elif not isinstance(given, Fusion):
        raise TypeError(f"fusion must be a visdoc.store.Fusion, not {given!r}")
    if alpha is None and given.weights != default.weights:
        return given
    if alpha is not None and given.weights != default.weights:
        raise ValueError("give VectorStoreQuery.alpha or the fusion's weights, not both")
    if alpha is not None and given.method == "dbsf":
        raise ValueError("alpha weighs the two lists of RRF fusion; visdoc's DBSF fusion takes no weights")
    return dataclasses.replace(given, weights=alpha_weights(0.5 if alpha is None else alpha))


def _mmr_threshold(field: float | None, option: float | None) -> float:
    if field is not None and option is not None and field != option:
        raise ValueError(f"mmr_threshold given twice, {field!r} (VectorStoreQuery) and {option!r} (query keyword)")
    value = field if field is not None else option
    if value is None:
        return 0.5
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"mmr_threshold must be between 0 (diversity only) and 1 (relevance only), not {value!r}")
    return float(value)


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return value


def page_filter(
    filters: MetadataFilters | None, doc_ids: list[str] | None = None, ids: list[str] | None = None
) -> PageFilter:
    """The store filter of metadata ``filters`` (EQ/IN, AND), ``doc_ids`` (ref_doc_ids) and node ``ids``;
    an empty or missing list does not restrict."""
    from visdoc.store import PageFilter

    conditions: dict[str, Any] = {}
    for item in filters.filters if filters is not None else []:
        if isinstance(item, MetadataFilters) or filters.condition not in (None, FilterCondition.AND):
            raise ValueError("VisdocVectorStore supports metadata filters combined with AND, not nested or OR")
        if item.operator not in (FilterOperator.EQ, FilterOperator.IN):
            raise ValueError(f"VisdocVectorStore supports EQ and IN filters, not {item.operator.value}")
        conditions[item.key] = list(item.value) if item.operator == FilterOperator.IN else item.value
    fields = metadata_filter(conditions)
    if doc_ids:
        fields += ((REF_DOC_ID, list(doc_ids)),)
    return PageFilter(fields=fields, ids=tuple(point_id_for(i) for i in ids or ()))
