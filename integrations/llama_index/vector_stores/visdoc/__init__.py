"""LlamaIndex vector store on visdoc: late-interaction search (dense/pooled prefetch + MaxSim) in Qdrant."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from visdoc.documents import page_data_uri
from visdoc.points import (
    IMAGE_PATH,
    NODE,
    PAGE_IMAGE,
    REF_DOC_ID,
    TEXT,
    TEXT_CHUNK,
    framework_payload,
    framework_points,
    metadata_filter,
    point_id_for,
    unpack,
)
from visdoc.store.schema import DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH

if TYPE_CHECKING:
    from visdoc.encoder import Encoder
    from visdoc.store import PageFilter, Store

__all__ = ["VisdocVectorStore"]


class VisdocVectorStore(BasePydanticVectorStore):
    """Nodes stored with a dense vector and a late-interaction multivector from one forward pass.

    The store embeds nodes and queries itself (``is_embedding_query = False``): it receives the
    query string, computes its dense and multivector embeddings with jina-embeddings-v4, and
    searches with dense (and pooled) prefetch followed by exact MaxSim rerank. Text nodes are
    embedded as passages; image nodes (``ImageNode``/``ImageDocument`` with ``image_path``,
    a visdoc page reference ``file.pdf#page=N``, or base64 ``image``) as images, which makes it
    a working ``image_store`` for ``MultiModalVectorStoreIndex``. Metadata filters support
    ``EQ`` and ``IN`` combined with ``AND``; ``delete(ref_doc_id)`` removes a document's nodes.
    The collection lives in ``data_dir`` (embedded Qdrant engine) or on a Qdrant server (``url``,
    ``api_key``); ``embedding_url`` (and ``embedding_api_key``) use a visdoc embedding server.
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
    pooled_prefetch: int = DEFAULT_POOLED_PREFETCH

    _model: Any = PrivateAttr(default=None)
    _store: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _api_key: str | None = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)
    _embedding_api_key: str | None = PrivateAttr(default=None)

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

    @classmethod
    def class_name(cls) -> str:
        return "VisdocVectorStore"

    @property
    def model(self) -> Encoder:
        if self._model is None:
            from visdoc.encoder import connect

            self._model = connect(self.model_name, base_url=self.embedding_url, api_key=self._embedding_api_key)
        return self._model

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
        images = [n for n in nodes if isinstance(n, ImageNode) and _image_input(n) is not None]
        texts = [n for n in nodes if not (isinstance(n, ImageNode) and _image_input(n) is not None)]
        spec = self.client.spec
        points = []
        if texts:
            contents = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in texts]
            result = self.model.encode_texts(contents, task=spec.task, prompt_name="passage", dim=spec.dim,
                                             multivector=True)  # fmt: skip
            points += framework_points(result, [_payload(n, TEXT_CHUNK) for n in texts])
        if images:
            result = self.model.encode_images([_image_input(n) for n in images], task=spec.task, dim=spec.dim,
                                              multivector=True)  # fmt: skip
            points += framework_points(result, [_payload(n, PAGE_IMAGE) for n in images])
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
        where = _page_filter(filters, ids=node_ids)
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
            records = list(self.client.iter_records(_page_filter(filters, ids=node_ids)))
        if node_ids is not None:  # in the order asked for
            order = {point_id_for(i): n for n, i in enumerate(node_ids)}
            records.sort(key=lambda r: order[r.id])
        return [_to_node(r) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        from visdoc.store import QueryVectors

        if not query.query_str:
            raise ValueError("VisdocVectorStore embeds queries itself: pass a query string")
        with self._lock:
            spec = self.client.spec
            result = self.model.encode_texts([query.query_str], task=spec.task, prompt_name="query", dim=spec.dim,
                                             multivector=True)  # fmt: skip
            hits = self.client.search(
                QueryVectors(result.dense[0], result.multivector[0]),
                k=query.similarity_top_k,
                prefetch=kwargs.get("prefetch", self.prefetch),
                pooled_prefetch=kwargs.get("pooled_prefetch", self.pooled_prefetch),
                where=_page_filter(query.filters, query.doc_ids),
            )
        nodes = [_to_node(h) for h in hits]
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


def _payload(node: BaseNode, kind: str) -> dict[str, Any]:
    payload = framework_payload(node.node_id, node.get_content(), node.metadata, kind)  # type: ignore[arg-type]
    return payload | {REF_DOC_ID: node.ref_doc_id, NODE: _node_dict(node)}


def _image_input(node: ImageNode) -> Any:
    """What visdoc should embed for an image node: a page reference, a path, or decoded bytes."""
    if node.metadata.get(IMAGE_PATH):
        return node.metadata[IMAGE_PATH]
    if node.image_path:
        return node.image_path
    if node.image:
        return base64.b64decode(node.image)
    return None


def _node_dict(node: BaseNode) -> dict[str, Any]:
    """The node as LlamaIndex serialises it, without the text (kept once, in ``text``) or base64 image."""
    data = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    content = json.loads(data["_node_content"])
    content.pop("image", None)
    data["_node_content"] = json.dumps(content)
    return data


def _to_node(point: Any) -> BaseNode:
    """A node from a stored point; points written by ``visdoc ingest`` become Text/ImageNodes."""
    payload = point.payload
    if NODE in payload:
        node = metadata_dict_to_node(payload[NODE], text=payload.get(TEXT))
    else:
        doc_id, text, metadata = unpack(point)
        node = (
            ImageNode(id_=doc_id, text=text, metadata=metadata)
            if metadata.get(IMAGE_PATH)
            else TextNode(id_=doc_id, text=text, metadata=metadata)
        )
    reference = node.metadata.get(IMAGE_PATH)
    if isinstance(node, ImageNode) and not (node.image or node.image_path) and reference:
        node.image = page_data_uri(reference).split(",", 1)[1]  # rendered again for multimodal LLMs
    return node


def _page_filter(
    filters: MetadataFilters | None, doc_ids: list[str] | None = None, ids: list[str] | None = None
) -> PageFilter:
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
