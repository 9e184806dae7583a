"""The hand-over of encodings between ``JinaV4Embedding`` and ``VisdocVectorStore``, so that a node
goes through the model once.

LlamaIndex embeds every node (one dense vector) before it hands the node to the vector store, and
the visdoc store needs the multivector of the same forward pass too. Once a store uses an encoder
(:func:`arm`, :func:`arm_name`), ``JinaV4Embedding`` asks that encoder for both outputs and leaves
the full encodings here; the store takes a node's encoding from here instead of running the model
again. The other way round, an image the store had to encode itself while the index had embedded
the node's text (the text store of ``MultiModalVectorStoreIndex``) is left here for the image
embedding the index asks for next. Encoders no store uses have no memo: plain ``JinaV4Embedding``
users pay nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from visdoc.encoder import EncodedItem, Encoder, EncodeResult

__all__ = ["MAX_ENTRIES", "Memo", "arm", "arm_name", "dense_through", "image_key", "memo_of", "text_key"]

MAX_ENTRIES = 2048  # LlamaIndex's default insert batch: a whole batch is embedded before the store adds it
MAX_BYTES = 512 << 20  # and at most this much of vectors (2048 full-size pages would take ~0.8 GB)
Key = tuple[str, str, str, int, str]  # (kind, task, prompt, dim, content: the text or the image's identity)


class Memo:
    """Recent full encodings of one encoder (dense + multivector + token facts), oldest dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Key, tuple[EncodedItem, bool]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the vectors held."""
        return self._bytes

    def put(self, key: Key, item: EncodedItem, *, for_embedding: bool = False) -> None:
        """Remember ``item``; ``for_embedding`` marks an encoding the store made that the embedding
        model may hand out (its own encodings it never reads back: it is not a cache)."""
        with self._lock:
            self._forget(key)
            self._items[key] = (item, for_embedding)
            self._bytes += _size(item)
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                self._forget(next(iter(self._items)))

    def for_embedding(self, key: Key) -> EncodedItem | None:
        """An encoding the store left for the embedding model (kept for the store to take)."""
        with self._lock:
            found = self._items.get(key)
        return found[0] if found is not None and found[1] else None

    def take(self, key: Key, embedding: list[float]) -> EncodedItem | None:
        """Remove and return the encoding under ``key`` if its dense vector is ``embedding`` (within
        1e-6); an entry that does not match stays (it is not this node's) and None is returned."""
        given = np.asarray(embedding, dtype=np.float32)
        with self._lock:
            found = self._items.get(key)
            dense = None if found is None else found[0].dense
            if dense is None or dense.shape != given.shape or not np.allclose(dense, given, rtol=0, atol=1e-6):
                return None
            self._forget(key)
        return found[0]  # type: ignore[index]

    def _forget(self, key: Key) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self._bytes -= _size(found[0])


def _size(item: EncodedItem) -> int:
    return sum(0 if array is None else array.nbytes for array in (item.dense, item.multivector))


_MEMOS: weakref.WeakKeyDictionary[Any, Memo] = weakref.WeakKeyDictionary()
_ARMED_NAMES: set[str] = set()
_LOCK = threading.RLock()


def arm(encoder: Encoder) -> Memo | None:
    """The memo of ``encoder``, created on first call (None for an encoder that cannot be weakly referenced)."""
    with _LOCK:
        try:
            memo = _MEMOS.get(encoder)
            if memo is None:
                memo = _MEMOS[encoder] = Memo()
        except TypeError:
            return None
        return memo


def arm_name(name: str) -> None:
    """Arm the local models of checkpoint ``name`` before one is loaded (a store that names its model
    loads it lazily, often after the index has started embedding with the same shared model)."""
    with _LOCK:
        _ARMED_NAMES.add(name)


def memo_of(encoder: Encoder) -> Memo | None:
    """The memo of ``encoder`` if a store uses it (or a local model of a checkpoint a store names), else None."""
    with _LOCK:
        try:
            memo = _MEMOS.get(encoder)
        except TypeError:
            return None
        if memo is None and encoder.device is not None and encoder.name in _ARMED_NAMES:
            memo = arm(encoder)
        return memo


def text_key(task: str, prompt_name: str, dim: int, text: str) -> Key:
    return ("text", task, prompt_name, dim, text)


def image_key(task: str, dim: int, image: Any) -> Key | None:
    """The key of an image input: its path or page reference, or a hash of its bytes (None for
    other inputs, e.g. PIL images, which are not remembered)."""
    if isinstance(image, (str, os.PathLike)):
        identity = "path:" + str(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        identity = "sha256:" + hashlib.sha256(image).hexdigest()
    else:
        return None
    return ("image", task, "", dim, identity)


def dense_through(
    memo: Memo, keys: list[Key | None], inputs: list[Any], encode: Callable[[list[Any]], EncodeResult]
) -> list[list[float]]:
    """Dense vectors of ``inputs`` for the embedding model: encodings the store left here are used
    as they are; the others are encoded in one call (``encode`` asks for dense + multivector) and
    left here for the store."""
    items: list[EncodedItem | None] = [memo.for_embedding(k) if k is not None else None for k in keys]
    missing = [i for i, item in enumerate(items) if item is None]
    if missing:
        result = encode([inputs[i] for i in missing])
        for row, i in enumerate(missing):
            items[i] = result.item(row)
            if keys[i] is not None:
                memo.put(keys[i], items[i])  # type: ignore[arg-type]
    return [item.dense.tolist() for item in items]  # type: ignore[union-attr]
