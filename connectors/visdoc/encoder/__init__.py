"""The encoders: jina-embeddings-v4 loaded here (:class:`JinaV4`) or served by ``visdoc serve``
(:class:`RemoteJinaV4`), both implementing the :class:`Encoder` contract.

Importing this package is cheap: torch loads only when a local model does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .contract import EncodedItem, Encoder, EncodeResult

if TYPE_CHECKING:
    from .local import JinaV4
    from .remote import RemoteError, RemoteJinaV4
    from .shared import connect, model_argument

__all__ = ["EncodeResult", "EncodedItem", "Encoder", "JinaV4", "RemoteError", "RemoteJinaV4", "connect",
           "model_argument"]  # fmt: skip

_LAZY = {"JinaV4": ".local", "connect": ".shared", "model_argument": ".shared", "RemoteJinaV4": ".remote",
         "RemoteError": ".remote"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
