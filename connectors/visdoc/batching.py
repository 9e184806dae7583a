"""Group variable-length items into batches under a token budget, longest first."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_tokens: int, max_items: int | None = None) -> list[list[int]]:
    """Split item indices into batches whose padded size (items x longest) fits ``max_tokens``.

    Items are sorted by length (longest first) so batch-mates have similar lengths and padding
    is minimal; an item longer than the budget gets a batch of its own. ``max_items`` caps the
    number of items in one batch. Indices refer to ``lengths``; callers restore input order.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        n = lengths[index]
        full = max_items is not None and len(current) >= max_items
        if current and (full or max(longest, n) * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of padded positions over all positions for a batch plan (0 = no waste)."""
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - sum(lengths) / padded if padded else 0.0
