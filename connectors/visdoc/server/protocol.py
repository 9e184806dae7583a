"""The embeddings request/response format: Jina's API shape, with OpenAI's shape for plain text.

Request: ``{"model", "input": str | [str | {"text": ...} | {"image": base64 | data URI | URL}],
"task": "retrieval.query" | "retrieval.passage" | "text-matching" | "code.query" |
"code.passage", "dimensions", "return_multivector", "embedding_type" | "encoding_format":
"float" | "base64"}``. visdoc extensions: ``max_pixels`` (per-request pixel budget) and, with
``return_multivector``, each item carries both ``embedding`` (dense) and ``embeddings`` (tokens).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from ..encoder.wire import DEFAULT_TASK, TASKS
from .validation import lone_surrogate


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP code (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything above is answered with a 4xx and a reason."""

    max_body_bytes: int = 64 << 20
    max_items: int = 512
    max_text_chars: int = 100_000
    max_image_pixels: int = 50_000_000
    max_queue_items: int = 4096
    max_queue_bytes: int = 1 << 30
    allow_image_urls: bool = False


@dataclass
class EmbeddingRequest:
    texts: list[tuple[int, str]] = field(default_factory=list)  # (position in input, text)
    images: list[tuple[int, Any]] = field(default_factory=list)  # (position in input, bytes or URL)
    task: str = "retrieval"
    prompt: str = "passage"
    dim: int | None = None
    multivector: bool = False
    base64: bool = False
    max_pixels: int | None = None

    @property
    def count(self) -> int:
        return len(self.texts) + len(self.images)


def parse_request(body: Any, limits: Limits) -> EmbeddingRequest:
    """Validate a decoded JSON body; raises :class:`RequestError` naming the offending item."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    items = body.get("input")
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, list) or not items:
        raise RequestError(400, "'input' must be a string, an object or a non-empty list of them")
    if len(items) > limits.max_items:
        raise RequestError(413, f"{len(items)} inputs in one request; the limit is {limits.max_items}")
    task = body.get("task") or DEFAULT_TASK
    if not isinstance(task, str) or task not in TASKS:
        raise RequestError(400, f"unknown task {task!r}; use one of {sorted(TASKS)}")
    request = EmbeddingRequest(task=TASKS[task][0], prompt=TASKS[task][1])
    request.dim = _optional_int(body, "dimensions")
    request.max_pixels = _optional_int(body, "max_pixels")
    request.multivector = bool(body.get("return_multivector", False))
    kind = body.get("embedding_type") or body.get("encoding_format") or "float"
    if not isinstance(kind, str) or kind not in ("float", "base64"):
        raise RequestError(400, f"embedding_type {kind!r} is not supported; use 'float' or 'base64'")
    request.base64 = kind == "base64"
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or len(item.keys() & {"text", "image"}) != 1:
            raise RequestError(400, f"input {index}: expected a string, {{'text': ...}} or {{'image': ...}}")
        if "text" in item:
            text = item["text"]
            if not isinstance(text, str):
                raise RequestError(400, f"input {index}: 'text' must be a string")
            if len(text) > limits.max_text_chars:
                raise RequestError(413, f"input {index}: {len(text)} characters; the limit is {limits.max_text_chars}")
            problem = lone_surrogate(text)  # the tokenizer takes UTF-8 text only: refuse it here, not with a 500
            if problem:
                raise RequestError(400, f"input {index}: the text is not valid Unicode ({problem})")
            request.texts.append((index, text))
        else:
            request.images.append((index, _image(item["image"], index, limits)))
    return request


def _optional_int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise RequestError(400, f"'{key}' must be an integer")
    return value


def _image(value: Any, index: int, limits: Limits) -> Any:
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"input {index}: 'image' must be a base64 string, a data URI or a URL")
    if value.startswith(("http://", "https://")):
        if not limits.allow_image_urls:
            raise RequestError(400, f"input {index}: image URLs are not fetched by this server; send base64 data")
        problem = lone_surrogate(value)
        if problem:
            raise RequestError(400, f"input {index}: the image URL is not valid Unicode ({problem})")
        return value
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"input {index}: 'image' is not valid base64") from None


def bearer_matches(authorization: str, api_key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <api_key>`` (constant-time compare)."""
    import secrets

    return secrets.compare_digest(authorization.encode(), f"Bearer {api_key}".encode())
