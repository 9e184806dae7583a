"""LlamaIndex vector store on visdoc: late-interaction search (dense/pooled prefetch + MaxSim), BM25, hybrid and
MMR in Qdrant."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.settings import Settings
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.embeddings.visdoc import JinaV4Embedding
from llama_index.embeddings.visdoc.memo import arm, arm_name, image_key, text_key

from visdoc.encoder import EncodeResult
from visdoc.points import PAGE_IMAGE, REF_DOC_ID, TEXT_CHUNK, framework_points, point_id_for
from visdoc.store.schema import DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH

from .nodes import image_input, payload, to_node
from .queries import page_filter, search_options

if TYPE_CHECKING:
    from visdoc.encoder import EncodedItem, Encoder
    from visdoc.store import Store

__all__ = ["VisdocVectorStore"]

logger = logging.getLogger(__name__)


class VisdocVectorStore(BasePydanticVectorStore):
    """Nodes stored with a dense vector and a late-interaction multivector from one forward pass.

    The store embeds nodes and queries itself (``is_embedding_query = False``): it receives the
    query string, computes its dense and multivector embeddings with jina-embeddings-v4, and
    searches with dense (and pooled) prefetch followed by exact MaxSim rerank. Text nodes are
    embedded as passages; ``ImageNode``s (what the index makes of ``ImageDocument``s) from their
    image as LlamaIndex resolves it (base64 ``image``, else ``image_path``), else from a visdoc
    page reference ``file.pdf#page=N`` in their ``image_path`` metadata, which makes it a working
    ``image_store`` for ``MultiModalVectorStoreIndex``. Each node goes through the model once: the
    embedding the index computes with a ``JinaV4Embedding`` on the same encoder (``embed_model``,
    or one naming the same checkpoint) comes with the multivector the store keeps.

    ``embed_model`` is the store's encoder as a ``JinaV4Embedding`` (same task and size). When
    ``Settings.embed_model`` has not been set, creating the store sets it to ``embed_model`` (and
    logs that at INFO), so ``VectorStoreIndex.from_documents(docs, storage_context=...)`` needs
    no embedding model (LlamaIndex would otherwise pick OpenAI's); an embedding model the user
    set is never replaced.

    Queries (``vector_store_query_mode``): ``default`` (dense and pooled prefetch, exact MaxSim
    rerank); ``hybrid`` (BM25 of the stored text fused with it; ``alpha`` 1 = vectors only, 0 =
    text only, ``sparse_top_k`` BM25 candidates, ``hybrid_top_k`` results); ``mmr`` (diverse nodes
    among the MaxSim candidates; ``mmr_threshold`` 1 = relevance only, 0 = diversity only);
    ``text_search`` and ``sparse`` (BM25 of the stored text, which visdoc indexes itself). Other
    modes, fields that do not apply to the chosen mode, and a ``query_embedding`` without a query
    string are refused, not ignored (a ``query_embedding`` next to a query string is not used). Metadata
    filters support ``EQ`` and ``IN`` combined with ``AND``; ``doc_ids`` and ``node_ids``
    restrict the search (an empty list does not). ``delete(ref_doc_id)`` removes a document's
    nodes. The collection lives in ``data_dir`` (embedded Qdrant engine) or on a Qdrant server
    (``url``, ``api_key``, or a ``qdrant_client.QdrantClient`` as ``client``); ``embedding_url``
    (and ``embedding_api_key``) use a visdoc embedding server.
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = False

    collection: str = "llama_index"
    model_name: str | None = None
    task: str = "retrieval"
    dim: int | None = None
    data_dir: str | None = None
    url: str | None = None
    embedding_url: str | None = None
    prefetch: int = DEFAULT_PREFETCH
    pooled_prefetch: int | None = DEFAULT_POOLED_PREFETCH

    _model: Any = PrivateAttr(default=None)
    _store: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _api_key: str | None = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)
    _embedding_api_key: str | None = PrivateAttr(default=None)
    _embed_model: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model: str | os.PathLike | Encoder | None = None,
        *,
        api_key: str | None = None,
        embedding_api_key: str | None = None,
        client: Any = None,
        store: Store | None = None,
        **kwargs: Any,
    ) -> None:
        from visdoc.encoder import model_argument

        name, loaded = model_argument(model)
        kwargs.setdefault("model_name", name)
        if kwargs.get("data_dir") is not None:
            kwargs["data_dir"] = str(kwargs["data_dir"])
        super().__init__(**kwargs)
        self._model, self._api_key, self._client, self._store = loaded, api_key, client, store
        self._embedding_api_key = embedding_api_key
        if loaded is not None:
            arm(loaded)
        elif self.embedding_url is None:
            arm_name(name)  # the shared local model the index may load before the store does
        if Settings._embed_model is None:
            Settings.embed_model = self.embed_model
            logger.info("Settings.embed_model was not set: VisdocVectorStore set it to its own encoder (%s)", name)

    @classmethod
    def class_name(cls) -> str:
        return "VisdocVectorStore"

    @property
    def model(self) -> Encoder:
        """The encoder (the one ``embed_model`` uses), loaded on first use."""
        if self._model is None:
            self._model = self.embed_model.model
        return self._model

    @property
    def embed_model(self) -> JinaV4Embedding:
        """The store's encoder as a LlamaIndex embedding model, with the store's task and size."""
        if self._embed_model is None:
            model = self._model or self.model_name
            self._embed_model = JinaV4Embedding(model, task=self.task, dim=self.dim, base_url=self.embedding_url,
                                                api_key=self._embedding_api_key)  # fmt: skip
            self._embed_model._arms = True
        return self._embed_model

    @property
    def client(self) -> Store:
        """The visdoc collection (opened, or created with the model's settings, on first use)."""
        if self._store is None:
            from visdoc.store import CollectionSpec, open_store

            spec = CollectionSpec(dim=self.dim or self.model.dims[-1], model=self.model.name, task=self.task)
            if self.url or self._client is not None:
                self._store = open_store(
                    self.collection, spec, url=self.url, api_key=self._api_key, client=self._client
                )
            else:
                self._store = open_store(self.collection, spec, data_dir=self.data_dir)
        return self._store

    # -- writing -------------------------------------------------------------------------------

    def add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store ``nodes``; a node whose ``embedding`` came from this store's encoder (see the class
        docstring) is not encoded again."""
        if not nodes:
            return []
        spec = self.client.spec
        images = [image_input(n) for n in nodes]
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        text_keys = [text_key(spec.task, "passage", spec.dim, t) for t in texts]
        keys = [k if i is None else image_key(spec.task, spec.dim, i) for k, i in zip(text_keys, images, strict=True)]
        items: list[EncodedItem | None] = [None] * len(nodes)
        handed = set()  # image nodes whose text the index embedded (MultiModal's text store): their image is next
        memo = arm(self.model)
        for n, node in enumerate(nodes):
            if memo is not None and node.embedding is not None:
                items[n] = memo.take(keys[n], node.embedding) if keys[n] is not None else None
                if images[n] is not None and memo.take(text_keys[n], node.embedding) is not None:
                    handed.add(n)
        to_text = {n: texts[n] for n, item in enumerate(items) if item is None and images[n] is None}
        to_image = {n: images[n] for n, item in enumerate(items) if item is None and images[n] is not None}
        if to_text:
            result = self.model.encode_texts(list(to_text.values()), task=spec.task, prompt_name="passage",
                                             dim=spec.dim, multivector=True)  # fmt: skip
            _place(items, to_text, result)
        if to_image:
            result = self.model.encode_images(list(to_image.values()), task=spec.task, dim=spec.dim, multivector=True)
            _place(items, to_image, result)
        for n in handed & to_image.keys():
            if keys[n] is not None:
                memo.put(keys[n], items[n], for_embedding=True)  # type: ignore[union-attr, arg-type]
        payloads = [payload(n, TEXT_CHUNK if i is None else PAGE_IMAGE) for n, i in zip(nodes, images, strict=True)]
        points = framework_points(_result_of(items), payloads)  # type: ignore[arg-type]
        with self._lock:
            self.client.upsert(points)
        return [n.node_id for n in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        from visdoc.store import PageFilter

        with self._lock:
            self.client.delete(PageFilter(fields=((REF_DOC_ID, ref_doc_id),)))

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any
    ) -> None:
        """Delete the nodes matching both ``node_ids`` (when given) and ``filters`` (when given)."""
        if node_ids is not None and not node_ids:
            return
        where = page_filter(filters, ids=node_ids)
        with self._lock:
            if not where.is_empty():
                self.client.delete(where)

    def clear(self) -> None:
        from visdoc.store import PageFilter

        with self._lock:
            ids = [r.id for r in self.client.iter_records(PageFilter())]
            self.client.delete_ids(ids)

    # -- reading -------------------------------------------------------------------------------

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        if node_ids is not None and not node_ids:
            return []
        with self._lock:
            records = list(self.client.iter_records(page_filter(filters, ids=node_ids)))
        if node_ids is not None:  # in the order asked for
            order = {point_id_for(i): n for n, i in enumerate(node_ids)}
            records.sort(key=lambda r: order[r.id])
        return [to_node(r) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes for ``query.query_str`` in ``query.mode`` (``default``: MaxSim
        rerank; ``hybrid``; ``mmr``; ``text_search``/``sparse``: BM25; see
        :func:`~llama_index.vector_stores.visdoc.queries.search_options`). ``kwargs`` (a retriever's
        ``vector_store_kwargs``): ``prefetch``, ``pooled_prefetch``; in ``hybrid`` ``fusion``; in
        ``mmr`` ``mmr_threshold``, ``mmr_prefetch_k``, ``mmr_prefetch_factor``."""
        from visdoc.store import QueryVectors

        plan = search_options(query, kwargs)
        with self._lock:
            spec = self.client.spec
            result = self.model.encode_texts([query.query_str], task=spec.task, prompt_name="query", dim=spec.dim,
                                             multivector=True)  # fmt: skip
            hits = self.client.search(
                QueryVectors(result.dense[0], result.multivector[0], text=query.query_str),
                prefetch=kwargs.get("prefetch", self.prefetch),
                pooled_prefetch=kwargs.get("pooled_prefetch", self.pooled_prefetch),
                where=page_filter(query.filters, query.doc_ids, query.node_ids),
                **plan,
            )
        nodes = [to_node(h) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[n.node_id for n in nodes])

    async def async_add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **kwargs)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    def close(self) -> None:
        """Release the collection (an embedded one can then be opened by another process)."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _place(items: list[EncodedItem | None], inputs: dict[int, Any], result: EncodeResult) -> None:
    """Put the encodings of ``inputs`` (position -> input, in ``result``'s order) in place in ``items``."""
    for row, n in enumerate(inputs):
        items[n] = result.item(row)


def _result_of(items: list[EncodedItem]) -> EncodeResult:
    """One :class:`EncodeResult` of encodings made in different calls (in the order given)."""
    return EncodeResult(
        dense=np.stack([i.dense for i in items]),
        multivector=[i.multivector for i in items],
        tokens=[i.tokens for i in items],
        content_spans=[i.content_span for i in items],
        grids=[i.grid for i in items],
    )
