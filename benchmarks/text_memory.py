"""Peak memory of ingesting one large text file (issue 16, item 5a).

Generates a text file of ``--mb`` megabytes (paragraphs of random words), then ingests it with the
tiny checkpoint (tests/data/jina-v4-tiny; its encoding is cheap) into an embedded store in a child
process, and prints the child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), the
RSS it had once the model was loaded, and the chunks planned and stored. ``--steps N`` stops the
run after N steps (N x ``--batch-size`` chunks stored): planning (hashing, encoding check, the
whole file tokenized and cut into chunks) always runs to the end, and each later step reads and
embeds only its own chunks, so the peak of planning plus a few steps is the peak of the whole run.

    python benchmarks/text_memory.py [--mb 50] [--steps 20] [--batch-size 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "jina-v4-tiny"


def generate(path: Path, megabytes: int, seed: int = 0) -> None:
    """Paragraphs of random words from a 5,000-word vocabulary, written a megabyte at a time."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(5000)]
    target = megabytes << 20
    with path.open("w", encoding="utf-8") as out:
        written = 0
        while written < target:
            paragraphs = []
            for _ in range(200):
                words = rng.choices(vocabulary, k=rng.randint(40, 160))
                paragraphs.append(" ".join(words).capitalize() + ".\n\n")
            block = "".join(paragraphs)[: target - written]
            out.write(block)
            written += len(block)


def ingest(path: str, data_dir: str, steps: int, batch_size: int, threads: int, results) -> None:  # noqa: ANN001
    """The child: load the model, ingest ``path``, report what was stored and when."""
    import torch

    from visdoc import JinaV4
    from visdoc.ingest import Ingestor
    from visdoc.ingest.stages import IngestCancelled, IngestHooks
    from visdoc.store import CollectionSpec, open_store

    torch.set_num_threads(threads)
    model = JinaV4.from_pretrained(FIXTURE, dtype="float32")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored, first_write = [0], [0.0]
    start = time.perf_counter()

    def on_stored(n: int) -> None:
        stored[0] += 1
        first_write[0] = first_write[0] or time.perf_counter() - start

    hooks = IngestHooks(on_stored=on_stored, cancelled=lambda: bool(steps) and stored[0] >= steps)
    with open_store("text", CollectionSpec(dim=model.dims[-1], model=model.name), data_dir=data_dir) as store:
        runner = Ingestor(model, store, workers=0, batch_size=batch_size)
        report = None
        try:
            report = runner.ingest([path], hooks=hooks)
        except IngestCancelled:
            pass
        chunks = store.count()
        total = next(iter(store.iter_records()), None)
        planned = total.payload.get("total_pages") if total is not None else 0
    problems = [str(p) for p in report.problems] if report else []
    results.put((loaded, chunks, planned, first_write[0], time.perf_counter() - start, problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50, help="size of the generated text file")
    parser.add_argument("--steps", type=int, default=20, help="stop after this many steps (0: ingest all)")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks per step (the CPU default)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the child")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="visdoc-text-memory-") as tmp:
        path = Path(tmp) / "large.txt"
        began = time.perf_counter()
        generate(path, args.mb)
        print(f"generated {path.stat().st_size / 2**20:.1f} MiB of text in {time.perf_counter() - began:.1f} s")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        child = context.Process(target=ingest, args=(str(path), str(Path(tmp) / "data"), args.steps,
                                                     args.batch_size, args.threads, results))  # fmt: skip
        child.start()
        loaded, chunks, planned, first_write, seconds, problems = results.get()
        child.join()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    scope = f"planning + the first {args.steps} steps" if args.steps else "the whole ingestion"
    print(f"chunks planned: {planned}; stored: {chunks} ({scope}); problems: {problems or 'none'}")
    print(f"first write after {first_write:.1f} s (hash, encoding check, tokenize and cut the whole file); "
          f"run {seconds:.1f} s")  # fmt: skip
    print(f"child RSS once the model was loaded: {loaded / 1024:.0f} MiB")
    print(f"child peak RSS: {peak / 1024:.0f} MiB (target < 1024 MiB: {'met' if peak < 1 << 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
