"""How an embedding goes into a response: the embedding types of Jina's API (``embedding_type``).

``float``: a JSON list of numbers. ``base64``: base64 of the little-endian float32 bytes (what the
OpenAI SDK asks for and decodes). ``ubinary``: the sign bits (1 where a value is > 0), packed 8
per byte, most significant bit first, as a list of uint8 (``np.unpackbits`` gives the bits back);
``binary``: the same bytes as int8 (``uint8 - 128``; add 128 before unpacking). A vector whose size
is not a multiple of 8 is padded with 0 bits to a whole byte. With ``return_multivector`` the token
vectors take the same type: one packed row per token for the binary types, a list of rows for
``float``, and for ``base64`` the flat float32 bytes of the whole ``[tokens, 128]`` matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..encoder import wire
from ..encoder.contract import EncodedItem

EMBEDDING_TYPES = ("float", "base64", "binary", "ubinary")


def encode_embedding(vector: np.ndarray, embedding_type: str) -> Any:
    """A vector (or a token matrix, row by row) as ``embedding_type`` says (see the module's docstring)."""
    if embedding_type in ("float", "base64"):
        return wire.encode_vector(vector, embedding_type == "base64")
    bits = np.packbits(np.asarray(vector) > 0, axis=-1)
    if embedding_type == "binary":
        bits = (bits.astype(np.int16) - 128).astype(np.int8)
    return bits.tolist()


def response_item(index: int, encoded: EncodedItem, embedding_type: str, multivector: bool) -> dict[str, Any]:
    """One ``data`` item: the dense embedding, and with ``multivector`` the token vectors and their facts."""
    item = {"object": "embedding", "index": index, "embedding": encode_embedding(encoded.dense, embedding_type)}
    if multivector:
        item[wire.TOKEN_VECTORS] = encode_embedding(encoded.multivector, embedding_type)
        item[wire.TOKENS] = encoded.tokens
        item[wire.CONTENT_SPAN] = list(encoded.content_span) if encoded.content_span else None
        if encoded.grid is not None:
            item[wire.GRID] = list(encoded.grid)
    return item
