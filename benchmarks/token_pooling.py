"""Token pooling: what a user loses, measured as the target page's recall.

On the synthetic page model (``shared/docs/bench-data.md``, seed 0) every query is drawn from one
target page. This measures, at each corpus size, how often that page is in the top 10:

* ``none``: exact MaxSim over the whole corpus with every page's 750 tokens (numpy/torch,
  streamed in chunks; a 100k corpus is never held in memory);
* ``xF``: the exact top ``--candidates`` pages and the target, reranked by MaxSim against each
  page's tokens pooled as the store pools them (``visdoc.pooling.pool_tokens``, Ward clustering
  to ceil(750 / F) re-normalised means, stored float16; queries never pooled). This is the
  "rerank exact@100" pipeline of ``benchmarks/compression.py``: it isolates what pooling does
  to the ranking from what a first stage misses. At ``--verify-size`` every page is pooled and
  scored as well, and the script prints for how many queries the full pooled scan's top 10
  equals the candidates' (so the restriction to candidates can be judged).

The target is nearly always in the top 10 on this page model, so the target's rank is printed as
well: the share of queries whose target is first (target@1) and the mean reciprocal rank of the
target within the top 10 (MRR@10). Beside them, as before, agreement: nDCG@10 of each ranking
against the exact top 10 (graded 10..1, pytrec_eval). The ratio ``xF / none`` of target
recall@10 is the figure to judge pooling by (issue 19's target: >= 0.97 for x3).

    python benchmarks/token_pooling.py [--sizes 10000 100000] [--factors 2 3] [--queries 100]
        [--candidates 100] [--verify-size 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import keep_best, maxsim  # noqa: E402
from synthetic_pages import SyntheticCorpus  # noqa: E402

from visdoc.evaluation.metrics import evaluate  # noqa: E402
from visdoc.pooling import pool_tokens  # noqa: E402

CHUNK = 500
_CORPUS: SyntheticCorpus | None = None


def pooled_page(task: tuple[int, int]) -> np.ndarray:
    """Page ``task[0]``'s tokens pooled by factor ``task[1]`` (float16, as stored)."""
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = SyntheticCorpus(seed=0)
    page, factor = task
    return pool_tokens(_CORPUS.page_tokens(page), factor).astype(np.float16)


def pooled_scores(query_tokens: np.ndarray, pooled: list[np.ndarray]) -> np.ndarray:
    """MaxSim of one query against each page's pooled tokens."""
    flat = np.concatenate(pooled).astype(np.float32)
    sims = flat @ query_tokens.T  # [sum tokens, query tokens]
    bounds = np.cumsum([0] + [len(p) for p in pooled])
    return np.array([sims[lo:hi].max(axis=0).sum() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])


def target_ranks(targets: np.ndarray, found: list[list[int]]) -> tuple[float, float, float]:
    """(target recall@10, target@1, MRR@10 of the target) over the queries."""
    ranks = [f[:10].index(int(t)) + 1 if int(t) in f[:10] else None for t, f in zip(targets, found, strict=True)]
    return (float(np.mean([r is not None for r in ranks])), float(np.mean([r == 1 for r in ranks])),
            float(np.mean([1 / r if r else 0.0 for r in ranks])))  # fmt: skip


def agreement(truth: np.ndarray, found: list[list[int]]) -> float:
    qrels = {str(q): {str(int(p)): 10 - r for r, p in enumerate(row[:10])} for q, row in enumerate(truth)}
    run = {str(q): {str(p): 1.0 / (r + 1) for r, p in enumerate(row)} for q, row in enumerate(found)}
    return evaluate(qrels, run, ks=(10,))["ndcg@10"]


