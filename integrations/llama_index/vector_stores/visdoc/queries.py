"""What a LlamaIndex ``VectorStoreQuery`` asks of a visdoc collection: checked, and turned into a filter."""

from __future__ import annotations

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
    from visdoc.store import PageFilter

__all__ = ["SEARCH_OPTIONS", "check_query", "page_filter"]

SEARCH_OPTIONS = ("prefetch", "pooled_prefetch")  # the keyword arguments query() takes (vector_store_kwargs)
# VectorStoreQuery fields that would change the results and that visdoc does not implement
UNSUPPORTED_FIELDS = ("alpha", "mmr_threshold", "sparse_top_k", "hybrid_top_k", "output_fields", "embedding_field")


def check_query(query: VectorStoreQuery, options: dict[str, Any]) -> None:
    """Refuse, naming it, every part of ``query`` (and every keyword argument) the store would otherwise ignore."""
    mode = VectorStoreQueryMode(query.mode)
    if mode != VectorStoreQueryMode.DEFAULT:
        raise ValueError(
            f"VisdocVectorStore does not support vector_store_query_mode={mode.value!r}: the supported mode is "
            "'default' (dense and pooled prefetch, then exact MaxSim rerank); hybrid and MMR are not available yet"
        )
    for name in UNSUPPORTED_FIELDS:
        value = getattr(query, name)
        if value is not None:
            raise ValueError(f"VisdocVectorStore does not implement VectorStoreQuery.{name} (got {value!r})")
    if not query.query_str:
        if query.query_embedding is not None:
            raise ValueError(
                "VisdocVectorStore got a query_embedding without a query string: it embeds the query text "
                "itself (dense + multivector), so it needs query_str; a vector alone (e.g. image-to-image "
                "retrieval) is not supported"
            )
        raise ValueError("VisdocVectorStore embeds queries itself: pass a query string")
    unknown = sorted(set(options) - set(SEARCH_OPTIONS))
    if unknown:
        raise TypeError(f"VisdocVectorStore.query does not take {unknown}; its options are {list(SEARCH_OPTIONS)}")


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
