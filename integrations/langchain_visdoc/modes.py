"""How a LangChain ``VisdocVectorStore`` searches: langchain-qdrant's retrieval modes in visdoc's
search modes, the fusion of a hybrid search, and scores mapped to LangChain's relevance in [0, 1].

visdoc computes each page's and chunk's lexical (BM25) vector itself, from the text it stores
(:mod:`visdoc.lexical`, IDF applied by the engine); no sparse embedding model is involved.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visdoc.store import Fusion, Store

__all__ = ["RetrievalMode", "hybrid_fusion", "relevance", "retrieval_mode", "store_mode", "scored_mode"]


class RetrievalMode(str, Enum):
    """langchain-qdrant's ``RetrievalMode`` (its enum is accepted too, and the strings)."""

    DENSE = "dense"  # visdoc's default search: dense + pooled prefetch, exact MaxSim rerank ("rerank")
    SPARSE = "sparse"  # BM25 of the query's words against the stored text ("lexical")
    HYBRID = "hybrid"  # both, fused (RRF by default) ("hybrid")


STORE_MODES = {RetrievalMode.DENSE: "rerank", RetrievalMode.SPARSE: "lexical", RetrievalMode.HYBRID: "hybrid"}


def retrieval_mode(value: Any) -> RetrievalMode:
    """``value`` (this module's or langchain-qdrant's ``RetrievalMode``, or its string) as a :class:`RetrievalMode`."""
    raw = getattr(value, "value", value)
    try:
        return RetrievalMode(str(raw).lower())
    except ValueError:
        raise ValueError(
            f"unknown retrieval_mode {value!r}: use 'dense' (dense and pooled prefetch, MaxSim rerank), 'sparse' "
            "(BM25 of the stored text) or 'hybrid' (both, fused)"
        ) from None


def store_mode(value: Any) -> str:
    """The visdoc search mode of a retrieval mode: dense -> ``rerank``, sparse -> ``lexical``, hybrid -> ``hybrid``."""
    return STORE_MODES[retrieval_mode(value)]


def hybrid_fusion(value: Any) -> Fusion:
    """A visdoc :class:`~visdoc.store.Fusion` from langchain-qdrant's ``hybrid_fusion``
    (``qdrant_client.models.FusionQuery(fusion=Fusion.RRF | Fusion.DBSF)``) or a ``Fusion`` itself."""
    from visdoc.store import Fusion

    if isinstance(value, Fusion):
        return value
    method = getattr(getattr(value, "fusion", None), "value", getattr(value, "fusion", None))
    if method not in ("rrf", "dbsf"):
        raise TypeError(
            f"hybrid_fusion must be qdrant_client.models.FusionQuery(fusion=Fusion.RRF or Fusion.DBSF) or a "
            f"visdoc.store.Fusion, not {value!r}"
        )
    return Fusion(method=method)


def scored_mode(store: Store, mode: str, text: str, lexical_prefetch: int | None) -> str:
    """The mode whose scores a search returns: ``hybrid`` runs as ``rerank`` where it has no
    lexical stage (a collection without lexical vectors, a query of only stop words,
    ``lexical_prefetch=0``), as :meth:`visdoc.store.Store.search` does."""
    if mode != "hybrid":
        return mode
    from visdoc import lexical

    if not store.spec.lexical or lexical_prefetch == 0 or not lexical.query_vector(text)[0]:
        return "rerank"
    return mode


def relevance(score: float, mode: str, *, tokens: int, fusion: Fusion) -> float:
    """A hit's score as LangChain's relevance, 0 (unrelated) to 1 (best), for the mode that scored it.

    - ``rerank``, ``multivector`` (MaxSim, a sum over the query's ``tokens`` of cosines):
      the mean cosine per query token, mapped from [-1, 1].
    - ``dense``, ``mmr`` (a dense cosine): mapped from [-1, 1].
    - ``lexical`` (BM25, 0 when no term matches, unbounded): ``score / (score + 1)``, so a page
      matching one rare query term scores about 0.7-0.9 and more matches score higher.
    - ``hybrid``: RRF's fused score over its largest possible value (rank 1 in both lists, with
      the fusion's ``k`` and weights); DBSF's sum of two normalised scores over 2.
    """
    if mode in ("rerank", "multivector"):
        value = (score / max(tokens, 1) + 1) / 2
    elif mode in ("dense", "mmr"):
        value = (score + 1) / 2
    elif mode == "lexical":
        value = score / (score + 1) if score > 0 else 0.0
    elif mode == "hybrid":
        value = score / fusion_ceiling(fusion)
    else:
        raise ValueError(f"unknown search mode {mode!r}")
    return min(1.0, max(0.0, float(value)))


def fusion_ceiling(fusion: Fusion) -> float:
    """The largest fused score ``fusion`` gives: a point first in both lists."""
    if fusion.method == "dbsf":
        return 2.0
    return sum(1 / (fusion.k + 1 / w - 1) for w in fusion.weights if w > 0)
