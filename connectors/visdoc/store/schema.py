"""What a visdoc collection is made of: its named vectors and how each is stored (one layout, which
each backend translates for its client), the settings fixed at creation, filters and what reads
return. The payload's keys and kinds, point ids and :class:`PagePoint` belong to :mod:`visdoc.points`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..lexical import LEXICAL
from ..points import DOCUMENT_ID, KIND, PAGE, SOURCE, Kind

DENSE = "dense"
MULTI = "multi"
POOLED = "pooled"
ROWCOL = "rowcol"
MULTIVECTOR_DIM = 128
DEFAULT_COLLECTION = "visdoc"
SPEC_FILE = "visdoc.json"  # an embedded collection's spec, in its folder next to the engine's shard
DEFAULT_PREFETCH = 100
DEFAULT_POOLED_PREFETCH: int | None = None  # None: by the collection's size (pooled_prefetch_for)
DEFAULT_LEXICAL_PREFETCH = 100  # BM25 candidates fused in hybrid search
SCALAR_QUANTILE = 0.99  # scalar quantization's int8 range covers this quantile of the values

Datatype = Literal["float32", "float16"]  # Qdrant's uint8 stores pre-quantized integers: use quantization="scalar"
Quantization = Literal["none", "scalar", "binary"]
Distance = Literal["cosine", "dot"]
Profile = Literal["fast", "compact", "archive"]
SparseTerms = tuple[list[int], list[float]]  # a sparse vector: term indices and their weights


def pooled_prefetch_for(points: int) -> int:
    """Pooled-centroid candidates the default search reranks in a collection of ``points``.

    A larger collection has more pages near each query, so its first stage must pass on more
    candidates to keep the exact top 10 (docs/benchmarks.md, scale): with 64, recall@10 was 0.994
    at 10,000 synthetic pages, 0.967 at 30,000 and 0.949 at 100,000; 128 gave 0.980 and 0.958
    there, for 5 and 15 ms more."""
    return 64 if points <= 20_000 else 128


@dataclass(frozen=True)
class CollectionSpec:
    """Settings fixed when a collection is created.

    ``dim`` is the dense Matryoshka size; the multivector is always 128-d, compared with MaxSim
    and kept out of HNSW (it only reranks). ``pool_size`` k-means centroids of each page's tokens
    form a second, cheap first stage next to the dense vector (0 leaves it out).
    ``multivector_datatype`` float16 halves storage at no measurable cost; ``quantization`` adds
    a compressed copy of the multivector for faster scoring, rescored with the originals;
    ``token_pool_factor`` > 1 stores about 1/factor of each document's content tokens
    (hierarchical pooling; queries are never pooled). ``rowcol`` adds, for page images, the mean
    of each row and each column of the patch grid as a further prefetch vector (Qdrant's
    recipe). ``oversampling`` is how many extra candidates quantized search rescores.
    ``lexical`` stores a BM25 sparse vector of each point's text (:mod:`visdoc.lexical`) for the
    ``lexical`` and ``hybrid`` search modes; collections made before it existed have it off until
    :meth:`~visdoc.store.Store.add_lexical` adds it.

    Where the vectors live (every vector is always stored on disk; these say which are also held
    in RAM): ``multivector_on_disk`` (the default ``compact`` profile) serves the full multivector,
    which only reranks a few hundred candidates per search, from disk through the OS page cache,
    keeping the dense vector, its graph and the pooled centroids in RAM; ``on_disk`` serves every
    vector's originals from disk. :meth:`for_profile` picks them by name (:data:`PROFILES`).
    """

    dim: int
    model: str = ""
    task: str = "retrieval"
    multivector_datatype: Datatype = "float16"
    quantization: Quantization = "none"
    on_disk: bool = False
    multivector_on_disk: bool = True
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    pool_size: int = 16
    token_pool_factor: int = 1
    rowcol: bool = False
    oversampling: float = 8.0
    lexical: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.multivector_datatype not in ("float32", "float16"):
            raise ValueError(
                f"multivector_datatype {self.multivector_datatype!r}: use float32 or float16 "
                "(for 8-bit storage use quantization='scalar', which keeps the originals for rescoring)"
            )
        if self.quantization not in ("none", "scalar", "binary"):
            raise ValueError(f"quantization {self.quantization!r}: use none, scalar or binary")
        if self.token_pool_factor < 1 or self.pool_size < 0:
            raise ValueError("token_pool_factor must be >= 1 and pool_size >= 0")

    @classmethod
    def for_profile(cls, profile: Profile, dim: int, **settings: Any) -> CollectionSpec:
        """A spec with the memory placement of ``profile`` (:data:`PROFILES`); ``settings``
        set any other field (and may override the profile's)."""
        if profile not in PROFILES:
            raise ValueError(f"profile {profile!r}: use one of {', '.join(PROFILES)}")
        return cls(dim=dim, **{**PROFILES[profile], **settings})

    @property
    def profile(self) -> Profile:
        """The profile whose placement this spec has."""
        return "archive" if self.on_disk else "compact" if self.multivector_on_disk else "fast"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("pool_size", 0)  # written before pooled vectors existed
        known.setdefault("lexical", False)  # written before lexical vectors existed
        known.setdefault("multivector_on_disk", False)  # written before profiles: every vector in RAM
        return cls(**known)


PROFILES: dict[str, dict[str, Any]] = {
    # every vector in RAM: ~225 KB resident per page (the float16 multivector), the lowest latency
    # on a cold page cache
    "fast": {"on_disk": False, "multivector_on_disk": False},
    # the default: the multivector served from disk, the first stages in RAM: the same results and
    # warm latency, ~25 KB resident per page (docs/store.md#profiles-which-vectors-stay-in-ram)
    "compact": {"on_disk": False, "multivector_on_disk": True},
    # every original from disk: the least RAM, slower while the page cache is cold
    "archive": {"on_disk": True, "multivector_on_disk": True},
}
@dataclass(frozen=True)
class VectorLayout:
    """How one named vector is stored, in neither client's terms: the embedded backend and the
    server backend each translate it. None leaves a setting to the engine's default."""

    size: int
    distance: Distance
    multivector: bool = False  # rows of ``size`` compared with MaxSim
    datatype: Datatype | None = None
    on_disk: bool | None = None
    quantization: Quantization = "none"  # a compressed copy scored first, rescored with the originals
    hnsw_m: int = 16  # 0: no HNSW graph, every search scores exactly
    hnsw_ef_construct: int | None = None
    full_scan_threshold: int | None = None  # the embedded engine's; a server keeps its configured one
    sparse: bool = False  # a sparse vector (term index -> weight; ``size`` and ``distance`` unused), IDF-weighted


SPARSE_LAYOUT = VectorLayout(0, "dot", sparse=True)  # the lexical vector: BM25 weights, IDF applied by the engine


@dataclass(frozen=True)
class Fusion:
    """How ``hybrid`` search fuses its lexical and vector candidates.

    ``rrf`` (reciprocal rank fusion) scores a point sum(weight / (k + rank)) over the two lists
    (Qdrant's exact form: 1 / (k + (rank + 1) / weight - 1), rank from 0); ``dbsf`` normalises each
    list's scores by its mean +- 3 standard deviations and sums them (``k`` and ``weights`` unused).
    ``weights`` is ``(lexical, vectors)``.

    Defaults measured on hand-made pages (2,000 pages of Zipf-distributed words, a third with a
    product code, 200 near-miss codes; query vectors = the target page's vectors plus noise, at
    seven noise levels from "vectors always right" to "vectors near chance"; 300 queries: exact
    codes typed in lowercase with spaces, two words of the page plus two common ones, or common
    words only; nDCG@10): RRF k=5 with equal weights was the best RRF or within 0.03 of it at
    every noise level (k=2 and k=10 close behind; k=60 0.1 to 0.2 lower, as mid-ranked pages found by both lists then
    outscore each list's top hit); a lexical weight of 1.5 or 2 helped codes but cost more on the
    other queries, 0.5 lost codes. DBSF matched or beat RRF there (by up to 0.1 where the vectors
    are good), but it fails the case hybrid is for: when one page alone holds the code, the text
    list has one hit, whose normalised score (0.5) loses to the vector side's best (~0.9), so the
    page drops out of the top (tests/test_hybrid.py). RRF uses ranks only: it does not depend on
    how a real model's MaxSim scores are distributed, and its weights are what front-ends map.
    With equal weights, a page first in one list alone ties with the other list's first (1/k
    each); one found by both lists wins.
    """

    method: Literal["rrf", "dbsf"] = "rrf"
    k: int = 5
    weights: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "dbsf"):
            raise ValueError(f"fusion method {self.method!r}: use rrf or dbsf")
        if self.k < 1:
            raise ValueError(f"RRF k must be 1 or more, not {self.k}")
        if len(self.weights) != 2 or any(not w >= 0 for w in self.weights) or not any(self.weights):
            raise ValueError(f"fusion weights {self.weights!r}: two weights (lexical, vectors), >= 0, not both 0")


