"""The embedding server schedules fairly: a one-word request that comes in while a large one is
being encoded is answered before the large one, not after it; a large one still progresses."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")

LARGE = ["lorem ipsum " * 8333 + "dolo"] * 20  # 20 texts of 100,000 characters: within the default limits


class SlowModel:
    """The tiny model as slow as a large one would be on long texts: ``per_char`` seconds per
    character; each text is then cut to its first 200 characters for the real (tiny) encoding."""

    def __init__(self, model, per_char: float) -> None:  # noqa: ANN001
        self._model, self.per_char = model, per_char
        self.started = threading.Event()
        self.calls: list[int] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)

    def encode_texts(self, texts: list[str], **options):  # noqa: ANN201
        self.started.set()
        self.calls.append(len(texts))
        time.sleep(self.per_char * sum(len(t) for t in texts))
        return self._model.encode_texts([t[:200] for t in texts], **options)


def test_a_small_request_is_answered_before_a_large_one_sent_first(tiny_fp32):
    from visdoc.server.app import create_app

    model = SlowModel(tiny_fp32, 1e-6)  # 0.1 s a long text, 2 s the whole large request
    app = create_app(model)
    finished: list[tuple[str, float, httpx.Response]] = []

    async def scenario() -> float:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:

                async def send(name: str, body: dict) -> None:
                    response = await client.post("/v1/embeddings", json=body)
                    finished.append((name, time.perf_counter(), response))

                large = asyncio.create_task(send("large", {"input": LARGE, "truncate": True}))
                while not model.started.is_set():  # the large request is being encoded
                    await asyncio.sleep(0.005)
                sent = time.perf_counter()
                await send("small", {"input": "hello"})
                await large
                return sent

    sent = asyncio.run(scenario())
    assert [name for name, _, _ in finished] == ["small", "large"]
    assert all(response.status_code == 200 for _, _, response in finished)
    (_, small_done, small), (_, _, large) = finished
    assert len(small.json()["data"]) == 1 and len(large.json()["data"]) == 20
    assert small_done - sent < 1.0  # a piece of the large request in flight, not all of it
    assert max(model.calls) < len(LARGE)  # the large request went in pieces


def test_the_large_request_is_embedded_as_it_would_be_alone(tiny_fp32):
    from visdoc.server.batcher import MicroBatcher, Unit, text_cost

    calls: list[list[str]] = []

    def encode(kind: str, units: list[Unit]):  # noqa: ANN202
        calls.append([u.content for u in units])
        return tiny_fp32.encode_texts([u.content for u in units], dense=True, multivector=False)

    texts = [f"text {i} " + "word " * (50 * i) for i in range(12)]

    async def run() -> list:
        batcher = MicroBatcher(encode, max_queue=100, max_batch_cost=300)
        batcher.start()
        loop = asyncio.get_running_loop()
        big = [Unit("text", t, "retrieval", "passage", None, None, loop.create_future(), len(t), text_cost(t))
               for t in texts]  # fmt: skip
        small = [Unit("text", "hi", "retrieval", "passage", None, None, loop.create_future(), 2, text_cost("hi"))]
        batcher.submit(big)
        batcher.submit(small)
        results = await asyncio.gather(*(u.future for u in big + small))
        await batcher.stop()
        assert batcher.depth == 0
        return results

    results = asyncio.run(run())
    alone = tiny_fp32.encode_texts([*texts, "hi"], dense=True, multivector=False)
    for i, item in enumerate(results):
        assert abs(float(item.dense @ alone.dense[i]) - 1) < 1e-4
    assert calls[0][0] == "hi"  # the request that has had no turn leads
    assert all(sum(text_cost(t) for t in batch) <= 300 or len(batch) == 1 for batch in calls)


class _Items:
    def item(self, index: int) -> int:
        return index


def test_a_stream_of_small_requests_does_not_starve_a_large_one():
    from visdoc.server.batcher import STARVE_LIMIT, MicroBatcher, Unit

    calls: list[list[str]] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def unit(text: str, cost: int) -> Unit:
            return Unit("text", text, "retrieval", "passage", None, None, loop.create_future(), len(text), cost)

        def encode(kind: str, units: list[Unit]) -> _Items:
            calls.append([u.content for u in units])
            if len(calls) < 30:  # another small request comes in during every forward pass
                loop.call_soon_threadsafe(batcher.submit, [unit(f"small {len(calls)}", 1)])
            time.sleep(0.005)
            return _Items()

        batcher = MicroBatcher(encode, max_queue=100, max_batch_cost=100)
        batcher.start()
        large = [unit(f"large {i}", 100) for i in range(4)]
        batcher.submit(large)
        await asyncio.gather(*(u.future for u in large))
        await batcher.stop()

    asyncio.run(run())
    turns = [i for i, batch in enumerate(calls) if any(text.startswith("large") for text in batch)]
    assert len(turns) == 4 and all(b - a <= STARVE_LIMIT + 1 for a, b in zip(turns, turns[1:], strict=False))
    assert any(batch == [f"small {i}"] for i, batch in enumerate(calls))  # small ones went alone meanwhile


class _Panic(BaseException):
    """What a Rust extension's panic looks like from Python (pyo3's PanicException is a BaseException)."""


def test_a_panic_in_the_encoder_fails_its_request_and_the_batcher_keeps_serving():
    from visdoc.server.batcher import MicroBatcher, Unit

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def unit(text: str) -> Unit:
            return Unit("text", text, "retrieval", "passage", None, None, loop.create_future(), len(text), 1)

        def encode(kind: str, units: list[Unit]) -> _Items:
            if any(u.content == "panic" for u in units):
                raise _Panic("the tokenizer panicked")
            return _Items()

        batcher = MicroBatcher(encode, max_queue=100)
        batcher.start()
        bad, good = unit("panic"), unit("fine")
        batcher.submit([bad])
        with pytest.raises(Exception, match="the tokenizer panicked"):
            await asyncio.wait_for(bad.future, 5)
        batcher.submit([good])
        assert await asyncio.wait_for(good.future, 5) == 0  # answered: the batcher still runs
        await batcher.stop()

    asyncio.run(run())
