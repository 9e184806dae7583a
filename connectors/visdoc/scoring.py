"""Similarity scores between embeddings (numpy, for small in-memory comparisons)."""

from __future__ import annotations

import numpy as np


def cosine(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """``[n_queries, n_docs]`` dot products of L2-normalised dense vectors."""
    return np.atleast_2d(queries) @ np.atleast_2d(docs).T


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Late-interaction score: for each query token its best document token, summed."""
    return float((query @ doc.T).max(axis=1).sum())
