"""visdoc: jina-embeddings-v4 for visually rich documents, in the retrieval stacks people use.

Importing visdoc is cheap: torch, transformers and peft load only when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .encoder.contract import Encoder, EncodeResult
from .errors import (
    CheckpointError,
    ImageLoadError,
    UnknownPromptError,
    UnknownTaskError,
    UnsupportedDimError,
    VisdocError,
)

if TYPE_CHECKING:
    from .encoder.local import JinaV4

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "EncodeResult",
    "Encoder",
    "ImageLoadError",
    "JinaV4",
    "UnknownPromptError",
    "UnknownTaskError",
    "UnsupportedDimError",
    "VisdocError",
]


def __getattr__(name: str) -> Any:
    if name == "JinaV4":
        from .encoder.local import JinaV4

        return JinaV4
    raise AttributeError(f"module 'visdoc' has no attribute {name!r}")
