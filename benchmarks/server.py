"""Embedding server throughput and latency for 1, 8 and 64 concurrent clients, against in-process calls.

Starts ``visdoc serve`` on a loopback port (a subprocess, as in production), then for each
concurrency level sends one-text requests from that many client threads and measures requests/s
and per-request p50/p95 latency. The same texts are also encoded in-process, one call per text
(what each web worker would do with its own model) and as one batched call (the ceiling).

    python benchmarks/server.py [--model tests/data/jina-v4-tiny | --medium] [--requests 256]

``--medium`` builds the 116M-parameter random checkpoint of ``encode_cpu.py``: with a model whose
forward pass costs more than an HTTP round trip, batching across clients pays off.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from visdoc import JinaV4

ROOT = Path(__file__).resolve().parents[1]
WORDS = "invoice receipt revenue quarter chart table figure page scanned total growth report margin".split()


def launch(*command: str) -> tuple[subprocess.Popen, str]:
    """Start ``visdoc <command...>`` on a free loopback port; return it once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "visdoc", *command, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def run_clients(url: str, texts: list[str], clients: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p95 ms) with ``clients`` threads, each with its own connection."""
    local = [httpx.Client(base_url=url, timeout=120) for _ in range(clients)]
    latencies: list[float] = []

    def worker(c: int) -> None:
        for text in texts[c::clients]:
            start = time.perf_counter()
            response = local[c].post("/v1/embeddings", json={"input": text, "task": "retrieval.query"})
            response.raise_for_status()
            latencies.append(1000 * (time.perf_counter() - start))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.perf_counter() - start
    for client in local:
        client.close()
    return len(texts) / elapsed, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "tests" / "data" / "jina-v4-tiny"))
    parser.add_argument("--medium", action="store_true", help="a 116M-parameter random checkpoint instead")
    parser.add_argument("--requests", type=int, default=256)
    args = parser.parse_args()
    if args.medium:
        sys.path.insert(0, str(Path(__file__).parent))
        from encode_cpu import SPEC

        from visdoc.testing import build_checkpoint

        args.model = str(build_checkpoint(Path(tempfile.mkdtemp()) / "medium", SPEC))
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 30)))) for _ in range(args.requests)]

    model = JinaV4.from_pretrained(args.model)
    model.encode_texts(texts[:8])  # warm-up
    start = time.perf_counter()
    for text in texts:
        model.encode_texts([text], prompt_name="query")
    one_by_one = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    model.encode_texts(texts, prompt_name="query")
    batched = len(texts) / (time.perf_counter() - start)
    del model

    proc, url = launch("serve", "--model", args.model)
    try:
        run_clients(url, texts[:16], 4)  # warm-up
        rows = [(clients, *run_clients(url, texts, clients)) for clients in (1, 8, 64)]
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        proc.terminate()
        proc.wait(10)
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("visdoc_batch_size_count"))
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("visdoc_batch_size_sum"))
    print(f"model {args.model}; {len(texts)} one-text requests of 5..30 words")
    print(f"in-process, one call per text: {one_by_one:8.1f} texts/s")
    print(f"in-process, one batched call:  {batched:8.1f} texts/s")
    print(f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'vs one-by-one':>14}")
    for clients, rate, p50, p95 in rows:
        print(f"{clients:7d} {rate:8.1f} {p50:8.1f} {p95:8.1f} {rate / one_by_one:13.2f}x")
    print(f"mean inputs per forward pass on the server: {total / count:.1f}")


if __name__ == "__main__":
    main()
