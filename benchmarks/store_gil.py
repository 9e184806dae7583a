"""How much storing pages holds up another thread of the process, engine here vs in a child process.

A "feeder" thread stands for the one that drives a GPU: it needs the GIL for a few microseconds
every ``--wait-ms`` (queueing work, then waiting for the device with the GIL released). A writer
thread stores pages (780 x 128 tokens and a 2048-d vector each, 16 per call, as ``Ingestor`` does)
as fast as it can, into the embedded store as it is, and inside ``store.engine_process()``, where
the engine works in a child process. Printed: the feeder's rate as a share of its rate alone, and
the writer's pages/s, side by side in one run.

    python benchmarks/store_gil.py [--seconds 5] [--wait-ms 0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time

import numpy as np

from visdoc.store import CollectionSpec, PagePoint, Store, open_store, point_id


def feeder(stop: threading.Event, wait_s: float, rounds: list[int]) -> None:
    n = 0
    while not stop.is_set():
        sum(range(20))  # a few microseconds holding the GIL
        time.sleep(wait_s)
        n += 1
    rounds.append(n)


def measure(
    seconds: float, wait_s: float, write: contextlib.AbstractContextManager | None = None, store: Store | None = None
) -> tuple[float, float]:
    """(feeder rounds per second, pages stored per second) over ``seconds``; pages are written into
    ``store`` inside ``write`` unless it is None."""
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((780, 128)).astype(np.float32)
    dense = rng.standard_normal(2048).astype(np.float32)
    stop, rounds, pages = threading.Event(), [], [0]

    def writer() -> None:
        while not stop.is_set():
            batch = [PagePoint(point_id("gil", pages[0] + k), dense, tokens, {"page": pages[0] + k}) for k in range(16)]
            store.upsert(batch)  # type: ignore[union-attr]
            pages[0] += len(batch)

    with write or contextlib.nullcontext():
        threads = [threading.Thread(target=feeder, args=(stop, wait_s, rounds))]
        if write is not None:
            threads.append(threading.Thread(target=writer))
            store.count()  # type: ignore[union-attr]  # the engine process has opened the collection before the clock starts
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
    return rounds[0] / seconds, pages[0] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--wait-ms", type=float, default=0.2)
    args = parser.parse_args()
    wait_s = args.wait_ms / 1000
    with tempfile.TemporaryDirectory() as tmp, open_store("gil", CollectionSpec(dim=2048), data_dir=tmp) as store:
        alone, _ = measure(args.seconds, wait_s, None)
        here = measure(args.seconds, wait_s, contextlib.nullcontext(), store)
        child = measure(args.seconds, wait_s, store.engine_process(), store)
    print(f"feeder alone: {alone:,.0f} rounds/s (a {args.wait_ms:g} ms wait each)")
    print(f"{'engine':<22} {'feeder vs alone':>16} {'pages/s stored':>15}")
    for name, (rounds, pages) in (("in this process", here), ("in a child process", child)):
        print(f"{name:<22} {rounds / alone:>16.0%} {pages:>15.1f}")


if __name__ == "__main__":
    main()
