"""Scale benchmark: collections of 10k, 30k and 100k synthetic pages for each memory profile.

Streams the page model of ``shared/docs/bench-data.md`` (``benchmarks/synthetic_pages.py``, seed
0) in chunks: each chunk is generated once, upserted into one embedded collection per profile
(``CollectionSpec.for_profile``: ``fast``, ``compact``, ``archive``) and scored against the
queries in numpy, so the exact MaxSim top 10 of every prefix is known without ever holding the
corpus (a 100k corpus is 19 GB of float16 tokens). When the stream reaches a size of ``--sizes``,
each profile's collection is optimized and closed, and a fresh process measures it:

* reopen: the time ``open_store`` takes, and resident bytes per page after it: the RSS delta of
  that process (no engine child: searches run in-process), split into anonymous memory and
  mapped files (the engine maps vectors; those pages are page cache the OS can take back);
* the default search (``Store.search``: dense 100 + pooled 64 -> MaxSim rerank), one query at a
  time: first ``--queries`` queries with the collection's files dropped from the page cache
  (``posix_fadvise(DONTNEED)``: a cold cache, as after a reboot), then the same queries again
  (warm), interleaved with a wider first stage (dense 100 + pooled 128); p50 / p95 latency,
  recall@10 against exact MaxSim and target@10 (the query's own page in the top 10); resident
  bytes per page after the searches.

Per size it also prints upsert pages/s over the first and the last tenth of the pages (so a
slowdown shows; rates include the 16 pooled centroids per page computed by ``Store.upsert``),
the optimize time, and the collection folder's allocated bytes per page against the raw float16
multivector + float32 dense size. Pages carry no text (no lexical vectors): this measures the
vector layout. ``--max-size fast=30000`` keeps a profile out of larger sizes (``fast`` holds
~225 KB per page in RAM: 100k pages would not fit in this machine's 24 GB next to the others).

    python benchmarks/scale.py [--sizes 10000 30000 100000] [--profiles fast compact archive]
        [--max-size fast=30000] [--queries 100] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_pages import SyntheticCorpus  # noqa: E402

from visdoc.points import PAGE  # noqa: E402
from visdoc.store import CollectionSpec, PagePoint, QueryVectors, open_store  # noqa: E402

CHUNK = 500  # pages generated, scored and upserted at a time
UPSERT = 64  # pages per Store.upsert call
RAW_BYTES = 750 * 128 * 2 + 2048 * 4  # float16 multivector + float32 dense per page
TOP = 100  # exact MaxSim ranks kept per query (saved as exact-top100-SIZE.npy for token_pooling.py)


def maxsim(query_tokens_t, page_tokens: np.ndarray, n_queries: int) -> np.ndarray:
    """Exact MaxSim ``[pages, queries]`` of float16 pages against the queries' tokens, given as
    one float32 tensor ``[128, queries * tokens]``; a few pages at a time (cache-sized blocks are
    ~3x faster than one large product on this CPU)."""
    import torch

    out = np.empty((len(page_tokens), n_queries), dtype=np.float32)
    for lo in range(0, len(page_tokens), 5):
        block = torch.from_numpy(page_tokens[lo : lo + 5]).float()
        best = (block.reshape(-1, block.shape[-1]) @ query_tokens_t).view(len(block), block.shape[1], -1).amax(1)
        out[lo : lo + len(block)] = best.view(len(block), n_queries, -1).sum(-1).numpy()
    return out


def keep_best(
    best_ids: np.ndarray, best_scores: np.ndarray, scores: np.ndarray, start: int, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` best of each query's kept pages and the next chunk's (``scores`` ``[queries, n]``
    of pages ``start ..``), best first, ties broken by the lower page index."""
    ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)], axis=1)
    all_scores = np.concatenate([best_scores, scores], axis=1)
    order = np.lexsort((ids, -all_scores), axis=1)[:, :keep]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(all_scores, order, 1)


def page_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def folder_bytes(path: Path) -> int:
    return sum(os.stat(os.path.join(root, f)).st_blocks * 512 for root, _, files in os.walk(path) for f in files)