def vector_layout(spec: CollectionSpec) -> dict[str, VectorLayout]:
    """The named vectors of a collection created with ``spec`` (the lexical one is ``sparse``)."""
    layout = {
        DENSE: VectorLayout(
            spec.dim, "cosine", on_disk=spec.on_disk, hnsw_m=spec.hnsw_m, hnsw_ef_construct=spec.hnsw_ef_construct
        ),
        MULTI: VectorLayout(  # it only reranks: no HNSW graph
            MULTIVECTOR_DIM,
            "cosine",
            multivector=True,
            datatype=spec.multivector_datatype,
            on_disk=spec.on_disk or spec.multivector_on_disk,
            quantization=spec.quantization,
            hnsw_m=0,
        ),
    }
    # small prefetch multivectors scored by dot product against the query's cluster sums, whose
    # lengths carry how many query tokens they stand for
    prefetch = VectorLayout(
        MULTIVECTOR_DIM, "dot", multivector=True, datatype="float16", on_disk=spec.on_disk, hnsw_m=0,
        full_scan_threshold=10,
    )  # fmt: skip
    if spec.pool_size:
        layout[POOLED] = prefetch
    if spec.rowcol:
        layout[ROWCOL] = prefetch
    if spec.lexical:
        layout[LEXICAL] = SPARSE_LAYOUT
    return layout


