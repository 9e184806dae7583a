"""The result type every encoder in visdoc returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EncodeResult:
    """Embeddings of ``n`` inputs, in input order.

    ``dense`` is a float32 ``[n, dim]`` array of L2-normalised vectors (or None when not asked
    for); ``multivector`` holds one float32 ``[tokens_i, 128]`` array of L2-normalised token
    vectors per input (or None).
    """

    dense: np.ndarray | None = None
    multivector: list[np.ndarray] | None = None

    def __len__(self) -> int:
        if self.dense is not None:
            return len(self.dense)
        return len(self.multivector or [])
