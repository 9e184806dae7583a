"""Pooled first-stage vectors: shapes, normalisation, and that they find a query's page."""

from __future__ import annotations

import numpy as np

from visdoc.pooling import pool_page, pool_query


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def topical_page(rng: np.random.Generator, topics: np.ndarray, n: int = 300) -> np.ndarray:
    chosen = topics[rng.choice(len(topics), size=3, replace=False)]
    return unit(chosen[rng.integers(0, 3, size=n)] + 0.5 * rng.normal(size=(n, 128)) / np.sqrt(128) * 8)


def test_page_centroids_are_unit_vectors_and_short_inputs_pass_through():
    rng = np.random.default_rng(0)
    tokens = unit(rng.normal(size=(300, 128)))
    centroids = pool_page(tokens, k=16)
    assert centroids.shape == (16, 128)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(pool_page(tokens[:5], k=16), tokens[:5], atol=1e-6)


def test_query_sums_keep_the_token_weight():
    rng = np.random.default_rng(1)
    tokens = unit(rng.normal(size=(20, 128)))
    sums = pool_query(tokens, k=4)
    assert 1 <= len(sums) <= 4
    np.testing.assert_allclose(sums.sum(axis=0), tokens.sum(axis=0), atol=1e-4)  # every token counted once


def test_pooled_scores_rank_the_source_page_first():
    rng = np.random.default_rng(2)
    topics = unit(rng.normal(size=(50, 128)))
    pages = [topical_page(rng, topics) for _ in range(40)]
    pooled = [pool_page(p) for p in pages]
    hits = 0
    for target in range(10):
        query = pages[target][rng.choice(300, size=20, replace=False)]
        sums = pool_query(query)
        scores = [(sums @ c.T).max(axis=1).sum() for c in pooled]
        hits += int(np.argmax(scores) == target)
    assert hits >= 9
