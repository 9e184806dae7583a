"""The HTTP contract of a visdoc embedding server, imported by both the server and its client.

``POST /v1/embeddings`` speaks Jina's embeddings API and OpenAI's (the server's
:mod:`visdoc.server.protocol` lists every field and its meaning). visdoc adds ``return_multivector``
(each item then also carries ``embeddings``: its token vectors, and the facts about its sequence:
``tokens``, ``content_span``, and ``grid`` for images) and ``max_pixels``. ``GET /v1/models`` lists
the model ids in OpenAI's shape: the short model name and one id per task
(``jina-embeddings-v4:retrieval.query``), so a client that cannot send ``task`` picks it by model.
``GET /v1/model`` describes the served model (:class:`ModelInfo`) and ``GET /v1/tokenizer.json``
its tokenizer, so a client can cut texts into chunks and label query tokens as the model does.
Errors are ``{"error": {"message", "type", "param", "code"}, "detail": message}``.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checkpoint import PixelBudget

if TYPE_CHECKING:
    from .contract import Encoder

MODEL_PATH = "/v1/model"
TOKENIZER_PATH = "/v1/tokenizer.json"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"

TASKS = {  # API task -> (adapter, prompt)
    "retrieval.query": ("retrieval", "query"),
    "retrieval.passage": ("retrieval", "passage"),
    "retrieval": ("retrieval", "passage"),
    "text-matching": ("text-matching", "query"),
    "code.query": ("code", "query"),
    "code.passage": ("code", "passage"),
    "code": ("code", "passage"),
}
API_TASKS = ("retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage")  # documented
DEFAULT_TASK = "retrieval.passage"  # no task anywhere in a request: bulk calls embed documents to index
MODEL_TASK_SEPARATOR = ":"  # model id "<model>:<task>" picks the task
SYMMETRIC_TASKS = ("text-matching",)

# per-item response fields added with return_multivector
TOKEN_VECTORS = "embeddings"
TOKENS = "tokens"
CONTENT_SPAN = "content_span"
GRID = "grid"


def api_task(task: str, prompt_name: str) -> str:
    """The API's task name for an adapter and a prompt (``retrieval`` + ``query`` -> ``retrieval.query``)."""
    return task if task in SYMMETRIC_TASKS else f"{task}.{prompt_name}"


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to behave like the served model (``GET /v1/model``)."""

    name: str
    tasks: tuple[str, ...]
    dims: tuple[int, ...]
    multivector_dim: int
    max_length: int
    pixels: PixelBudget
    token_ids: dict[str, int]  # image, vision_start, vision_end
    limits: dict[str, Any]

    @classmethod
    def of(cls, encoder: Encoder, limits: dict[str, Any]) -> ModelInfo:
        t = encoder.tokenizer
        ids = {"image": t.image_token_id, "vision_start": t.vision_start_id, "vision_end": t.vision_end_id}
        return cls(encoder.name, tuple(encoder.tasks), tuple(encoder.dims), encoder.multivector_dim, t.max_length,
                   encoder.pixels, ids, dict(limits))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        pixels = data["pixels"] | {k: tuple(data["pixels"][k]) for k in ("image_mean", "image_std")}
        return cls(data["name"], tuple(data["tasks"]), tuple(data["dims"]), int(data["multivector_dim"]),
                   int(data["max_length"]), PixelBudget(**pixels), dict(data["token_ids"]),
                   dict(data.get("limits", {})))  # fmt: skip

    def tokenizer_config(self) -> dict[str, int]:
        """The token ids as a checkpoint's ``config.json`` names them."""
        ids = self.token_ids
        return {"image_token_id": ids["image"], "vision_start_token_id": ids["vision_start"],
                "vision_end_token_id": ids["vision_end"]}  # fmt: skip


def encode_vector(vector: np.ndarray, as_base64: bool) -> Any:
    """A float32 vector (or token matrix) as a JSON list, or as base64 of little-endian float32."""
    array = np.ascontiguousarray(vector, dtype="<f4")
    return base64.b64encode(array.tobytes()).decode() if as_base64 else array.tolist()


def decode_vector(value: Any, width: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_vector` (``width`` reshapes a flat token matrix)."""
    array = np.frombuffer(base64.b64decode(value), dtype="<f4") if isinstance(value, str) else np.asarray(value, "<f4")
    array = array.astype(np.float32)
    return array.reshape(-1, width) if width else array