def drop_from_page_cache(path: Path) -> None:
    """Evict a folder's files from the OS page cache (what a reboot or memory pressure does)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def resident() -> tuple[int, int]:
    """(anonymous, file-mapped) resident bytes of this process."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["RssAnon"].split()[0]) * 1024, int(fields["RssFile"].split()[0]) * 1024


def measure(data_dir: Path, profile: str, n_pages: int, n_queries: int, query_pool: int) -> dict:
    """Runs in a fresh process: reopen, resident bytes, cold and warm searches."""
    truth = np.load(data_dir / f"exact-top{TOP}-{n_pages}.npy")
    queries = SyntheticCorpus(seed=0).queries(n_queries, n_pages=query_pool)
    vectors = [QueryVectors(queries.dense[q], queries.tokens[q]) for q in range(n_queries)]
    drop_from_page_cache(data_dir / profile)
    anon0, file0 = resident()
    start = time.perf_counter()
    store = open_store(profile, data_dir=data_dir)
    out: dict = {"reopen_s": time.perf_counter() - start}
    anon1, file1 = resident()
    out["open_anon"], out["open_file"] = (anon1 - anon0) / n_pages, (file1 - file0) / n_pages
    for phase, pooled in (("cold", [64]), ("warm", [64, 128])):  # warm: the two first stages alternate
        latencies: dict[int, list[float]] = {k: [] for k in pooled}
        found: dict[int, list[list[int]]] = {k: [] for k in pooled}
        for i, query in enumerate(vectors):
            for k in pooled[i % 2 :] + pooled[: i % 2]:
                start = time.perf_counter()
                hits = store.search(query, k=10, pooled_prefetch=k)
                latencies[k].append(1000 * (time.perf_counter() - start))
                found[k].append([int(h.id.rsplit("-", 1)[1]) for h in hits])
        for k in pooled:
            name = phase if k == 64 else f"{phase}{k}"
            out[f"{name}_p50"], out[f"{name}_p95"] = (float(x) for x in np.percentile(latencies[k], [50, 95]))
            out[f"{name}_recall"] = float(np.mean([len(set(f) & set(t[:10].tolist())) / 10
                                                   for f, t in zip(found[k], truth, strict=True)]))  # fmt: skip
            targets = queries.targets
            out[f"{name}_target"] = float(np.mean([int(t) in f for f, t in zip(found[k], targets, strict=True)]))
    anon2, file2 = resident()
    out["searched_anon"], out["searched_file"] = (anon2 - anon0) / n_pages, (file2 - file0) / n_pages
    store.close()
    return out


