"""A one-word request's latency while a large request is encoded: first come, first served against
fair batching (issue 16, item 5c).

The embedding app runs in this process with the tiny checkpoint (tests/data/jina-v4-tiny), reached
through httpx's ASGI transport (its lifespan started by hand, so its batcher runs as under
uvicorn). For each mode: send the large request (``--texts`` texts of ``--chars`` characters, the
issue's 20 x 100,000 by default, within the default limits), wait until the model has started on
it, send ``"hello"``, and time both. *fifo* is the batcher's former order (``fair=False``: one
batch takes up to 256 waiting inputs whatever their size, so the large request is one forward
call); *fair* is the default (batches of about 32k tokens, a request that has not had a turn
first).

    python benchmarks/server_fairness.py [--texts 20] [--chars 100000] [--threads 2] [--modes fifo,fair]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "jina-v4-tiny"


class Watched:
    """The model, noting when it starts on a long text and how many texts each call had."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self._model = model
        self.long_started = threading.Event()
        self.calls: list[int] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)

    def encode_texts(self, texts, **options):  # noqa: ANN001, ANN201
        self.calls.append(len(texts))
        if any(len(t) > 1000 for t in texts):
            self.long_started.set()
        return self._model.encode_texts(texts, **options)


async def measure(app, model: Watched, large: list[str]) -> tuple[float, float]:  # noqa: ANN001
    """(small request's latency, large request's latency) in seconds."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=3600) as client:

            async def send(body: dict) -> float:
                began = time.perf_counter()
                response = await client.post("/v1/embeddings", json=body)
                response.raise_for_status()
                return time.perf_counter() - began

            big = asyncio.create_task(send({"input": large, "truncate": True}))
            while not model.long_started.is_set():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)  # well into the large request's first forward pass
            small = await send({"input": "hello"})
            return small, await big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--modes", default="fifo,fair")
    args = parser.parse_args()

    import torch

    import visdoc.server.app as app_module
    from visdoc import JinaV4
    from visdoc.server.batcher import MicroBatcher

    torch.set_num_threads(args.threads)
    model = JinaV4.from_pretrained(FIXTURE, dtype="float32")
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    large = [(f"{i} " + words * (args.chars // len(words) + 1))[: args.chars] for i in range(args.texts)]
    print(f"large request: {args.texts} texts of {args.chars} characters; small request: 'hello'; "
          f"tiny checkpoint, {args.threads} torch threads")  # fmt: skip
    rows = []
    for mode in args.modes.split(","):
        watched = Watched(model)
        app_module.MicroBatcher = functools.partial(MicroBatcher, fair=mode == "fair")  # the app's batcher
        try:
            app = app_module.create_app(watched)
            small, big = asyncio.run(measure(app, watched, large))
        finally:
            app_module.MicroBatcher = MicroBatcher
        rows.append((mode, small, big, len(watched.calls), max(watched.calls)))
        print(f"  {mode}: small {small:.2f} s, large {big:.1f} s", flush=True)
    print(f"{'mode':<6} {'small request s':>16} {'large request s':>16} {'forward calls':>14} {'most texts/call':>16}")
    for mode, small, big, calls, most in rows:
        print(f"{mode:<6} {small:>16.2f} {big:>16.1f} {calls:>14} {most:>16}")
    if len(rows) == 2:
        print(f"small request: {rows[0][1] / rows[1][1]:.0f}x faster with {rows[1][0]} than with {rows[0][0]}")


if __name__ == "__main__":
    main()