def exact_top(corpus: SyntheticCorpus, queries, size: int, keep: int) -> np.ndarray:
    """Exact MaxSim top ``keep`` page indices per query over ``size`` pages, streamed."""
    import torch

    query_tokens_t = torch.from_numpy(queries.tokens.reshape(-1, queries.tokens.shape[-1]).T.copy())
    n_queries = len(queries.tokens)
    best_ids = np.empty((n_queries, 0), dtype=np.int64)
    best_scores = np.empty((n_queries, 0), dtype=np.float32)
    for lo in range(0, size, CHUNK):
        n = min(CHUNK, size - lo)
        scores = maxsim(query_tokens_t, corpus.pages(n, start=lo).tokens, n_queries).T
        best_ids, best_scores = keep_best(best_ids, best_scores, scores, lo, keep)
    return best_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--verify-size", type=int, default=10_000, help="also pool and scan every page at this size")
    parser.add_argument("--workers", type=int, default=2, help="processes pooling pages")
    parser.add_argument("--exact-dir", type=Path, default=None,
                        help="a --data-dir of scale.py: reuse its exact top 100 (same seed and queries)")  # fmt: skip
    args = parser.parse_args()
    corpus = SyntheticCorpus(seed=0)
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for size in args.sizes:
            began = time.perf_counter()
            queries = corpus.queries(args.queries, n_pages=min(args.sizes))  # as scale.py draws them
            saved = args.exact_dir / f"exact-top100-{size}.npy" if args.exact_dir else None
            if saved and saved.exists() and args.candidates <= 100:
                top = np.load(saved)[: args.queries, : args.candidates]
            else:
                top = exact_top(corpus, queries, size, args.candidates)
            print(f"{size:,} pages: exact top {args.candidates} in {time.perf_counter() - began:.0f} s", flush=True)
            targets = queries.targets
            unpooled = [row[:10].tolist() for row in top]
            rows.append((size, "none", *target_ranks(targets, unpooled), agreement(top, unpooled), ""))
            verify = size == args.verify_size
            for factor in args.factors:
                start = time.perf_counter()
                candidates = [sorted(set(row.tolist()) | {int(t)}) for row, t in zip(top, targets, strict=True)]
                pages = sorted(set(range(size)) if verify else set().union(*map(set, candidates)))
                pooled = dict(zip(pages, pool.map(pooled_page, [(p, factor) for p in pages], chunksize=64),
                                  strict=True))  # fmt: skip
                found = []
                for q, cands in enumerate(candidates):
                    scores = pooled_scores(queries.tokens[q], [pooled[p] for p in cands])
                    found.append([cands[i] for i in np.lexsort((cands, -scores))[:10]])
                note = f"{len(pages):,} pages pooled in {time.perf_counter() - start:.0f} s"
                if verify:
                    full = []
                    for q in range(args.queries):
                        scores = pooled_scores(queries.tokens[q], [pooled[p] for p in pages])
                        full.append([pages[i] for i in np.lexsort((pages, -scores))[:10]])
                    same = sum(f == g for f, g in zip(found, full, strict=True))
                    full_recall = np.mean([t in f for t, f in zip(targets, full, strict=True)])
                    note += (f"; full pooled scan: same top 10 for {same}/{args.queries} queries, target "
                             f"recall@10 {full_recall:.3f}")  # fmt: skip
                recall, first, mrr = target_ranks(targets, found)
                rows.append((size, f"x{factor}", recall, first, mrr, agreement(top, found), note))
                print(f"{size:,} pages, x{factor}: target recall@10 {recall:.3f} ({note})", flush=True)
    print(f"\n{args.queries} queries; pooled rows rerank the exact top {args.candidates} + the target page")
    print(f"{'pages':>7}  {'pooling':<7} {'target recall@10':>16} {'vs none':>7} {'target@1':>8} {'MRR@10':>6} "
          f"{'agreement nDCG@10':>17}")  # fmt: skip
    base = {size: recall for size, name, recall, *_ in rows if name == "none"}
    for size, name, recall, first, mrr, ndcg, _ in rows:
        print(f"{size:7,}  {name:<7} {recall:16.3f} {recall / base[size]:7.3f} {first:8.3f} {mrr:6.3f} {ndcg:17.4f}")


if __name__ == "__main__":
    main()
