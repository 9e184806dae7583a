"""LlamaIndex embedding model for jina-embeddings-v4 (texts, queries and images), via visdoc."""

from __future__ import annotations

import asyncio
import io
import os
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType

from visdoc.checkpoint import DEFAULT_MODEL

from .memo import arm, dense_through, image_key, memo_of, text_key

if TYPE_CHECKING:
    from visdoc.encoder import Encoder

__all__ = ["JinaV4Embedding"]


class JinaV4Embedding(MultiModalEmbedding):
    """jina-embeddings-v4 as a LlamaIndex ``MultiModalEmbedding``.

    Batches are real: one forward pass per ``embed_batch_size`` texts or images (the model
    sorts and packs them by length). Queries get the query prompt, texts the passage prompt.
    Async methods run in a worker thread, so the event loop is never blocked; the model
    serialises forward passes. ``model`` may be a hub id, a folder or a loaded ``visdoc.JinaV4``
    (weights are shared between objects naming the same checkpoint).

    Next to a ``VisdocVectorStore`` on the same encoder, passages and images are encoded once:
    the forward pass that gives LlamaIndex its dense vector also gives the store its multivector
    (see :mod:`llama_index.embeddings.visdoc.memo`).
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="hub id or checkpoint folder")
    task: str = Field(default="retrieval", description="task adapter: retrieval, text-matching or code")
    dim: int | None = Field(default=None, description="Matryoshka size of the dense vector")
    device: str | None = Field(default=None)
    dtype: str | None = Field(default=None)
    embed_batch_size: int = Field(default=32, gt=0)
    base_url: str | None = Field(default=None, description="a visdoc embedding server instead of local weights")
    api_key: str | None = Field(default=None, description="bearer token of the embedding server")
    _model: Any = PrivateAttr(default=None)
    _arms: bool = PrivateAttr(default=False)  # a store's own embedding model: arm the encoder it loads

    def __init__(self, model: str | os.PathLike | Encoder | None = None, **kwargs: Any) -> None:
        from visdoc.encoder import model_argument

        name, loaded = model_argument(model)
        kwargs.setdefault("model_name", name)
        super().__init__(**kwargs)
        self._model = loaded

    @classmethod
    def class_name(cls) -> str:
        return "JinaV4Embedding"

    @property
    def model(self) -> Encoder:
        """The encoder, loaded on first use."""
        if self._model is None:
            from visdoc.encoder import connect

            self._model = connect(self.model_name, base_url=self.base_url, api_key=self.api_key, device=self.device,
                                  dtype=self.dtype)  # fmt: skip
            if self._arms:
                arm(self._model)
        return self._model

    def _texts(self, texts: list[str], prompt_name: str) -> list[Embedding]:
        def encode(items: list[str], multivector: bool = True) -> Any:
            return self.model.encode_texts(items, task=self.task, prompt_name=prompt_name, dim=self.dim,
                                           multivector=multivector)  # fmt: skip

        memo = memo_of(self.model) if prompt_name == "passage" else None  # the store embeds queries itself
        if memo is None:
            return encode(texts, multivector=False).dense.tolist()
        dim = self.dim or self.model.dims[-1]
        return dense_through(memo, [text_key(self.task, prompt_name, dim, t) for t in texts], texts, encode)

    def _images(self, images: list[ImageType]) -> list[Embedding]:
        def encode(items: list[Any], multivector: bool = True) -> Any:
            return self.model.encode_images(items, task=self.task, dim=self.dim, multivector=multivector)

        inputs = [item.getvalue() if isinstance(item, io.BytesIO) else item for item in images]
        memo = memo_of(self.model)
        if memo is None:
            return encode(inputs, multivector=False).dense.tolist()
        dim = self.dim or self.model.dims[-1]
        return dense_through(memo, [image_key(self.task, dim, i) for i in inputs], inputs, encode)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._texts([query], "query")[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._texts([text], "passage")[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._texts(texts, "passage")

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._images([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._images(img_file_paths)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)
