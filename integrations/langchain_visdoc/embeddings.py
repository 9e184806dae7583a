"""LangChain embeddings backed by jina-embeddings-v4 (texts, queries and page images)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from visdoc.encoder import Encoder


class JinaV4Embeddings(Embeddings):
    """jina-embeddings-v4 for LangChain: passages, queries and images in one vector space.

    ``model`` is a hub id, a checkpoint folder or a loaded :class:`visdoc.JinaV4`; by name, the
    weights load on first use and are shared by every object naming the same checkpoint
    (default: ``$VISDOC_MODEL`` or ``jinaai/jina-embeddings-v4``). ``dim`` picks a Matryoshka
    size. With ``base_url`` the model is a visdoc embedding server (``visdoc serve``) instead of
    local weights. Documents get the passage prompt, queries the query prompt (``text-matching`` uses the
    same prompt for both). Async methods run in a worker thread; the model serialises forward
    passes, so concurrent calls queue instead of competing for the device.
    """

    def __init__(
        self,
        model: str | os.PathLike | Encoder | None = None,
        *,
        task: str = "retrieval",
        dim: int | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        from visdoc.encoder import model_argument

        self.model_name, self._model = model_argument(model)
        self.base_url, self.api_key = base_url, api_key
        self.task, self.dim, self.batch_size, self.device, self.dtype = task, dim, batch_size, device, dtype

    @property
    def model(self) -> Encoder:
        """The encoder (loaded on first access, shared between objects)."""
        if self._model is None:
            from visdoc.encoder import connect

            self._model = connect(self.model_name, base_url=self.base_url, api_key=self.api_key, device=self.device,
                                  dtype=self.dtype)  # fmt: skip
        return self._model

    def _texts(self, texts: Sequence[str], prompt_name: str, **options: Any) -> Any:
        return self.model.encode_texts(list(texts), task=self.task, prompt_name=prompt_name, dim=self.dim,
                                       batch_size=self.batch_size, **options)  # fmt: skip

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._texts(texts, "passage").dense.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._texts([text], "query").dense[0].tolist()

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed image files (paths); the keyword and shape Chroma and LanceDB call with."""
        return self.model.encode_images(list(uris), task=self.task, dim=self.dim,
                                        batch_size=self.batch_size).dense.tolist()  # fmt: skip

    def embed_images(self, uris: list[str]) -> list[list[float]]:
        """Alias of :meth:`embed_image`."""
        return self.embed_image(uris)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_image, uris)
