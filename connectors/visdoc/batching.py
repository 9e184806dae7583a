"""Group variable-length items into batches under a token budget with minimal padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BATCH_OVERHEAD_TOKENS = 64  # what one extra forward pass costs, in padded-token equivalents


def plan_batches(
    lengths: Sequence[int], max_tokens: int, max_items: int | None = None, overhead: int = BATCH_OVERHEAD_TOKENS
) -> list[list[int]]:
    """Split item indices into batches whose padded size (items x longest) fits ``max_tokens``.

    Items are sorted by length (longest first) and cut into contiguous runs that minimise the
    padded tokens plus ``overhead`` per batch (an exact dynamic programme, O(n x batch size)).
    An item longer than the budget gets a batch of its own; ``max_items`` caps items per batch.
    Indices refer to ``lengths``; callers restore input order.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sorted_lengths = np.array([lengths[i] for i in order], dtype=np.int64)
    n = len(order)
    best = np.zeros(n + 1)  # best[j]: cost of batching the first j sorted items
    first = np.zeros(n, dtype=np.int64)  # first[j]: where the batch ending at item j starts
    lo = 0
    for j in range(n):
        while lo < j and (
            sorted_lengths[lo] * (j - lo + 1) > max_tokens or (max_items is not None and j - lo + 1 > max_items)
        ):
            lo += 1
        starts = np.arange(lo, j + 1)
        cost = best[lo : j + 1] + sorted_lengths[lo : j + 1] * (j - starts + 1) + overhead
        k = int(np.argmin(cost))
        first[j], best[j + 1] = lo + k, cost[k]
    batches: list[list[int]] = []
    end = n - 1
    while end >= 0:
        start = int(first[end])
        batches.append([order[i] for i in range(start, end + 1)])
        end = start - 1
    return batches[::-1]


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of padded positions over all positions for a batch plan (0 = no waste)."""
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - sum(lengths) / padded if padded else 0.0


def plan_packed(lengths: Sequence[int], max_tokens: int, max_items: int | None = None) -> list[list[int]]:
    """Batches for packed sequences (no padding): length-sorted runs of at most ``max_tokens``
    tokens in total; an item longer than the budget gets a batch of its own."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        full = max_items is not None and len(current) >= max_items
        if current and (total + lengths[i] > max_tokens or full):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches
