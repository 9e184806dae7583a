"""The embeddings request (``POST /v1/embeddings``): Jina's embeddings API and OpenAI's, field by field.

- ``input``: a string, or a list of strings and of objects ``{"text": ...}`` or ``{"image": ...}``
  (base64, a data URI, or an http(s) URL where the server fetches URLs); ``{"bytes": base64}`` and
  ``{"url": ...}`` (what LlamaIndex's Jina client sends) are images too. OpenAI's token-id arrays
  are refused: they are ids of another tokenizer. Jina's ``{"pdf": ...}`` is refused.
- ``model``: optional; an id of ``GET /v1/models``, where ``<name>:<task>`` picks the task
  (:mod:`visdoc.server.model_ids`); an unknown id is a 404 (``model_not_found``).
- ``task``: ``retrieval.query``, ``retrieval.passage``, ``text-matching``, ``code.query``,
  ``code.passage`` (``retrieval``/``code``: their passage). One that contradicts the model id is a
  400. A request naming no task anywhere gets ``retrieval.passage``: calls without one are bulk
  calls that embed documents to index (``embed_documents``, ``embeddings.create`` over a corpus);
  the response's ``model`` names the id used (``jina-embeddings-v4:retrieval.passage``).
- ``dimensions``: a Matryoshka size of the model.
- ``embedding_type`` (Jina; ``encoding_type`` is its older name): ``float`` (default), ``base64``,
  ``binary``, ``ubinary`` (:mod:`visdoc.server.encodings`); ``encoding_format`` (OpenAI): ``float``
  or ``base64``. Two of them that disagree are a 400; so is a list of types.
- ``truncate`` (default false, as Jina's API): a text whose tokens (prompt prefix included, as the
  model sees it) exceed the model's context is a 400 naming it; true cuts its tail, as the model
  does. Images are never truncated.
- ``normalized`` (default true: the vectors are L2-normalised, the model's own output; Jina's schema
  has the field for its text models, not for v4): false is a 400.
- ``late_chunking`` (default false): true embeds the request's texts in one forward pass over their
  concatenation (the prompt once) and mean-pools each over its own tokens (texts only). The texts
  together must fit the context: ``truncate`` does not cut a joint sequence (that would drop whole
  inputs), so a longer one is a 400 whatever it says.
- ``return_multivector`` (default false) and ``max_pixels``: visdoc's extensions (:mod:`visdoc.encoder.wire`).
- ``user`` (OpenAI): accepted; it changes nothing.

Any other field is refused with a 400 naming it (``code`` ``unknown_parameter``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..encoder.wire import DEFAULT_TASK, TASKS, api_task
from ..tokenization import PROMPT_PREFIXES
from .encodings import EMBEDDING_TYPES
from .validation import lone_surrogate

if TYPE_CHECKING:
    from ..tokenization import PromptTokenizer
    from .model_ids import ModelIds

FIELDS = ("model", "input", "task", "dimensions", "embedding_type", "encoding_type", "encoding_format", "truncate",
          "normalized", "late_chunking", "return_multivector", "max_pixels", "user")  # fmt: skip
TYPE_FIELDS = {"embedding_type": EMBEDDING_TYPES, "encoding_type": EMBEDDING_TYPES,
               "encoding_format": ("float", "base64")}  # fmt: skip
IMAGE_KEYS = ("image", "bytes", "url")
TOKEN_IDS = ("'input' holds token ids (arrays of integers, OpenAI's pre-tokenised form): they are ids of another "
             "tokenizer, which this server cannot decode; send the texts as strings (with LangChain: "
             "OpenAIEmbeddings(..., check_embedding_ctx_length=False))")  # fmt: skip


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP code (4xx), ``param`` the field at fault."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


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
    api_task: str = DEFAULT_TASK
    task: str = "retrieval"
    prompt: str = "passage"
    dim: int | None = None
    multivector: bool = False
    embedding_type: str = "float"
    truncate: bool = False
    late_chunking: bool = False
    max_pixels: int | None = None

    @property
    def count(self) -> int:
        return len(self.texts) + len(self.images)


def parse_request(body: Any, limits: Limits, models: ModelIds) -> EmbeddingRequest:
    """Validate a decoded JSON body; raises :class:`RequestError` naming the offending field or item."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    unknown = [key for key in body if key not in FIELDS]
    if unknown:
        raise RequestError(400, f"unknown field{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}: this "
                                f"server reads {', '.join(FIELDS)}", param=unknown[0],
                           code="unknown_parameter")  # fmt: skip
    items = _inputs(body, limits)
    request = EmbeddingRequest(api_task=_task(body, models))
    request.task, request.prompt = TASKS[request.api_task]
    request.dim = _optional_int(body, "dimensions")
    request.max_pixels = _optional_int(body, "max_pixels")
    request.multivector = _flag(body, "return_multivector", False)
    request.truncate = _flag(body, "truncate", False)
    request.late_chunking = _flag(body, "late_chunking", False)
    if not _flag(body, "normalized", True):
        raise RequestError(400, "normalized=false is not supported: this server returns the model's L2-normalised "
                                "vectors only; drop the field or send true", param="normalized",
                           code="unsupported_value")  # fmt: skip
    request.embedding_type = _embedding_type(body)
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise RequestError(400, "'user' must be a string", param="user")
    for index, item in enumerate(items):
        _add_input(request, index, item, limits)
    if request.late_chunking and request.images:
        raise RequestError(400, f"late_chunking embeds texts only; input {request.images[0][0]} is an image",
                           param="late_chunking")  # fmt: skip
    return request


