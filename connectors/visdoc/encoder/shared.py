"""Which encoder a framework wrapper gets: the shared local model of a checkpoint, or a server.

LangChain and LlamaIndex objects name a model (a hub id, a folder, or a loaded encoder); by name,
the weights load on first use (:meth:`JinaV4.shared`: one copy per checkpoint in a process).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..checkpoint import DEFAULT_MODEL, MODEL_ENV

if TYPE_CHECKING:
    from .contract import Encoder


def model_argument(model: str | os.PathLike | Encoder | None) -> tuple[str, Encoder | None]:
    """``(name, loaded encoder or None)`` for a hub id, a folder, a loaded encoder, or None
    (``$VISDOC_MODEL`` or ``jinaai/jina-embeddings-v4``)."""
    if model is None:
        return os.environ.get(MODEL_ENV, DEFAULT_MODEL), None
    if isinstance(model, (str, os.PathLike)):
        return str(model), None
    return model.name, model


def connect(
    name: str, *, base_url: str | None = None, api_key: str | None = None, device: str | None = None,
    dtype: str | None = None,
) -> Encoder:  # fmt: skip
    """The encoder a wrapper should use: a visdoc server when ``base_url`` is set, else the
    process-wide shared local model ``name``."""
    if base_url:
        from .remote import RemoteJinaV4

        return RemoteJinaV4(base_url, api_key=api_key)
    from .local import JinaV4

    return JinaV4.shared(name, device=device, dtype=dtype)
