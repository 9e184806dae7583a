"""Token-budget batching: every item once, within budget, less padding than input order."""

from __future__ import annotations

import random

from visdoc.batching import padding_ratio, plan_batches


def test_plan_covers_every_item_once_within_the_budget():
    rng = random.Random(0)
    lengths = [rng.randint(5, 400) for _ in range(500)]
    batches = plan_batches(lengths, max_tokens=2048)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert max(lengths[i] for i in batch) * len(batch) <= 2048


def test_items_longer_than_the_budget_get_their_own_batch():
    batches = plan_batches([5000, 10, 10], max_tokens=100)
    assert [0] in batches and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_max_items_caps_the_batch():
    batches = plan_batches([3] * 10, max_tokens=10_000, max_items=4)
    assert sorted(len(b) for b in batches) == [2, 4, 4]


def test_length_sorting_wastes_far_less_padding_than_input_order():
    rng = random.Random(1)
    lengths = [rng.randint(5, 400) for _ in range(256)]
    fixed = [list(range(i, min(i + 8, len(lengths)))) for i in range(0, len(lengths), 8)]
    planned = plan_batches(lengths, max_tokens=4096)
    assert padding_ratio(lengths, planned) < 0.05 < 0.3 < padding_ratio(lengths, fixed)


def test_equal_lengths_fill_the_budget():
    batches = plan_batches([100] * 50, max_tokens=1000)
    assert [len(b) for b in batches] == [10] * 5
