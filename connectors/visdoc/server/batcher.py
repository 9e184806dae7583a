"""Dynamic micro-batching: requests from many clients share forward passes of one model."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..encoder.contract import EncodeResult


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

    @property
    def key(self) -> tuple:
        """Units with the same key can share a forward pass."""
        return (self.kind, self.task, self.prompt, self.dim, self.max_pixels)


class QueueFull(Exception):
    """The server has more waiting inputs than it accepts; the client should retry later."""


class MicroBatcher:
    """Collects units for up to ``max_wait`` seconds (or ``max_items``), runs each group of
    compatible units as one ``encode`` call in a worker thread, one call at a time, and
    resolves every unit's future with its :class:`~visdoc.encoder.EncodedItem`."""

    def __init__(
        self,
        encode: Callable[[str, list[Unit]], EncodeResult],
        *,
        max_queue: int,
        max_queue_bytes: int = 1 << 30,
        max_items: int = 256,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._encode = encode
        self.max_queue, self.max_items, self.max_wait = max_queue, max_items, max_wait
        self.max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Unit] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, units: list[Unit]) -> None:
        """Queue a request's units, all or none (raises :class:`QueueFull`)."""
        if self._queue.qsize() + len(units) > self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} inputs are waiting; the server accepts {self.max_queue}")
        size = sum(u.size for u in units)
        if self._queued_bytes + size > self.max_queue_bytes:
            raise QueueFull(
                f"{self._queued_bytes} bytes of inputs are waiting; the server holds {self.max_queue_bytes}"
            )
        self._queued_bytes += size
        for unit in units:
            self._queue.put_nowait(unit)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_items:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            self._queued_bytes -= sum(u.size for u in batch)
            groups: dict[tuple, list[Unit]] = defaultdict(list)
            for unit in batch:
                if not unit.future.done():  # its client may have gone away
                    groups[unit.key].append(unit)
            for units in groups.values():
                self._on_batch(len(units))
                try:
                    result = await asyncio.to_thread(self._encode, units[0].kind, units)
                except Exception:  # one bad input must not fail its batch-mates: retry one by one
                    for unit in units:
                        await self._run_alone(unit)
                    continue
                for i, unit in enumerate(units):
                    if not unit.future.done():
                        unit.future.set_result(result.item(i))

    async def _run_alone(self, unit: Unit) -> None:
        try:
            result = await asyncio.to_thread(self._encode, unit.kind, [unit])
        except Exception as exc:
            if not unit.future.done():
                unit.future.set_exception(exc)
            return
        if not unit.future.done():
            unit.future.set_result(result.item(0))
