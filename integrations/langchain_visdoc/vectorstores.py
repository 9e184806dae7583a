"""A LangChain vector store on visdoc: dense prefetch + multivector MaxSim rerank in Qdrant, lexical
(BM25) and hybrid retrieval, and maximal marginal relevance (MMR)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from visdoc.points import (
    IMAGE_PATH,
    PAGE_IMAGE,
    SOURCE,
    TEXT_CHUNK,
    framework_payload,
    framework_points,
    image_reference,
    metadata_filter,
    point_id_for,
    unpack,
)
from visdoc.store.schema import DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH

from .connection import connection_options
from .embeddings import JinaV4Embeddings
from .modes import RetrievalMode, hybrid_fusion, relevance, scored_mode, store_mode
from .modes import retrieval_mode as as_retrieval_mode

# search keyword arguments besides k and filter (hybrid_fusion: langchain-qdrant's name for fusion)
SEARCH_OPTIONS = ("mode", "prefetch", "pooled_prefetch", "lexical_prefetch", "fusion", "hybrid_fusion")
MMR_BY_VECTOR = (
    "VisdocVectorStore cannot run maximal marginal relevance (MMR) from a bare vector: it ranks the candidates by "
    "the query's multivector (MaxSim), computed from the query text; use max_marginal_relevance_search(query)"
)

if TYPE_CHECKING:
    from visdoc.ingest import IngestReport
    from visdoc.store import Fusion, Hit, PageFilter, Store


class VisdocVectorStore(VectorStore):
    """Pages and texts in a visdoc collection (embedded Qdrant engine, or a server with ``url``).

    Every item is stored with a dense and a late-interaction multivector from one forward pass,
    and a lexical (BM25) vector of its text that visdoc computes itself. ``retrieval_mode`` (as
    langchain-qdrant's ``RetrievalMode``: the enum, this package's :class:`RetrievalMode`, or
    ``"dense"``/``"sparse"``/``"hybrid"``) picks the search: ``dense`` (the default) prefetches
    candidates with the dense vector (and pooled token centroids) and reranks them by exact MaxSim
    (visdoc's ``rerank``); ``sparse`` ranks by BM25 of the query's words against the stored text
    (``lexical``: exact codes and names); ``hybrid`` fuses both lists (``fusion``, a
    :class:`visdoc.store.Fusion`; default the store's, RRF with equal weights). A search call's
    ``mode=`` takes any visdoc mode (``rerank``, ``dense``, ``multivector``, ``lexical``,
    ``hybrid``, ``mmr``) for that call. :meth:`max_marginal_relevance_search`
    (``search_type="mmr"``) picks diverse pages among the ``fetch_k`` best by MaxSim. Documents
    added with an ``image_path`` in their metadata (as :class:`~langchain_visdoc.VisdocPDFLoader`
    yields) are embedded from the page image, with their text kept as ``page_content``. ``filter``
    arguments are dicts of metadata equalities (a list value matches any of its items).

    Where the collection lives: ``data_dir`` (visdoc's embedded engine, the default), ``url`` and
    ``api_key`` (a Qdrant server) or ``client`` (any ``QdrantClient``). langchain-qdrant's
    arguments mean the same here (see :mod:`langchain_visdoc.connection`): ``location=":memory:"``
    (in memory, for the store's lifetime), ``location``/``url`` (a server), ``path`` (an embedded
    collection's folder, in qdrant-edge's format), ``collection_name``, ``host``, ``port``,
    ``prefer_grpc``, ``retrieval_mode`` ...; the ones visdoc does not implement (``force_recreate``,
    ``sparse_embedding``, ``vector_name``, ``distance`` ...) are refused. Search by a bare vector
    (``similarity_search_by_vector``, ``max_marginal_relevance_search_by_vector``) raises
    ``NotImplementedError``: the store needs the query text.
    """

    def __init__(
        self,
        embedding: JinaV4Embeddings,
        *,
        collection: str | None = None,
        data_dir: str | os.PathLike | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        store: Store | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        pooled_prefetch: int | None = DEFAULT_POOLED_PREFETCH,
        retrieval_mode: RetrievalMode | str = RetrievalMode.DENSE,
        lexical_prefetch: int | None = None,
        fusion: Fusion | None = None,
        **server_options: Any,
    ) -> None:
        if not isinstance(embedding, JinaV4Embeddings):
            raise TypeError("VisdocVectorStore needs a JinaV4Embeddings (it stores multivectors too)")
        self.embedding = embedding
        self.prefetch, self.pooled_prefetch = prefetch, pooled_prefetch
        self.retrieval_mode = as_retrieval_mode(retrieval_mode)
        self.lexical_prefetch = lexical_prefetch  # None: the store's default
        self.fusion = hybrid_fusion(fusion) if fusion is not None else None
        self._store = store
        self._open, self._own_client = connection_options(
            dict(collection=collection, data_dir=data_dir, url=url, api_key=api_key, client=client, **server_options)
        )
        self._lock = threading.RLock()  # async methods run in threads; keep store calls one at a time

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def store(self) -> Store:
        """The underlying visdoc collection (created on first use with the model's settings)."""
        if self._store is None:
            from visdoc.store import CollectionSpec, open_store

            model = self.embedding.model
            spec = CollectionSpec(dim=self.embedding.dim or model.dims[-1], model=model.name, task=self.embedding.task)
            options = dict(self._open)
            self._store = open_store(options.pop("collection"), spec, **options)
        return self._store

    # -- adding --------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store texts; ``batch_size`` texts per round (langchain-qdrant's meaning), default all."""
        texts = list(texts)
        metadatas = metadatas or [{} for _ in texts]
        documents = [Document(page_content=t, metadata=dict(m)) for t, m in zip(texts, metadatas, strict=True)]
        return self.add_documents(documents, ids=ids, batch_size=batch_size, **kwargs)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Embed and store documents (``ids``: theirs, else ``Document.id``, else new UUIDs; ``batch_size``:
        documents per round, default all)."""
        ids, batch_size = kwargs.pop("ids", None), kwargs.pop("batch_size", None)
        if kwargs:
            raise TypeError(f"VisdocVectorStore.add_documents does not take {sorted(kwargs)}")
        ids = [str(i) for i in ids] if ids else [doc.id or str(uuid.uuid4()) for doc in documents]
        if len(ids) != len(documents):
            raise ValueError(f"got {len(ids)} ids for {len(documents)} documents")
        step = batch_size or max(len(documents), 1)
        for start in range(0, len(documents), step):
            self._add(documents[start : start + step], ids[start : start + step])
        return ids

    def _add(self, documents: list[Document], ids: list[str]) -> None:
        pages = [i for i, doc in enumerate(documents) if doc.metadata.get(IMAGE_PATH)]
        texts = [i for i, doc in enumerate(documents) if not doc.metadata.get(IMAGE_PATH)]
        model, task, dim, batch = (
            self.embedding.model,
            self.embedding.task,
            self.embedding.dim,
            self.embedding.batch_size,
        )
        points = []
        if texts:
            result = model.encode_texts([documents[i].page_content for i in texts], task=task, prompt_name="passage",
                                        dim=dim, multivector=True, batch_size=batch)  # fmt: skip
            points += framework_points(result, [self._payload(ids[i], documents[i], TEXT_CHUNK) for i in texts])
        if pages:
            from visdoc.documents import load_page_image

            images = [load_page_image(documents[i].metadata[IMAGE_PATH]) for i in pages]
            result = model.encode_images(images, task=task, dim=dim, multivector=True, batch_size=batch)
            points += framework_points(result, [self._payload(ids[i], documents[i], PAGE_IMAGE) for i in pages])
        with self._lock:
            self.store.upsert(points)

    def add_images(
        self, uris: list[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None
    ) -> list[str]:
        """Embed image files as pages (empty ``page_content``; ``image_path`` and ``source`` set)."""
        metadatas = metadatas or [{} for _ in uris]
        documents = [
            Document(page_content="", metadata={SOURCE: str(uri), IMAGE_PATH: image_reference(uri, 0)} | dict(m))
            for uri, m in zip(uris, metadatas, strict=True)
        ]
        return self.add_documents(documents, ids=ids)

    def add_pdfs(self, paths: Sequence[str | os.PathLike], **ingest_options: Any) -> IngestReport:
        """Ingest PDFs (and image or text files, or folders): page images and page text, resumably.

        Uses :class:`visdoc.ingest.Ingestor`; bad files are reported in the returned report.
        """
        from visdoc.ingest import Ingestor

        with self._lock:
            return Ingestor(self.embedding.model, self.store, **ingest_options).ingest(paths)

    @staticmethod
    def _payload(doc_id: str, doc: Document, kind: str) -> dict[str, Any]:
        return framework_payload(doc_id, doc.page_content, doc.metadata, kind)  # type: ignore[arg-type]

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> VisdocVectorStore:
        """A store holding ``texts``; ``kwargs`` are the constructor's (langchain-qdrant's connection
        arguments included)."""
        store = cls(embedding, **kwargs)  # type: ignore[arg-type]
        store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size)
        return store

    # -- reading and deleting ------------------------------------------------------------------

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | PageFilter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents with their scores: MaxSim (sum over query tokens of the best page-token cosine) in
        the default ``dense`` retrieval mode, BM25 in ``sparse``, the fused score in ``hybrid``.

        ``kwargs``: ``mode`` (a visdoc search mode for this call), ``prefetch``,
        ``pooled_prefetch``, ``lexical_prefetch``, ``fusion`` (or langchain-qdrant's
        ``hybrid_fusion``)."""
        return [(self._document(hit), hit.score) for hit in self._search(query, k, filter, **kwargs)[0]]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Relevance in [0, 1] in every mode (see :func:`langchain_visdoc.modes.relevance`): the MaxSim
        score per query token mapped from [-1, 1]; BM25 as ``s / (s + 1)``; a fused score over its
        largest possible value."""
        hits, scored, tokens, fusion = self._search(query, k, kwargs.pop("filter", None), **kwargs)
        return [(self._document(hit), relevance(hit.score, scored, tokens=tokens, fusion=fusion)) for hit in hits]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | PageFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents chosen for relevance and diversity among the ``fetch_k`` best by MaxSim
        (dense and pooled prefetch, MaxSim rerank), by the engine's MMR: each next document maximises
        ``lambda_mult * relevance - (1 - lambda_mult) * similarity to those already chosen`` (1:
        relevance only, 0: diversity only), as LangChain's ``lambda_mult``. ``kwargs``: ``prefetch``,
        ``pooled_prefetch``. The retrieval mode does not apply: MMR always works on the MaxSim
        candidates."""
        for name in ("mode", "lexical_prefetch", "fusion", "hybrid_fusion"):
            if name in kwargs:
                raise TypeError(f"max_marginal_relevance_search does not take {name}=: it selects among the "
                                "fetch_k best by MaxSim (dense and pooled prefetch, MaxSim rerank)")  # fmt: skip
        mmr = {"mode": "mmr", "mmr_candidates": fetch_k, "mmr_lambda": lambda_mult}
        return [self._document(hit) for hit in self._search(query, k, filter, _mmr=mmr, **kwargs)[0]]

    def _search(
        self, query: str, k: int, filter: Any, _mmr: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[list[Hit], str, int, Fusion]:
        """The hits, the mode that scored them, the query's token count and the fusion used."""
        from visdoc.store import Fusion, PageFilter, QueryVectors

        unknown = sorted(set(kwargs) - set(SEARCH_OPTIONS))
        if unknown:
            raise TypeError(f"VisdocVectorStore search does not take {unknown}; its options are k, filter and "
                            f"{', '.join(SEARCH_OPTIONS)}")  # fmt: skip
        if "fusion" in kwargs and "hybrid_fusion" in kwargs:
            raise TypeError("give fusion= or hybrid_fusion=, not both")
        given = kwargs.get("fusion", kwargs.get("hybrid_fusion"))
        fusion = hybrid_fusion(given) if given is not None else self.fusion or Fusion()
        options = _mmr or {"mode": kwargs.get("mode") or store_mode(self.retrieval_mode)}
        lexical_prefetch = kwargs.get("lexical_prefetch", self.lexical_prefetch)
        if lexical_prefetch is not None:
            options["lexical_prefetch"] = lexical_prefetch
        model, task = self.embedding.model, self.embedding.task
        with self._lock:
            store = self.store
            result = model.encode_texts([query], task=task, prompt_name="query", dim=store.spec.dim, multivector=True)
            where = (
                filter
                if filter is None or isinstance(filter, PageFilter)
                else PageFilter(fields=metadata_filter(filter))
            )
            hits = store.search(
                QueryVectors(result.dense[0], result.multivector[0], text=query),
                k=k,
                prefetch=kwargs.get("prefetch", self.prefetch),
                pooled_prefetch=kwargs.get("pooled_prefetch", self.pooled_prefetch),
                where=where,
                fusion=fusion,
                **options,
            )
            scored = scored_mode(store, options["mode"], query, lexical_prefetch)
        return hits, scored, len(result.multivector[0]), fusion

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        raise NotImplementedError(
            "VisdocVectorStore cannot search by a bare vector: it ranks by the query's multivector (MaxSim), "
            "computed from the query text; use similarity_search(query)"
        )

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, **kwargs: Any) -> list[Document]:  # fmt: skip
        raise NotImplementedError(MMR_BY_VECTOR)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            raise ValueError("pass the ids to delete")
        with self._lock:
            self.store.delete_ids([point_id_for(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        with self._lock:
            records = self.store.retrieve([point_id_for(i) for i in ids])
        return [self._document(record) for record in records]

    @staticmethod
    def _document(point: Any) -> Document:
        doc_id, text, metadata = unpack(point)
        return Document(page_content=text, metadata=metadata, id=doc_id)

    def close(self) -> None:
        """Release the collection (an embedded one can then be opened by another process)."""
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None
