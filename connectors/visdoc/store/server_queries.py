"""qdrant-client's terms for visdoc's: a collection's vectors (:func:`~visdoc.store.schema.vector_layout`),
a :class:`~visdoc.store.base.SearchPlan` as the keywords of one ``query_points`` call, filters and
sparse vectors. The server backend, :mod:`visdoc.store.server`, runs them."""

from __future__ import annotations

from typing import Any

from .base import SearchPlan, SparseTerms
from .schema import DENSE, LEXICAL, MULTI, SCALAR_QUANTILE, PageFilter, VectorLayout


def sparse(m: Any, terms: SparseTerms) -> Any:
    return m.SparseVector(indices=list(terms[0]), values=list(terms[1]))


def sparse_params(m: Any) -> Any:
    return m.SparseVectorParams(modifier=m.Modifier.IDF)


def point_vectors(m: Any, vectors: dict[str, Any]) -> dict[str, Any]:
    """Stored vectors (:func:`~visdoc.store.base.stored_vectors`) as qdrant-client takes them."""
    if LEXICAL in vectors:
        vectors = {**vectors, LEXICAL: sparse(m, vectors[LEXICAL])}
    return vectors


def vector_params(m: Any, vector: VectorLayout) -> Any:
    """qdrant-client's parameters of a named vector (settings left open get the server's defaults)."""
    datatypes = {"float32": m.Datatype.FLOAT32, "float16": m.Datatype.FLOAT16}
    quantization = {
        "none": None,
        "scalar": m.ScalarQuantization(
            scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=SCALAR_QUANTILE, always_ram=True)
        ),
        "binary": m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True)),
    }[vector.quantization]
    return m.VectorParams(
        size=vector.size,
        distance={"cosine": m.Distance.COSINE, "dot": m.Distance.DOT}[vector.distance],
        on_disk=vector.on_disk,
        multivector_config=(
            m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM) if vector.multivector else None
        ),
        hnsw_config=m.HnswConfigDiff(m=vector.hnsw_m, ef_construct=vector.hnsw_ef_construct),
        datatype=datatypes[vector.datatype] if vector.datatype else None,
        quantization_config=quantization,
    )


def server_filter(m: Any, where: PageFilter | None) -> Any:
    if where is None or where.is_empty():
        return None
    make = {
        "match": lambda key, value: m.FieldCondition(key=key, match=m.MatchValue(value=value)),
        "any": lambda key, values: m.FieldCondition(key=key, match=m.MatchAny(any=values)),
        "range": lambda key, bounds: m.FieldCondition(key=key, range=m.Range(gte=bounds[0], lte=bounds[1])),
        "ids": lambda _, ids: m.HasIdCondition(has_id=ids),
    }
    return m.Filter(must=[make[kind](key, value) for kind, key, value in where.conditions()])


def query_arguments(m: Any, plan: SearchPlan, params: Any = None) -> dict[str, Any]:
    """The keywords of the one ``query_points`` call that runs ``plan`` (``params``: quantization
    rescoring). Hybrid RRF with ``k`` needs Qdrant 1.16, with weights other than (1, 1) 1.17; MMR 1.15."""
    flt = server_filter(m, plan.where)
    first = [
        m.Prefetch(query=plan.vector(using), using=using, limit=limit, filter=flt)
        for using, limit in plan.first_stages.items()
    ]
    multi = plan.multivector  # the multivector has no HNSW graph: scoring it is exact
    args: dict[str, Any] = {"prefetch": first or None, "using": plan.final, "search_params": params}
    if plan.mode == "lexical":
        assert plan.lexical is not None
        args["query"] = sparse(m, plan.lexical)
    elif plan.mode == "hybrid":
        assert plan.lexical is not None
        args["prefetch"] = [
            m.Prefetch(query=sparse(m, plan.lexical), using=LEXICAL, limit=plan.lexical_limit, filter=flt),
            m.Prefetch(prefetch=first, query=multi, using=MULTI, limit=plan.rerank_limit, filter=flt, params=params),
        ]
        fusion = plan.fusion
        if fusion.method == "dbsf":
            args["query"] = m.FusionQuery(fusion=m.Fusion.DBSF)
        else:
            weights = None if fusion.weights == (1.0, 1.0) else [float(w) for w in fusion.weights]
            args["query"] = m.RrfQuery(rrf=m.Rrf(k=fusion.k, weights=weights))
        args.update(using=None, search_params=None)  # fusion takes no vector name
    elif plan.mode == "mmr":  # MaxSim picks the candidates; MMR orders them by the dense vector (cheap, length-free)
        args["prefetch"] = [
            m.Prefetch(prefetch=first, query=multi, using=MULTI, limit=plan.mmr_candidates, filter=flt, params=params)
        ]
        mmr = m.Mmr(diversity=1.0 - plan.mmr_lambda, candidates_limit=plan.mmr_candidates)
        args.update(query=m.NearestQuery(nearest=plan.dense, mmr=mmr), using=DENSE, search_params=None)
    else:
        args["query"] = plan.vector(plan.final)
    return {**args, "query_filter": flt, "limit": plan.k, "with_payload": True}
