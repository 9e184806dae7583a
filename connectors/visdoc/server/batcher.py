"""Dynamic micro-batching: requests from many clients share forward passes of one model, fairly.

Fairness. Each request's inputs wait in streams, one per kind and options (inputs that can share
a forward pass). Batches are cut to about ``max_batch_cost`` tokens, and the streams take turns
leading them: a request that has not had a turn goes first, a stream that led goes to the back,
and each other stream of the same kind joins a batch with at most its share of the budget
(``max_batch_cost`` / waiting streams). So a request of many long texts is encoded a piece at a
time, and a one-word request that comes in meanwhile waits for the piece in flight, not for the
whole request. A stream passed over :data:`STARVE_LIMIT` batches in a row leads the next one, so
a stream of small requests cannot starve a large one either. ``fair=False`` is the former first
come, first served order (one batch takes up to ``max_items`` waiting inputs, whatever their
size), kept for comparison (``benchmarks/server_fairness.py``).

A ``solo`` unit (a late-chunking request: all its texts in one pass) shares its pass with no other
unit; its future gets the whole :class:`~visdoc.encoder.EncodeResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..encoder.contract import EncodeResult

DEFAULT_BATCH_COST = 32768  # tokens per batch: one GPU forward pass of the local model (GPU_BATCH_TOKENS)
STARVE_LIMIT = 4  # batches a waiting stream may be passed over before it leads one


@dataclass
class Unit:
    """One input of one request, waiting for its embedding."""

    kind: str  # "text" or "image"
    content: Any
    task: str
    prompt: str
    dim: int | None
    max_pixels: int | None
    future: asyncio.Future = field(repr=False)
    size: int = 0  # bytes it holds while queued
    cost: int = 1  # about the tokens it takes (text_cost, image_cost)
    solo: bool = False  # a pass of its own; the future gets the whole EncodeResult

    @property
    def key(self) -> tuple:
        """Units with the same key can share a forward pass."""
        return (self.kind, self.task, self.prompt, self.dim, self.max_pixels) + ((id(self),) if self.solo else ())

    def resolve(self, result: EncodeResult, index: int) -> None:
        """Answer the unit with its item ``index`` of ``result`` (a solo unit: all of it)."""
        if not self.future.done():
            self.future.set_result(result if self.solo else result.item(index))


def text_cost(text: str) -> int:
    """About the tokens of a text: one per 4 characters of ASCII, one per 2 characters otherwise."""
    return len(text) // (4 if text.isascii() else 2) + 1


def image_cost(width: int, height: int, max_pixels: int, factor: int) -> int:
    """About the tokens of an image resized within ``max_pixels``: one per ``factor`` x ``factor`` pixels."""
    return min(width * height, max_pixels) // (factor * factor) + 1


class QueueFull(Exception):
    """The server has more waiting inputs than it accepts; the client should retry later."""


@dataclass
class _Stream:
    """A request's waiting units of one key."""

    key: tuple
    units: deque[Unit]
    arrived: float
    skipped: int = 0  # batches formed in a row without a unit of this stream


