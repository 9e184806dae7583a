"""A remote model: the ``JinaV4`` encoding contract served by ``visdoc serve`` over HTTP.

``JinaV4.remote(base_url)`` returns a :class:`RemoteJinaV4`, which the CLI, the ingestion
pipeline, the stores and the LangChain/LlamaIndex classes use exactly like a local model, so
one GPU server can serve many RAG processes. Requests are retried on connection errors, 429 and
5xx with exponential backoff; 4xx answers raise :class:`RemoteError` with the server's message.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import check_dim, check_outputs, check_prompt, check_task
from .checkpoint import PixelBudget
from .errors import VisdocError
from .images import ImageInput, load_rgb
from .outputs import EncodeResult
from .tokenization import PromptTokenizer

REQUEST_ITEMS = 32  # inputs per HTTP request; the server batches across requests anyway
RETRY_STATUS = {429, 500, 502, 503, 504}


class RemoteError(VisdocError):
    """The embedding server refused a request or could not be reached."""


@dataclass(frozen=True)
class RemoteCheckpoint:
    """The facts about the served checkpoint that clients need (pixel budget, sizes, tasks)."""

    pixels: PixelBudget
    matryoshka_dims: tuple[int, ...]
    task_names: tuple[str, ...]


class RemoteJinaV4:
    """``encode_texts`` / ``encode_images`` against a visdoc embedding server."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0, retries: int = 4) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.retries = retries
        info = self._call("GET", "/v1/model").json()
        self.name = info["name"]
        self.dims = tuple(info["dims"])
        self.tasks = tuple(info["tasks"])
        self.multivector_dim = int(info["multivector_dim"])
        limits = info.get("limits", {})
        self._max_items = int(limits.get("max_items", REQUEST_ITEMS))
        self._max_body = int(limits.get("max_body_bytes", 32 << 20)) // 2  # headroom for JSON framing
        pixels = info["pixels"] | {k: tuple(info["pixels"][k]) for k in ("image_mean", "image_std")}
        self.checkpoint = RemoteCheckpoint(PixelBudget(**pixels), self.dims, self.tasks)
        tokenizer_json = self._call("GET", "/v1/tokenizer.json").text
        ids = info["token_ids"]
        self.tokenizer = PromptTokenizer(
            f"{self.base_url}/v1/tokenizer.json",
            image_token_id=ids["image"],
            vision_start_id=ids["vision_start"],
            vision_end_id=ids["vision_end"],
            max_length=info["max_length"],
            json_text=tokenizer_json,
        )

    device = None  # the model computes on the server

    @property
    def pixels(self) -> PixelBudget:
        return self.checkpoint.pixels

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
        if isinstance(texts, str):
            raise TypeError("texts must be a list of inputs, not a single str; wrap it in [...]")
        check_prompt(prompt_name)
        api_task = task if task == "text-matching" else f"{task}.{prompt_name}"
        return self._encode([{"text": t} for t in texts], api_task, task, dim, dense, multivector, batch_size, {})

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

        items = [{"image": base64.b64encode(_png_bytes(image, i)).decode()} for i, image in enumerate(images)]
        extra = {"max_pixels": max_pixels} if max_pixels is not None else {}
        return self._encode(items, f"{task}.passage" if task != "text-matching" else task, task, dim, dense,
                            multivector, batch_size, extra)  # fmt: skip

    def _encode(self, items: list[dict], api_task: str, task: str, dim: int | None, dense: bool, multivector: bool,
                batch_size: int | None, extra: dict) -> EncodeResult:  # fmt: skip
        from .server.protocol import decode_vector

        check_task(task, self.tasks)
        check_dim(dim, self.dims)
        check_outputs(dense, multivector)
        dense_rows, tokens = [], []
        step = min(batch_size or REQUEST_ITEMS, self._max_items)
        for chunk in _chunks(items, step, self._max_body):
            body = {"input": chunk, "task": api_task, "embedding_type": "base64",
                    "return_multivector": multivector, **extra}  # fmt: skip
            if dim is not None:
                body["dimensions"] = dim
            for item in self._call("POST", "/v1/embeddings", json=body).json()["data"]:
                dense_rows.append(decode_vector(item["embedding"]))
                if multivector:
                    tokens.append(decode_vector(item["embeddings"], self.multivector_dim))
        width = dim or self.dims[-1]
        dense_out = np.stack(dense_rows) if dense_rows else np.zeros((0, width), np.float32)
        return EncodeResult(dense_out if dense else None, tokens if multivector else None)

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
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


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
