"""qdrant-edge's terms for visdoc's: a collection's vectors (:func:`~visdoc.store.schema.vector_layout`),
a :class:`~visdoc.store.base.SearchPlan` as one ``QueryRequest``, filters and sparse vectors. The
embedded backend, :mod:`visdoc.store.edge`, runs them."""

from __future__ import annotations

from typing import Any

from .base import SearchPlan, SparseTerms
from .schema import DENSE, LEXICAL, MULTI, SCALAR_QUANTILE, CollectionSpec, PageFilter, VectorLayout, vector_layout


def edge_config(qe: Any, spec: CollectionSpec) -> Any:
    """The engine's configuration of a collection created with ``spec``."""
    layout = vector_layout(spec)
    sparse_vectors = {name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for name, v in layout.items()
                      if v.sparse}  # fmt: skip
    vectors = {name: vector_params(qe, v) for name, v in layout.items() if not v.sparse}
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse_vectors or None)


def vector_params(qe: Any, vector: VectorLayout) -> Any:
    """qdrant-edge's parameters of a named vector (settings left open get Qdrant's defaults)."""
    datatypes = {"float32": qe.VectorStorageDatatype.Float32, "float16": qe.VectorStorageDatatype.Float16}
    quantization = {
        "none": None,
        "scalar": qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=SCALAR_QUANTILE, always_ram=True),
        "binary": qe.BinaryQuantizationConfig(always_ram=True),
    }[vector.quantization]
    hnsw = qe.HnswIndexConfig(  # qdrant-edge needs every value: Qdrant's defaults where the layout has none
        m=vector.hnsw_m,
        ef_construct=100 if vector.hnsw_ef_construct is None else vector.hnsw_ef_construct,
        full_scan_threshold=10_000 if vector.full_scan_threshold is None else vector.full_scan_threshold,
    )
    return qe.EdgeVectorParams(
        size=vector.size,
        distance={"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot}[vector.distance],
        on_disk=vector.on_disk,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if vector.multivector else None,
        datatype=datatypes[vector.datatype] if vector.datatype else None,
        quantization_config=quantization,
        hnsw_config=hnsw,
    )


def sparse(qe: Any, terms: SparseTerms) -> Any:
    return qe.SparseVector(list(terms[0]), list(terms[1]))


def point_vectors(qe: Any, vectors: dict[str, Any]) -> dict[str, Any]:
    """Stored vectors (:func:`~visdoc.store.base.stored_vectors`) as qdrant-edge takes them."""
    if LEXICAL in vectors:
        vectors = {**vectors, LEXICAL: sparse(qe, vectors[LEXICAL])}
    return vectors


def edge_filter(qe: Any, where: PageFilter | None) -> Any:
    if where is None or where.is_empty():
        return None
    make = {
        "match": lambda key, value: qe.FieldCondition(key=key, match=qe.MatchValue(value)),
        "any": lambda key, values: qe.FieldCondition(key=key, match=qe.MatchAny(values)),
        "range": lambda key, bounds: qe.FieldCondition(key=key, range=qe.RangeFloat(gte=bounds[0], lte=bounds[1])),
        "ids": lambda _, ids: qe.HasIdCondition(set(ids)),
    }
    return qe.Filter(must=[make[kind](key, value) for kind, key, value in where.conditions()])


def edge_request(qe: Any, plan: SearchPlan, params: Any = None) -> Any:
    """The one request that runs ``plan``; ``params`` (quantization rescoring) applies to it."""
    flt = edge_filter(qe, plan.where)
    first = [
        qe.Prefetch(limit=limit, query=qe.Query.Nearest(plan.vector(using), using=using), filter=flt)
        for using, limit in plan.first_stages.items()
    ]
    multi = plan.multivector  # the multivector has no HNSW graph: scoring it is exact
    prefetches: list[Any] = first
    if plan.mode == "lexical":
        assert plan.lexical is not None
        query = qe.Query.Nearest(sparse(qe, plan.lexical), using=LEXICAL)
    elif plan.mode == "hybrid":
        assert plan.lexical is not None
        lexical = qe.Query.Nearest(sparse(qe, plan.lexical), using=LEXICAL)
        rerank = qe.Query.Nearest(multi, using=MULTI)
        prefetches = [
            qe.Prefetch(limit=plan.lexical_limit, query=lexical, filter=flt),
            qe.Prefetch(limit=plan.rerank_limit, query=rerank, prefetches=first, filter=flt, params=params),
        ]
        fusion = plan.fusion
        if fusion.method == "dbsf":
            query = qe.Fusion.Dbsf()
        else:
            weights = None if fusion.weights == (1.0, 1.0) else [float(w) for w in fusion.weights]
            query = qe.Fusion.Rrf(fusion.k, weights)
        params = None
    elif plan.mode == "mmr":  # MaxSim picks the candidates; MMR orders them by the dense vector (cheap, length-free)
        rerank = qe.Query.Nearest(multi, using=MULTI)
        prefetches = [qe.Prefetch(limit=plan.mmr_candidates, query=rerank, prefetches=first, filter=flt, params=params)]
        query = qe.Mmr(plan.dense, plan.mmr_lambda, plan.mmr_candidates, using=DENSE)
        params = None
    else:
        query = qe.Query.Nearest(plan.vector(plan.final), using=plan.final)
    return qe.QueryRequest(limit=plan.k, query=query, prefetches=prefetches or None, filter=flt, with_payload=True,
                           params=params)  # fmt: skip
