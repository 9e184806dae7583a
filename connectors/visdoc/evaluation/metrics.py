"""Retrieval metrics computed by pytrec_eval (trec_eval's own code), averaged over queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]  # query id -> {document id: graded relevance}
Run = Mapping[str, Mapping[str, float]]  # query id -> {document id: score}
DEFAULT_KS = (1, 5, 10)


def evaluate(qrels: Qrels, run: Run, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean nDCG@k, recall@k and MRR over every judged query.

    A judged query missing from ``run`` (nothing retrieved) counts as 0 for every metric, so
    failures are not hidden by leaving them out. Keys: ``ndcg@k``, ``recall@k``, ``mrr``.
    """
    import pytrec_eval

    cuts = ",".join(str(k) for k in ks)
    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: dict(d) for q, d in qrels.items()}, {f"ndcg_cut.{cuts}", f"recall.{cuts}", "recip_rank"}
    )
    per_query = evaluator.evaluate({q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs})
    names = {f"ndcg_cut_{k}": f"ndcg@{k}" for k in ks} | {f"recall_{k}": f"recall@{k}" for k in ks}
    names["recip_rank"] = "mrr"
    totals = dict.fromkeys(names.values(), 0.0)
    for scores in per_query.values():
        for trec_name, name in names.items():
            totals[name] += scores[trec_name]
    judged = len(qrels)
    return {name: total / judged for name, total in totals.items()} if judged else totals
