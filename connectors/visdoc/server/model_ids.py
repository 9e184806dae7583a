"""The model ids the embedding server answers to, and the task each one picks.

OpenAI clients cannot send Jina's ``task``, so the task is part of the model id: ``GET /v1/models``
lists the short model name (``jina-embeddings-v4``: the checkpoint's name without owner or folder)
and ``<name>:<task>`` for each task the model serves (``jina-embeddings-v4:retrieval.query``,
``...:retrieval.passage``, ``...:text-matching``, ``...:code.query``, ``...:code.passage``). The
checkpoint's own name (``jinaai/jina-embeddings-v4``, or the folder it was loaded from) is accepted
as the short name too; a request may also name no model (visdoc's remote client does not).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from ..encoder.wire import API_TASKS, MODEL_TASK_SEPARATOR, TASKS
from .protocol import RequestError

OWNER = "visdoc"


def short_name(name: str) -> str:
    """The last part of a hub id or folder: ``jinaai/jina-embeddings-v4`` -> ``jina-embeddings-v4``."""
    return re.split(r"[\\/]", name.rstrip("/\\"))[-1] or name


class ModelIds:
    """The served model's ids (see the module's docstring)."""

    def __init__(self, name: str, adapters: Iterable[str]) -> None:
        self.base = short_name(name)
        self.names = {self.base, name}
        served = set(adapters)
        self.tasks = tuple(t for t in API_TASKS if TASKS[t][0] in served)
        self.created = int(time.time())

    @property
    def ids(self) -> list[str]:
        return [self.base, *(self.of(task) for task in self.tasks)]

    def of(self, api_task: str) -> str:
        """The id that names ``api_task`` (also the response's ``model``: the id actually used)."""
        return f"{self.base}{MODEL_TASK_SEPARATOR}{api_task}"

    def task(self, model: Any) -> str | None:
        """The API task a request's ``model`` picks (None: it names no task); raises
        :class:`RequestError` (404, ``model_not_found``) for an id this server does not serve."""
        if model is None or model == "":
            return None
        if not isinstance(model, str):
            raise RequestError(400, "'model' must be a string (a model id from GET /v1/models)", param="model")
        if model in self.names:
            return None
        name, _, task = model.rpartition(MODEL_TASK_SEPARATOR)
        if name in self.names and task in self.tasks:
            return task
        served = ", ".join(self.ids)
        raise RequestError(404, f"the model {model!r} does not exist on this server; it serves {served} (the part "
                                f"after {MODEL_TASK_SEPARATOR!r} picks the task)", param="model",
                           code="model_not_found")  # fmt: skip

    def entry(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{id}``: one model in OpenAI's shape (its canonical id)."""
        task = self.task(model_id)
        return {"id": self.of(task) if task else self.base, "object": "model", "created": self.created,
                "owned_by": OWNER}  # fmt: skip

    def listing(self) -> dict[str, Any]:
        """``GET /v1/models``: every id in OpenAI's shape."""
        return {"object": "list", "data": [self.entry(i) for i in self.ids]}