def check_lengths(tokenizer: PromptTokenizer, request: EmbeddingRequest) -> None:
    """With ``truncate=false``: refuse (400) a text whose tokens, prompt prefix included, exceed the
    model's context, naming the input, its token count and the limit."""
    prefix, limit = PROMPT_PREFIXES[request.prompt], tokenizer.max_length
    for index, text in request.texts:
        whole = prefix + text
        if 3 * len(whole.encode()) <= limit:  # a token is at least one byte, even after Unicode normalisation
            continue
        count = len(tokenizer.offsets(whole))
        if count > limit:
            raise RequestError(400, f"input {index}: {count} tokens (with the prompt prefix) exceed the model's "
                                    f"context of {limit} tokens; send a shorter text, or truncate=true to cut its "
                                    "tail", param="input", code="context_length_exceeded")  # fmt: skip


def _inputs(body: dict, limits: Limits) -> list:
    items = body.get("input")
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, list) or not items:
        raise RequestError(400, "'input' must be a string, an object or a non-empty list of them", param="input")
    if any(_is_int(x) or (isinstance(x, list) and x and all(map(_is_int, x))) for x in items):
        raise RequestError(400, TOKEN_IDS, param="input", code="unsupported_value")
    if len(items) > limits.max_items:
        raise RequestError(413, f"{len(items)} inputs in one request; the limit is {limits.max_items}", param="input")
    return items


def _task(body: dict, models: ModelIds) -> str:
    """The API task: the one the model id picks, or ``task``, or :data:`DEFAULT_TASK`."""
    picked = models.task(body.get("model"))
    task = body.get("task")
    if task is None or task == "":
        return picked or DEFAULT_TASK
    if not isinstance(task, str) or task not in TASKS:
        raise RequestError(400, f"unknown task {task!r}; use one of {sorted(TASKS)}", param="task")
    if picked and TASKS[picked] != TASKS[task]:
        raise RequestError(400, f"task {task!r} contradicts model {body['model']!r}, which picks {picked!r}; send "
                                "one of them, or the same task in both", param="task")  # fmt: skip
    return api_task(*TASKS[task])


def _embedding_type(body: dict) -> str:
    given = [(key, body[key]) for key in TYPE_FIELDS if body.get(key) is not None]
    for key, value in given:
        allowed = TYPE_FIELDS[key]
        if isinstance(value, list):
            raise RequestError(400, f"{key} as a list (several types at once) is not supported; send one of "
                                    f"{list(allowed)}", param=key)  # fmt: skip
        if not isinstance(value, str) or value not in allowed:
            raise RequestError(400, f"{key} {value!r} is not supported; use one of {list(allowed)}", param=key)
    for key, value in given[1:]:
        if value != given[0][1]:
            raise RequestError(400, f"{given[0][0]}={given[0][1]!r} and {key}={value!r} disagree; send one of them",
                               param=key)  # fmt: skip
    return given[0][1] if given else "float"


def _add_input(request: EmbeddingRequest, index: int, item: Any, limits: Limits) -> None:
    if isinstance(item, str):
        item = {"text": item}
    if isinstance(item, dict) and "pdf" in item:
        raise RequestError(400, f"input {index}: 'pdf' inputs are not supported; send the pages as images "
                                "(visdoc ingest renders PDFs)", param="input")  # fmt: skip
    if not isinstance(item, dict) or len(item) != 1 or not item.keys() & {"text", *IMAGE_KEYS}:
        got = f"an object with keys {sorted(item)}" if isinstance(item, dict) else f"a {type(item).__name__}"
        raise RequestError(400, f"input {index}: expected a string, {{'text': ...}} or {{'image': ...}} (or "
                                f"{{'bytes': ...}}, {{'url': ...}}); got {got}", param="input")  # fmt: skip
    if "text" not in item:
        request.images.append((index, _image(next(iter(item.values())), index, limits)))
        return
    text = item["text"]
    if not isinstance(text, str):
        raise RequestError(400, f"input {index}: 'text' must be a string", param="input")
    if len(text) > limits.max_text_chars:
        raise RequestError(413, f"input {index}: {len(text)} characters; the limit is {limits.max_text_chars}",
                           param="input")  # fmt: skip
    problem = lone_surrogate(text)  # the tokenizer takes UTF-8 text only: refuse it here, not with a 500
    if problem:
        raise RequestError(400, f"input {index}: the text is not valid Unicode ({problem})", param="input")
    request.texts.append((index, text))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is not None and not _is_int(value):
        raise RequestError(400, f"'{key}' must be an integer", param=key)
    return value


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f"'{key}' must be true or false", param=key)
    return value


def _image(value: Any, index: int, limits: Limits) -> Any:
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"input {index}: an image must be a base64 string, a data URI or a URL", param="input")
    if value.startswith(("http://", "https://")):
        if not limits.allow_image_urls:
            raise RequestError(400, f"input {index}: image URLs are not fetched by this server; send base64 data",
                               param="input")  # fmt: skip
        problem = lone_surrogate(value)
        if problem:
            raise RequestError(400, f"input {index}: the image URL is not valid Unicode ({problem})", param="input")
        return value
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"input {index}: the image is not valid base64", param="input") from None


def bearer_matches(authorization: str, api_key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <api_key>`` (constant-time compare)."""
    import secrets

    return secrets.compare_digest(authorization.encode(), f"Bearer {api_key}".encode())
