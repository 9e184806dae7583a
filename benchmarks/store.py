"""Store benchmark: upsert rate, search latency and recall on synthetic pages, edge vs local mode.

Uses the synthetic page model of ``benchmarks/synthetic_pages.py`` (750 x 128 float16 tokens and
a 2048-d dense vector per page). For each corpus size the same pages go into

* the embedded engine (qdrant-edge) through ``visdoc.store``, searched with
  - ``dense 100``: dense prefetch 100 -> MaxSim rerank (the calibration run of bench-data.md),
  - ``pooled 64``: pooled-centroid prefetch 64 -> MaxSim rerank,
  - ``default``: both first stages (dense 100 + pooled 64) -> MaxSim rerank;
* qdrant-client local mode through the same ``visdoc.store`` code (default search only, on the
  first ``--local-queries`` queries: it scores every page in numpy, about 0.3 s per 1,000 pages).

recall@10 is measured against exact MaxSim over the whole corpus (numpy). Disk use is the
embedded collection's folder after ingestion (optimize + flush), in allocated blocks and in
apparent size, per page and against the raw float16 multivector + float32 dense size.

    python benchmarks/store.py [--sizes 1000 10000] [--queries 100] [--local-sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_pages import SyntheticCorpus, exact_maxsim_topk  # noqa: E402

from visdoc.store import CollectionSpec, PagePoint, QueryVectors, Store, open_store  # noqa: E402

BATCH = 64
VARIANTS = {  # name -> (dense prefetch, pooled prefetch)
    "dense 100": (100, 0),
    "pooled 64": (0, 64),
    "default (dense 100 + pooled 64)": (100, 64),
}


def folder_bytes(path: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of everything under ``path``."""
    allocated = apparent = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def load(store: Store, tokens: np.ndarray, dense: np.ndarray, grid: tuple[int, int] | None = None) -> float:
    """Upsert every page in batches; returns pages per second (including pooling).

    ``grid`` lays each page's tokens out as rows x columns (for row/column prefetch vectors).
    """
    start = time.perf_counter()
    for lo in range(0, len(tokens), BATCH):
        store.upsert([PagePoint(f"00000000-0000-0000-0000-{i:012d}", dense[i], tokens[i], {"page": i}, grid=grid)
                      for i in range(lo, min(lo + BATCH, len(tokens)))])  # fmt: skip
    return len(tokens) / (time.perf_counter() - start)


def measure(
    store: Store, queries, truth: np.ndarray, prefetch: int, pooled: int, limit: int | None = None
) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, recall@10) over the first ``limit`` queries (all by default), one at a time."""
    latencies, found = [], []
    n = len(queries.tokens) if limit is None else min(limit, len(queries.tokens))
    truth = truth[:n]
    for q in range(n):
        vectors = QueryVectors(queries.dense[q], queries.tokens[q])
        start = time.perf_counter()
        hits = store.search(vectors, k=10, prefetch=prefetch, pooled_prefetch=pooled)
        latencies.append(1000 * (time.perf_counter() - start))
        found.append([int(h.id.rsplit("-", 1)[1]) for h in hits])
    recall = np.mean([len(set(f) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)])
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)), float(recall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--local-sizes", type=int, nargs="*", default=[1000, 10000],
                        help="sizes also run on qdrant-client local mode (slow: brute force in numpy)")  # fmt: skip
    parser.add_argument("--local-queries", type=int, default=20, help="queries timed on local mode")
    args = parser.parse_args()
    corpus = SyntheticCorpus(seed=0)
    raw = 750 * 128 * 2 + 2048 * 4
    rows = []
    for n in args.sizes:
        pages = corpus.pages(n)
        queries = corpus.queries(args.queries, n_pages=n)
        truth, _ = exact_maxsim_topk(queries.tokens, pages.tokens, k=10)
        spec = CollectionSpec(dim=2048)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store("bench", spec, data_dir=tmp)
            rate = load(store, pages.tokens, pages.dense)
            start = time.perf_counter()
            store.optimize()
            optimize_s = time.perf_counter() - start
            allocated, apparent = folder_bytes(Path(tmp) / "bench")
            for name, (dense_k, pooled_k) in VARIANTS.items():
                p50, p95, recall = measure(store, queries, truth, dense_k, pooled_k)
                rows.append((n, "edge", name, rate, p50, p95, recall))
            store.close()
        print(f"{n} pages, edge: upsert {rate:.0f} pages/s, optimize {optimize_s:.1f} s, disk {allocated / n:,.0f} "
              f"B/page allocated ({allocated / n / raw:.3f}x raw), {apparent / n:,.0f} B/page apparent "
              f"({apparent / n / raw:.3f}x)", flush=True)  # fmt: skip
        if n in args.local_sizes:
            from qdrant_client import QdrantClient

            store = open_store("bench", spec, client=QdrantClient(":memory:"))
            rate = load(store, pages.tokens, pages.dense)
            name = "default (dense 100 + pooled 64)"
            p50, p95, recall = measure(store, queries, truth, *VARIANTS[name], limit=args.local_queries)
            rows.append((n, "local mode", name, rate, p50, p95, recall))
            store.close()
    print(f"\n{'pages':>6}  {'backend':<10}  {'first stage -> MaxSim rerank':<32} {'upsert/s':>8} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'recall@10':>9}")  # fmt: skip
    for n, backend, name, rate, p50, p95, recall in rows:
        print(f"{n:6d}  {backend:<10}  {name:<32} {rate:8.0f} {p50:8.1f} {p95:8.1f} {recall:9.3f}")


if __name__ == "__main__":
    main()