def measure_in_child(data_dir: Path, profile: str, n_pages: int, n_queries: int, query_pool: int) -> dict:
    command = [sys.executable, __file__, "--measure", profile, "--data-dir", str(data_dir), "--queries",
               str(n_queries), "--sizes", str(n_pages), str(query_pool)]  # fmt: skip
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--profiles", nargs="+", default=["fast", "compact", "archive"])
    parser.add_argument("--max-size", nargs="*", default=["fast=30000"], help="PROFILE=PAGES: no larger sizes")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default: a temporary folder, removed at the end; a given one keeps the exact "
                             "top 100 of each size (for token_pooling.py --exact-dir); each collection is "
                             "removed once its largest size is measured")  # fmt: skip
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: the measuring child
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.data_dir, args.measure, args.sizes[0], args.queries, args.sizes[1])))
        return
    sizes = sorted(args.sizes)
    limits = {p: int(v) for p, v in (item.split("=") for item in args.max_size)}
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="visdoc-scale-", dir="/var/tmp"))
    data_dir.mkdir(parents=True, exist_ok=True)
    corpus = SyntheticCorpus(seed=0)
    queries = corpus.queries(args.queries, n_pages=sizes[0])
    import torch

    query_tokens_t = torch.from_numpy(queries.tokens.reshape(-1, queries.tokens.shape[-1]).T.copy())
    stores = {p: open_store(p, CollectionSpec.for_profile(p, 2048, lexical=False), data_dir=data_dir)
              for p in args.profiles}  # fmt: skip
    upsert_s = {p: np.zeros(sizes[-1]) for p in args.profiles}  # seconds spent per page (chunk average)
    best_ids = np.empty((args.queries, 0), dtype=np.int64)
    best_scores = np.empty((args.queries, 0), dtype=np.float32)
    generate_s = truth_s = 0.0
    began = time.perf_counter()
    print(f"{args.queries} queries; profiles {', '.join(args.profiles)}; sizes {sizes}; data in {data_dir}", flush=True)
    done = 0
    for size in sizes:
        while done < size:
            n = min(CHUNK, size - done)
            start = time.perf_counter()
            pages = corpus.pages(n, start=done)
            generate_s += time.perf_counter() - start
            start = time.perf_counter()
            scores = maxsim(query_tokens_t, pages.tokens, args.queries).T
            best_ids, best_scores = keep_best(best_ids, best_scores, scores, done, TOP)
            truth_s += time.perf_counter() - start
            for profile, store in stores.items():
                if size > limits.get(profile, sizes[-1]):
                    continue
                start = time.perf_counter()
                for lo in range(0, n, UPSERT):
                    store.upsert([PagePoint(page_id(done + i), pages.dense[i], pages.tokens[i], {PAGE: done + i})
                                  for i in range(lo, min(lo + UPSERT, n))])  # fmt: skip
                upsert_s[profile][done : done + n] = (time.perf_counter() - start) / n
            done += n
            if done % 10_000 == 0 or done == size:
                print(f"  {done:,} pages streamed, {time.perf_counter() - began:,.0f} s (generate {generate_s:.0f} s, "
                      f"exact MaxSim {truth_s:.0f} s)", flush=True)  # fmt: skip
        np.save(data_dir / f"exact-top{TOP}-{size}.npy", best_ids)
        for profile in list(stores):
            if size > limits.get(profile, sizes[-1]):
                continue
            store = stores[profile]
            start = time.perf_counter()
            store.optimize()
            optimize_s = time.perf_counter() - start
            store.close()
            tenth = size // 10
            first, last = tenth / upsert_s[profile][:tenth].sum(), tenth / upsert_s[profile][size - tenth : size].sum()
            disk = folder_bytes(data_dir / profile) / size
            m = measure_in_child(data_dir, profile, size, args.queries, sizes[0])
            print(f"{size:>7,} {profile:<8} upsert {first:5.0f} -> {last:5.0f} pages/s ({last / first:.2f}x), "
                  f"optimize {optimize_s:5.1f} s, disk {disk:9,.0f} B/page ({disk / RAW_BYTES:.3f}x raw), "
                  f"reopen {m['reopen_s']:.2f} s, resident after reopen {m['open_anon'] + m['open_file']:8,.0f} "
                  f"B/page ({m['open_anon']:,.0f} anon + {m['open_file']:,.0f} mapped), after searches "
                  f"{m['searched_anon'] + m['searched_file']:8,.0f} ({m['searched_anon']:,.0f} + "
                  f"{m['searched_file']:,.0f}); default search cold p50 {m['cold_p50']:.1f} / p95 "
                  f"{m['cold_p95']:.1f} ms, warm p50 {m['warm_p50']:.1f} / p95 {m['warm_p95']:.1f} ms, "
                  f"recall@10 {m['warm_recall']:.3f}, target@10 {m['warm_target']:.2f}; dense 100 + pooled 128: "
                  f"warm p50 {m['warm128_p50']:.1f} / p95 {m['warm128_p95']:.1f} ms, recall@10 "
                  f"{m['warm128_recall']:.3f}, target@10 {m['warm128_target']:.2f}", flush=True)  # fmt: skip
            if size < sizes[-1] and size < limits.get(profile, sizes[-1]):
                stores[profile] = open_store(profile, data_dir=data_dir)
            else:
                del stores[profile]
                shutil.rmtree(data_dir / profile)  # the disk it takes is needed by the next sizes
    print(f"total {time.perf_counter() - began:,.0f} s", flush=True)
    if args.data_dir is None:
        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
