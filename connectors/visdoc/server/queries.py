"""Query embeddings for the page, cached with the query's token labels (the heatmap's chips)."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..store import QueryVectors, Store

MAX_QUERIES = 128  # embeddings kept, least recently used dropped first


class Queries:
    """Embeds queries for a collection's dimension and task, keeping the last :data:`MAX_QUERIES`."""

    def __init__(self, model: Encoder) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._queries: OrderedDict[tuple, tuple[QueryVectors, list[str]]] = OrderedDict()

    def vectors(self, store: Store, query: str) -> tuple[QueryVectors, list[str]]:
        """The query's embedding for ``store``'s collection, with its text for the lexical stage, and
        its token labels (cached)."""
        from ..search import embed_query

        key = (store.spec.dim, store.spec.task, query)
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        vectors = dataclasses.replace(embed_query(self.model, query, store), text=query)
        entry = (vectors, token_labels(self.model, query, len(vectors.multivector)))
        with self._lock:
            self._queries[key] = entry
            while len(self._queries) > MAX_QUERIES:
                self._queries.popitem(last=False)
        return entry


def token_labels(model: Encoder, query: str, n: int) -> list[str]:
    """The query's tokens as text (prompt included), one per multivector row (``#i`` past the
    tokenizer's count); blank tokens shown as ``␣``."""
    labels = list(model.tokenizer.token_labels(query))
    labels = labels[:n] + [f"#{i + 1}" for i in range(len(labels), n)]
    return [label if label.strip() else "\u2423" * max(1, len(label)) for label in labels]  # spaces as ␣
