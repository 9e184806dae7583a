"""Compute an iterator's next items in a background thread while the caller works on the current one."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class ReadAhead(Generic[T]):
    """Iterates ``items`` in order, producing up to ``depth`` of them ahead in one background thread.

    Production starts at once, before the first ``next()``: create it, then wait for whatever the
    items are for (a lock, a device), and the first ones are ready. Items are produced one at a
    time in that thread, so a generator is safe to pass; its errors are raised by ``next()`` at the
    item where they happened. ``depth=0`` iterates in the calling thread. Use it as a context
    manager (or call :meth:`close`): what was queued is cancelled, the item in progress awaited,
    and ``items`` closed.
    """

    def __init__(self, items: Iterable[T], depth: int, *, name: str = "visdoc-read-ahead") -> None:
        self._items = iter(items)
        self._pending: deque[Future[object]] = deque()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name) if depth > 0 else None
        for _ in range(depth):
            self._submit()

    def _submit(self) -> None:
        assert self._thread is not None
        self._pending.append(self._thread.submit(next, self._items, _DONE))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._thread is None:
            return next(self._items)
        if not self._pending:
            raise StopIteration
        item = self._pending.popleft().result()
        if item is _DONE:
            self._pending.clear()
            raise StopIteration
        self._submit()
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop producing: cancel what is queued, wait for the item in progress, close ``items``."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
