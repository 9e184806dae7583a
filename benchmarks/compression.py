"""Compression options side by side: bytes per page, search latency and ranking agreement.

Synthetic pages (``benchmarks/synthetic_pages.py``, the page model of bench-data.md). For each
option a collection is built in the embedded engine and measured:

* bytes/page: the collection folder after ingestion (allocated blocks), and the size of the
  multivector part alone (stored + quantized copy) from the option's arithmetic;
* p50 ms: the default search (dense 100 + pooled 64 prefetch [+ row/column 64] -> MaxSim rerank);
* agreement: nDCG@10 of the option's ranking against the exact full float32 MaxSim ranking
  (graded relevance 10..1 for the exact top 10), computed by pytrec_eval, twice:
  - ``rerank exact@100``: the option reranks the exact top-100 candidates itself (isolates the
    storage compression from the first stage);
  - ``default search``: what users get end to end.

    python benchmarks/compression.py [--pages 10000] [--queries 100] [--only "float16 + binary" ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store import folder_bytes, load  # noqa: E402
from synthetic_pages import SyntheticCorpus, exact_maxsim_topk  # noqa: E402

from visdoc.evaluation import evaluate  # noqa: E402
from visdoc.store import CollectionSpec, PageFilter, QueryVectors, open_store  # noqa: E402

OPTIONS = {
    "float32": CollectionSpec(dim=2048, multivector_datatype="float32"),
    "float16 (default)": CollectionSpec(dim=2048),
    "float16 + scalar int8": CollectionSpec(dim=2048, quantization="scalar"),
    "float16 + binary": CollectionSpec(dim=2048, quantization="binary"),
    "token pooling x3": CollectionSpec(dim=2048, token_pool_factor=3),
    "+ row/column prefetch": CollectionSpec(dim=2048, rowcol=True),
}


def page_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def multivector_bytes(spec: CollectionSpec, tokens: int) -> float:
    """Bytes per page of the multivector: stored values plus any quantized copy."""
    stored = tokens / spec.token_pool_factor * 128 * (4 if spec.multivector_datatype == "float32" else 2)
    stored += (25 + 30) * 128 * 2 if spec.rowcol else 0
    quantized = {"none": 0, "scalar": tokens * 128, "binary": tokens * 128 / 8}[spec.quantization]
    return stored + quantized


def agreement(truth: np.ndarray, found: list[list[str]]) -> float:
    qrels = {str(q): {page_id(int(p)): 10 - r for r, p in enumerate(row[:10])} for q, row in enumerate(truth)}
    run = {str(q): {pid: 1.0 / (r + 1) for r, pid in enumerate(row)} for q, row in enumerate(found)}
    return evaluate(qrels, run, ks=(10,))["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=None, help="run only these options (names as printed)")
    args = parser.parse_args()
    corpus = SyntheticCorpus(seed=0)
    pages = corpus.pages(args.pages)
    queries = corpus.queries(args.queries, n_pages=args.pages)
    truth, _ = exact_maxsim_topk(queries.tokens, pages.tokens, k=100)
    vectors = [QueryVectors(queries.dense[q], queries.tokens[q]) for q in range(args.queries)]
    rows = []
    for name, spec in OPTIONS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store("bench", spec, data_dir=tmp)
            load(store, pages.tokens, pages.dense, grid=(25, 30))  # 750 tokens as a 25 x 30 patch grid
            store.optimize()
            allocated, _ = folder_bytes(Path(tmp) / "bench")
            candidates = [
                [h.id for h in store.search(v, k=10, mode="multivector",
                                            where=PageFilter(ids=tuple(page_id(int(p)) for p in truth[q])))]
                for q, v in enumerate(vectors)
            ]  # fmt: skip
            latencies, found = [], []
            for v in vectors:
                start = time.perf_counter()
                hits = store.search(v, k=10)
                latencies.append(1000 * (time.perf_counter() - start))
                found.append([h.id for h in hits])
            store.close()
        rows.append((name, allocated / args.pages, multivector_bytes(spec, 750), float(np.percentile(latencies, 50)),
                     agreement(truth, candidates), agreement(truth, found)))  # fmt: skip
        print(f"done: {name}", flush=True)
    f16 = multivector_bytes(OPTIONS["float16 (default)"], 750)
    print(f"\n{args.pages} pages x 750 tokens, {args.queries} queries of 20 tokens")
    print(f"{'option':<24} {'B/page disk':>11} {'multivector B':>13} {'vs f16':>7} {'p50 ms':>7} "
          f"{'rerank exact@100':>16} {'default search':>14}")  # fmt: skip
    for name, disk, multi, p50, exact, default in rows:
        print(f"{name:<24} {disk:11,.0f} {multi:13,.0f} {multi / f16:7.3f} {p50:7.1f} {exact:16.4f} {default:14.4f}")


if __name__ == "__main__":
    main()
