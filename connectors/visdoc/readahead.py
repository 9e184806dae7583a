"""Compute an iterator's next items in a background thread while the caller works on the current one."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(items: Iterable[T], depth: int, *, name: str = "visdoc-read-ahead") -> Iterator[T]:
    """Yield ``items`` in order, producing up to ``depth`` of them ahead in one background thread.

    The items are produced one at a time in that thread, so a generator is safe to pass; its
    errors are raised here, at the item where they happened. ``depth=0`` iterates in the calling
    thread. Close the returned generator (``contextlib.closing``) when stopping early: what was
    queued is cancelled, the item in progress is awaited, and ``items`` is closed.
    """
    iterator = iter(items)
    if depth <= 0:
        yield from iterator
        return
    pending: deque[Future[object]] = deque()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix=name) as thread:
            try:
                pending.extend(thread.submit(next, iterator, _DONE) for _ in range(depth))
                while (item := pending.popleft().result()) is not _DONE:
                    pending.append(thread.submit(next, iterator, _DONE))
                    yield item  # type: ignore[misc]
            finally:
                for future in pending:
                    future.cancel()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