class MicroBatcher:
    """Collects units for up to ``max_wait`` seconds, runs each batch (fairly cut from the
    waiting requests, see the module's docstring) as one ``encode`` call in a worker thread, one
    call at a time, and resolves every unit's future with its :class:`~visdoc.encoder.EncodedItem`
    (a solo unit's with the whole :class:`~visdoc.encoder.EncodeResult`)."""

    def __init__(
        self,
        encode: Callable[[str, list[Unit]], EncodeResult],
        *,
        max_queue: int,
        max_queue_bytes: int = 1 << 30,
        max_items: int = 256,
        max_wait: float = 0.005,
        max_batch_cost: int = DEFAULT_BATCH_COST,
        fair: bool = True,
        on_batch: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._encode = encode
        self.max_queue, self.max_items, self.max_wait = max_queue, max_items, max_wait
        self.max_queue_bytes, self.max_batch_cost, self.fair = max_queue_bytes, max_batch_cost, fair
        self._queued_bytes = 0
        self._waiting = 0
        self._on_batch = on_batch
        self._turns: deque[_Stream] = deque()  # the stream at the front leads the next batch
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._waiting

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, units: list[Unit]) -> None:
        """Queue a request's units, all or none (raises :class:`QueueFull`)."""
        if self._waiting + len(units) > self.max_queue:
            raise QueueFull(f"{self._waiting} inputs are waiting; the server accepts {self.max_queue}")
        size = sum(u.size for u in units)
        if self._queued_bytes + size > self.max_queue_bytes:
            raise QueueFull(
                f"{self._queued_bytes} bytes of inputs are waiting; the server holds {self.max_queue_bytes}"
            )
        self._queued_bytes += size
        self._waiting += len(units)
        now = asyncio.get_running_loop().time()
        streams: dict[tuple, _Stream] = {}
        for unit in units:
            streams.setdefault(unit.key, _Stream(unit.key, deque(), now)).units.append(unit)
        if self.fair:  # a request that has not had a turn goes first
            self._turns.extendleft(reversed(streams.values()))
        else:
            self._turns.extend(streams.values())
        self._arrived.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._turns:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delay = min(s.arrived for s in self._turns) + self.max_wait - loop.time()
            if delay > 0 and self._waiting < self.max_items:  # let concurrent requests join
                await asyncio.sleep(delay)
            batch = self._next_batch() if self.fair else self._first_come()
            groups: dict[tuple, list[Unit]] = defaultdict(list)
            for unit in batch:
                groups[unit.key].append(unit)
            for units in groups.values():
                try:
                    await self._run_batch(units)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # e.g. a pyo3 PanicException: answer its units, keep serving
                    for unit in units:
                        if not unit.future.done():
                            unit.future.set_exception(_failure(exc))

    def _next_batch(self) -> list[Unit]:
        """The next fair batch: the leading stream's units up to the budget, and each other
        stream of its key up to its share."""
        leader = next((s for s in self._turns if s.skipped >= STARVE_LIMIT), self._turns[0])
        share = self.max_batch_cost // len(self._turns)
        batch: list[Unit] = []
        cost = 0
        for stream in [leader, *(s for s in self._turns if s is not leader and s.key == leader.key)]:
            allowance, taken = (self.max_batch_cost if stream is leader else share), 0
            while stream.units and len(batch) < self.max_items:
                unit = stream.units[0]
                if batch and (taken + unit.cost > allowance or cost + unit.cost > self.max_batch_cost):
                    break
                batch.append(self._take(stream))
                taken += unit.cost
                cost += unit.cost
            stream.skipped = -1 if taken else stream.skipped
        for stream in self._turns:
            stream.skipped += 1  # those that took part are back at 0
        self._turns.remove(leader)
        self._turns.append(leader)  # its turn is over
        self._forget_empty()
        return [u for u in batch if not u.future.done()]  # a client that went away

    def _first_come(self) -> list[Unit]:
        """Up to ``max_items`` units in the order they came, whatever their cost."""
        batch: list[Unit] = []
        for stream in self._turns:
            while stream.units and len(batch) < self.max_items:
                batch.append(self._take(stream))
        self._forget_empty()
        return [u for u in batch if not u.future.done()]

    def _take(self, stream: _Stream) -> Unit:
        unit = stream.units.popleft()
        self._waiting -= 1
        self._queued_bytes -= unit.size
        return unit

    def _forget_empty(self) -> None:
        self._turns = deque(s for s in self._turns if s.units)

    async def _run_batch(self, units: list[Unit]) -> None:
        self._on_batch(len(units))
        try:
            result = await asyncio.to_thread(self._encode, units[0].kind, units)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # one bad input must not fail its batch-mates: retry one by one
            if len(units) == 1:
                _fail(units[0], exc)
                return
            for unit in units:
                await self._run_alone(unit)
            return
        for i, unit in enumerate(units):
            unit.resolve(result, i)

    async def _run_alone(self, unit: Unit) -> None:
        try:
            result = await asyncio.to_thread(self._encode, unit.kind, [unit])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a panic becomes an error of this request alone
            _fail(unit, exc)
            return
        unit.resolve(result, 0)


def _fail(unit: Unit, exc: BaseException) -> None:
    """Answer the unit with the encoder's error."""
    if not unit.future.done():
        unit.future.set_exception(exc if isinstance(exc, Exception) else _failure(exc))


def _failure(exc: BaseException) -> RuntimeError:
    """An error a request handler can answer with, for what the encoder raised outside ``Exception``."""
    return RuntimeError(f"encoding failed: {type(exc).__name__}: {exc}")
