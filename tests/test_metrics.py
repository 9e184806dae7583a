"""Retrieval metrics agree with values worked out by hand (trec_eval conventions)."""

from __future__ import annotations

import math

import pytest

from visdoc.evaluation import evaluate


def test_hand_made_rankings():
    qrels = {"q1": {"a": 1, "c": 2}, "q2": {"x": 1}}
    run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.1}, "q2": {"y": 0.9, "z": 0.5, "x": 0.4}}
    m = evaluate(qrels, run, ks=(1, 5))
    idcg_q1 = 2 + 1 / math.log2(3)  # ideal order c (2), a (1)
    assert m["ndcg@1"] == pytest.approx((1 / 2 + 0) / 2)  # q1: a (gain 1) against c (gain 2); q2: miss
    assert m["ndcg@5"] == pytest.approx(((1 + 2 / math.log2(4)) / idcg_q1 + 1 / math.log2(4)) / 2)
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_a_judged_query_without_results_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    m = evaluate(qrels, {"q1": {"a": 1.0}}, ks=(10,))
    assert m == {"ndcg@10": 0.5, "recall@10": 0.5, "mrr": 0.5}
