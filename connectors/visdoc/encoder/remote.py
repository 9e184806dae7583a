"""A remote model: the ``JinaV4`` encoding contract served by ``visdoc serve`` over HTTP.

``JinaV4.remote(base_url)`` returns a :class:`RemoteJinaV4`, which the CLI, the ingestion
pipeline, the stores and the LangChain/LlamaIndex classes use exactly like a local model, so
one GPU server can serve many RAG processes. Requests are retried on connection errors, 429 and
5xx with exponential backoff; 4xx answers raise :class:`RemoteError` with the server's message.
Texts are sent with ``truncate: true``, so a text over the context is cut as the local model cuts it.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checkpoint import PixelBudget
from ..errors import VisdocError
from ..images import ImageInput, load_rgb
from ..tokenization import PromptTokenizer
from .arguments import as_list, check_dim, check_outputs, check_prompt, check_task
from .contract import EncodeResult
from .wire import (
    CONTENT_SPAN,
    EMBEDDINGS_PATH,
    GRID,
    MODEL_PATH,
    TOKEN_VECTORS,
    TOKENIZER_PATH,
    TOKENS,
    ModelInfo,
    api_task,
    decode_vector,
)

REQUEST_ITEMS = 32  # inputs per HTTP request; the server batches across requests anyway
RETRY_STATUS = {429, 500, 502, 503, 504}


class RemoteError(VisdocError):
    """The embedding server refused a request or could not be reached."""


class RemoteJinaV4:
    """``encode_texts`` / ``encode_images`` against a visdoc embedding server."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0, retries: int = 4) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.retries = retries
        info = ModelInfo.from_json(self._call("GET", MODEL_PATH).json())
        self.info = info
        self.name = info.name
        self.dims = info.dims
        self.tasks = info.tasks
        self.multivector_dim = info.multivector_dim
        self._max_items = int(info.limits.get("max_items", REQUEST_ITEMS))
        self._max_body = int(info.limits.get("max_body_bytes", 32 << 20)) // 2  # headroom for JSON framing
        self.tokenizer = PromptTokenizer.from_config(info.tokenizer_config(), f"{self.base_url}{TOKENIZER_PATH}",
                                                     max_length=info.max_length,
                                                     text=self._call("GET", TOKENIZER_PATH).text)  # fmt: skip

    device = None  # the model computes on the server

    @property
    def pixels(self) -> PixelBudget:
        return self.info.pixels

    def __repr__(self) -> str:
        return f"RemoteJinaV4({self.base_url!r}, model={self.name!r})"

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        task: str = "retrieval",
        prompt_name: str = "query",
        dim: int | None = None,
        dense: bool = True,
        multivector: bool = False,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> EncodeResult:
        texts = as_list(texts, "texts")
        check_prompt(prompt_name)
        items = [{"text": t} for t in texts]
        return self._encode(items, api_task(task, prompt_name), task, dim, dense, multivector, batch_size, {})

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        task: str = "retrieval",
        dim: int | None = None,
        dense: bool = True,
        multivector: bool = False,
        max_pixels: int | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> EncodeResult:
        import base64

        images = as_list(images, "images")
        items = [{"image": base64.b64encode(_png_bytes(image, i)).decode()} for i, image in enumerate(images)]
        extra = {"max_pixels": max_pixels} if max_pixels is not None else {}
        return self._encode(items, api_task(task, "passage"), task, dim, dense, multivector, batch_size, extra)

    def _encode(self, items: list[dict], api_task: str, task: str, dim: int | None, dense: bool, multivector: bool,
                batch_size: int | None, extra: dict) -> EncodeResult:  # fmt: skip
        check_task(task, self.tasks)
        check_dim(dim, self.dims)
        check_outputs(dense, multivector)
        result = EncodeResult(multivector=[] if multivector else None)
        dense_rows = []
        step = min(batch_size or REQUEST_ITEMS, self._max_items)
        for chunk in _chunks(items, step, self._max_body):
            body = {"input": chunk, "task": api_task, "embedding_type": "base64", "truncate": True,
                    "return_multivector": multivector, **extra}  # fmt: skip
            if dim is not None:
                body["dimensions"] = dim
            for item in self._call("POST", EMBEDDINGS_PATH, json=body).json()["data"]:
                dense_rows.append(decode_vector(item["embedding"]))
                if result.multivector is not None:
                    result.multivector.append(decode_vector(item[TOKEN_VECTORS], self.multivector_dim))
                    result.tokens.append(int(item[TOKENS]))
                    result.content_spans.append(tuple(item[CONTENT_SPAN]) if item.get(CONTENT_SPAN) else None)
                    result.grids.append(tuple(item[GRID]) if item.get(GRID) else None)
        width = dim or self.dims[-1]
        if dense:
            result.dense = np.stack(dense_rows) if dense_rows else np.zeros((0, width), np.float32)
        return result

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise RemoteError(f"cannot reach the embedding server at {self.base_url}: {exc}") from None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUS or attempt == self.retries:
                    detail = _detail(response)
                    raise RemoteError(f"embedding server answered {response.status_code}: {detail}")
            time.sleep(min(8.0, 0.25 * 2**attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()


def _chunks(items: list[dict], max_items: int, max_bytes: int) -> list[list[dict]]:
    """Split inputs into requests of at most ``max_items`` and about ``max_bytes`` each."""
    chunks: list[list[dict]] = [[]]
    size = 0
    for item in items:
        cost = sum(len(v) for v in item.values())
        if chunks[-1] and (len(chunks[-1]) >= max_items or size + cost > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += cost
    return [c for c in chunks if c]


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text)) if isinstance(body, dict) else response.text


def _png_bytes(image: ImageInput, index: int) -> bytes:
    """Bytes to send: files and bytes as they are, other images (PIL, page references) as PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
        with open(image, "rb") as f:
            return f.read()
    buffer = io.BytesIO()
    load_rgb(image, index).save(buffer, format="PNG")
    return buffer.getvalue()