@dataclass(frozen=True)
class PageFilter:
    """Payload filter for search, count, scroll and delete. Empty fields do not filter."""

    document_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    page_from: int | None = None  # inclusive, 0-based
    page_to: int | None = None  # inclusive
    kind: Kind | None = None
    fields: tuple[tuple[str, Any], ...] = ()  # other payload keys (dotted for nesting): value or list of values
    ids: tuple[str, ...] = ()  # only these point ids

    def is_empty(self) -> bool:
        return not self.conditions()

    def conditions(self) -> list[tuple[str, str, Any]]:
        """``(kind, field, value)`` triples, every one of which must hold: kind is ``match``
        (value equal), ``any`` (value in a list), ``range`` (``(gte, lte)``, either may be None)
        or ``ids`` (the point id is in the list)."""
        out: list[tuple[str, str, Any]] = []
        for key, values in ((DOCUMENT_ID, self.document_ids), (SOURCE, self.sources)):
            if len(values) == 1:
                out.append(("match", key, values[0]))
            elif values:
                out.append(("any", key, list(values)))
        if self.kind:
            out.append(("match", KIND, self.kind))
        if self.page_from is not None or self.page_to is not None:
            out.append(("range", PAGE, (self.page_from, self.page_to)))
        if self.ids:
            out.append(("ids", "", list(self.ids)))
        for key, value in self.fields:
            out.append(("any", key, list(value)) if isinstance(value, (list, tuple, set)) else ("match", key, value))
        return out


@dataclass
class Record:
    """A stored point read back (vectors only when asked for)."""

    id: str
    payload: dict[str, Any]
    dense: Any = None
    multivector: Any = None

    @classmethod
    def from_qdrant(cls, point: Any, with_vectors: bool) -> Record:
        """From a record of either Qdrant client (``id``, ``payload``, ``vector`` attributes)."""
        import numpy as np

        record = cls(str(point.id), dict(point.payload or {}))
        if with_vectors and point.vector:
            record.dense = np.asarray(point.vector[DENSE], dtype=np.float32)
            record.multivector = np.asarray(point.vector[MULTI], dtype=np.float32)
        return record


@dataclass
class StoredPoint:
    """A point as the collection holds it, for moving it without a model: every named vector as
    stored (``dense`` a list, ``multi``, ``pooled`` and ``rowcol`` lists of rows, ``lexical``
    :data:`SparseTerms`) and the payload. :meth:`~visdoc.store.Store.upsert_stored` writes it back
    as it is: nothing is recomputed (token-pooled multivectors stay pooled)."""

    id: str
    vectors: dict[str, Any]
    payload: dict[str, Any]

    @classmethod
    def from_qdrant(cls, point: Any) -> StoredPoint:
        """From a record of either Qdrant client read with its vectors (a sparse vector has
        ``indices`` and ``values``)."""
        vectors = dict(point.vector or {})
        if LEXICAL in vectors:
            vectors[LEXICAL] = (list(vectors[LEXICAL].indices), list(vectors[LEXICAL].values))
        return cls(str(point.id), vectors, dict(point.payload or {}))

    def floats(self) -> int:
        """Numbers its vectors hold (a sparse vector's indices and weights each count)."""
        total = 0
        for name, vector in self.vectors.items():
            if name == LEXICAL:
                total += 2 * len(vector[0])
            else:  # the dense vector is one row of its size; the others are rows of 128
                total += len(vector) if name == DENSE else len(vector) * MULTIVECTOR_DIM
        return total

    @property
    def nbytes(self) -> int:
        """float32 bytes of its vectors plus its payload's size (as :func:`visdoc.store.disk.raw_bytes`)."""
        return 4 * self.floats() + len(repr(self.payload))


@dataclass
class Hit:
    """A search result."""

    id: str
    score: float
    payload: dict[str, Any]
