"""Store benchmark: upsert rate, search latency and recall on synthetic pages, edge vs local mode.

Uses the synthetic page model of ``benchmarks/synthetic_pages.py`` (750 x 128 float16 tokens and
a 2048-d dense vector per page) and its synthetic text (150 words per page from the page's topics'
vocabularies and Zipf-distributed common words, a product code such as ``LS-4881-K`` on 20 % of
pages; a query's text is 2 words of its target page's topics and 2 common words, or, for every other
query whose target has a code, the code typed ``ls 4881 k`` plus a topic word; fixed seeds). The
text is stored as each page's payload text, so every collection has its lexical (BM25) vectors.
For each corpus size the same pages go into

* the embedded engine (qdrant-edge) through ``visdoc.store``, searched with
  - ``dense 100``: dense prefetch 100 -> MaxSim rerank (the calibration run of bench-data.md),
  - ``pooled 64``: pooled-centroid prefetch 64 -> MaxSim rerank,
  - ``default``: both first stages (dense 100 + pooled 64) -> MaxSim rerank;
  and then by search mode on the same store, each query run in every mode before the next query
  (the order of the modes rotating from query to query): ``rerank`` (the default above),
  ``lexical`` (BM25 only), ``hybrid`` (BM25 100 fused with rerank by RRF) and ``mmr`` (lambda 0.5
  over the 100 best reranked; on the first ``--mmr-queries`` queries only: the engine's MMR scores
  MaxSim between candidates, seconds per query on 750-token pages); the ratio hybrid p50 /
  rerank p50 is printed last;
* qdrant-client local mode through the same ``visdoc.store`` code (default search only, on the
  first ``--local-queries`` queries: it scores every page in numpy, about 0.3 s per 1,000 pages).

recall@10 is measured against exact MaxSim over the whole corpus (numpy); target@10 is the share
of queries whose target page (the page its vectors and text were drawn from) is in the top 10,
the measure that lexical search can be judged by. Disk use is the
embedded collection's folder after ingestion (optimize + flush), in allocated blocks and in
apparent size, per page and against the raw float16 multivector + float32 dense size.

    python benchmarks/store.py [--sizes 1000 10000] [--queries 100] [--local-sizes 1000 10000] [--mmr-queries 20]
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

from visdoc.points import PAGE, TEXT  # noqa: E402
from visdoc.store import CollectionSpec, PagePoint, QueryVectors, Store, open_store  # noqa: E402

BATCH = 64
VARIANTS = {  # name -> (dense prefetch, pooled prefetch)
    "dense 100": (100, 0),
    "pooled 64": (0, 64),
    "default (dense 100 + pooled 64)": (100, 64),
}
MODES = ("rerank", "lexical", "hybrid", "mmr")  # Store.search modes timed side by side, default settings


def folder_bytes(path: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of everything under ``path``."""
    allocated = apparent = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def load(
    store: Store,
    tokens: np.ndarray,
    dense: np.ndarray,
    grid: tuple[int, int] | None = None,
    texts: list[str] | None = None,
) -> float:
    """Upsert every page in batches; returns pages per second (including pooling and, with
    ``texts``, each page's lexical vector).

    ``grid`` lays each page's tokens out as rows x columns (for row/column prefetch vectors).
    """
    start = time.perf_counter()
    for lo in range(0, len(tokens), BATCH):
        store.upsert([PagePoint(f"00000000-0000-0000-0000-{i:012d}", dense[i], tokens[i],
                                {PAGE: i, TEXT: texts[i]} if texts else {PAGE: i}, grid=grid)
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


def measure_modes(
    store: Store, queries, texts: list[str], truth: np.ndarray, mmr_queries: int
) -> dict[str, tuple[int, float, float, float, float]]:
    """Per mode of :data:`MODES`: (queries timed, p50 ms, p95 ms, recall@10 against exact MaxSim,
    target@10). Each query runs in every mode before the next (the first mode rotating), so load
    changes on a shared machine fall on all modes alike; ``mmr`` only on the first ``mmr_queries``."""
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    found: dict[str, list[list[int]]] = {mode: [] for mode in MODES}
    for q in range(len(texts)):
        vectors = QueryVectors(queries.dense[q], queries.tokens[q], texts[q])
        for j in range(len(MODES)):
            mode = MODES[(q + j) % len(MODES)]
            if mode == "mmr" and q >= mmr_queries:
                continue
            start = time.perf_counter()
            hits = store.search(vectors, k=10, mode=mode)
            latencies[mode].append(1000 * (time.perf_counter() - start))
            found[mode].append([int(h.id.rsplit("-", 1)[1]) for h in hits])
    out = {}
    for mode in MODES:
        n = len(found[mode])
        recall = np.mean([len(set(f) & set(t[:10])) / 10 for f, t in zip(found[mode], truth[:n], strict=True)])
        target = np.mean([int(t) in f for f, t in zip(found[mode], queries.targets[:n], strict=True)])
        p50, p95 = np.percentile(latencies[mode], [50, 95])
        out[mode] = (n, float(p50), float(p95), float(recall), float(target))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--local-sizes", type=int, nargs="*", default=[1000, 10000],
                        help="sizes also run on qdrant-client local mode (slow: brute force in numpy)")  # fmt: skip
    parser.add_argument("--local-queries", type=int, default=20, help="queries timed on local mode")
    parser.add_argument("--mmr-queries", type=int, default=20,
                        help="queries timed in mmr mode (seconds each on 750-token pages)")  # fmt: skip
    args = parser.parse_args()
    corpus = SyntheticCorpus(seed=0)
    raw = 750 * 128 * 2 + 2048 * 4
    rows, mode_rows = [], []
    for n in args.sizes:
        pages = corpus.pages(n)
        texts = corpus.texts(n)
        queries = corpus.queries(args.queries, n_pages=n)
        query_texts = corpus.query_texts(args.queries, n_pages=n)
        truth, _ = exact_maxsim_topk(queries.tokens, pages.tokens, k=10)
        spec = CollectionSpec(dim=2048)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store("bench", spec, data_dir=tmp)
            rate = load(store, pages.tokens, pages.dense, texts=texts)
            start = time.perf_counter()
            store.optimize()
            optimize_s = time.perf_counter() - start
            allocated, apparent = folder_bytes(Path(tmp) / "bench")
            for name, (dense_k, pooled_k) in VARIANTS.items():
                p50, p95, recall = measure(store, queries, truth, dense_k, pooled_k)
                rows.append((n, "edge", name, rate, p50, p95, recall))
            for mode, measured in measure_modes(store, queries, query_texts, truth, args.mmr_queries).items():
                mode_rows.append((n, mode, *measured))
            store.close()
        print(f"{n} pages, edge: upsert {rate:.0f} pages/s, optimize {optimize_s:.1f} s, disk {allocated / n:,.0f} "
              f"B/page allocated ({allocated / n / raw:.3f}x raw), {apparent / n:,.0f} B/page apparent "
              f"({apparent / n / raw:.3f}x)", flush=True)  # fmt: skip
        if n in args.local_sizes:
            from qdrant_client import QdrantClient

            store = open_store("bench", spec, client=QdrantClient(":memory:"))
            rate = load(store, pages.tokens, pages.dense, texts=texts)
            name = "default (dense 100 + pooled 64)"
            p50, p95, recall = measure(store, queries, truth, *VARIANTS[name], limit=args.local_queries)
            rows.append((n, "local mode", name, rate, p50, p95, recall))
            store.close()
    print(f"\n{'pages':>6}  {'backend':<10}  {'first stage -> MaxSim rerank':<32} {'upsert/s':>8} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'recall@10':>9}")  # fmt: skip
    for n, backend, name, rate, p50, p95, recall in rows:
        print(f"{n:6d}  {backend:<10}  {name:<32} {rate:8.0f} {p50:8.1f} {p95:8.1f} {recall:9.3f}")
    print(f"\nsearch modes, edge, same store, interleaved queries (k=10, default settings)\n{'pages':>6}  {'mode':<8} "
          f"{'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>9} {'target@10':>9}")  # fmt: skip
    for n, mode, count, p50, p95, recall, target in mode_rows:
        print(f"{n:6d}  {mode:<8} {count:7d} {p50:8.1f} {p95:8.1f} {recall:9.3f} {target:9.3f}")
    p50s = {(n, mode): p50 for n, mode, _, p50, *_ in mode_rows}
    for n in args.sizes:
        print(f"{n} pages: hybrid p50 / rerank p50 = {p50s[n, 'hybrid'] / p50s[n, 'rerank']:.2f}x")


if __name__ == "__main__":
    main()
