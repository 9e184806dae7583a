"""Token pooling for a fast first search stage over late-interaction vectors.

A page's ~770 token vectors are summarised by a few spherical k-means centroids (``pool_page``);
a query's tokens by a few cluster sums (``pool_query``: a sum's length carries how many query
tokens it stands for, so dot-product MaxSim against page centroids approximates the full score).
Scoring 4 query sums against 16 centroids per page is ~200x cheaper than full MaxSim, which makes
it a good prefetch for the exact rerank (see docs/store.md and benchmarks/store.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

PAGE_CLUSTERS = 16
QUERY_CLUSTERS = 4

Function = TypeVar("Function", bound=Callable[..., Any])


@functools.cache
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread(function: Function) -> Function:
    """Runs ``function`` with the BLAS on one thread: its products are small, and a multi-threaded
    BLAS spin-waits for a core whenever another process holds them (while a model encodes on the
    same machine, a page's k-means took 34 ms instead of 1.3 ms)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _blas().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return call  # type: ignore[return-value]


def _kmeans(tokens: np.ndarray, k: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means seeded with evenly spaced tokens; returns (unit centroids, cluster sums)."""
    x = np.asarray(tokens, dtype=np.float32)
    centroids = x[np.linspace(0, len(x) - 1, k).astype(int)]
    for step in range(iterations + 1):
        members = np.eye(k, dtype=np.float32)[(x @ centroids.T).argmax(axis=1)]  # one-hot [n, k]
        sums = members.T @ x
        if step == iterations:
            return centroids, sums
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids)
    raise AssertionError("unreachable")


@_one_blas_thread
def pool_page(tokens: np.ndarray, k: int = PAGE_CLUSTERS, iterations: int = 8) -> np.ndarray:
    """``[min(k, n), 128]`` unit vectors summarising a page's ``n`` token vectors."""
    tokens = np.asarray(tokens, dtype=np.float32)
    if len(tokens) <= k:
        return tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    return _kmeans(tokens, k, iterations)[0]


@_one_blas_thread
def pool_query(tokens: np.ndarray, k: int = QUERY_CLUSTERS, iterations: int = 5) -> np.ndarray:
    """``[min(k, n), 128]`` cluster sums of a query's token vectors (not normalised on purpose)."""
    tokens = np.asarray(tokens, dtype=np.float32)
    if len(tokens) <= k:
        return tokens
    sums = _kmeans(tokens, k, iterations)[1]
    return sums[np.linalg.norm(sums, axis=1) > 0]


@_one_blas_thread
def pool_tokens(tokens: np.ndarray, factor: int, poolable: tuple[int, int] | None = None) -> np.ndarray:
    """Hierarchical token pooling of a document's multivector (never apply it to queries).

    Tokens in ``poolable`` (``[start, end)``, default all) are merged by Ward clustering on
    cosine distance into ``ceil(n / factor)`` groups whose means, re-normalised, replace them;
    tokens outside it (prompt and image-template tokens) are kept as they are, in place.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    tokens = np.asarray(tokens, dtype=np.float32)
    start, end = poolable or (0, len(tokens))
    inner = tokens[start:end]
    clusters = -(-len(inner) // factor)
    if factor <= 1 or len(inner) <= clusters:
        return tokens
    labels = fcluster(linkage(inner, method="ward"), t=clusters, criterion="maxclust")
    members = np.eye(labels.max(), dtype=np.float32)[labels - 1]  # one-hot [n, clusters]
    sums = members.T @ inner
    pooled = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return np.concatenate([tokens[:start], pooled, tokens[end:]])
