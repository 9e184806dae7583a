"""An embedded collection's engine run in a child process, its calls forwarded over a pipe.

qdrant-edge holds Python's GIL for the whole of each call, and the float lists it takes are built
under the GIL too: a few milliseconds per stored page. In a process that also drives a GPU, the
thread queueing the GPU's work waits for the GIL meanwhile and the GPU idles. In a child process
that work holds another interpreter's GIL; this process only pickles the points (arrays travel as
bytes) and waits on the pipe with its GIL released.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .base import StoreError

CLOSE_TIMEOUT_S = 600.0  # closing flushes the collection; a large one takes a while


class EngineProcess:
    """A child process holding an :class:`~visdoc.store.edge.EdgeStore` of an existing collection
    whose lock this process holds; :meth:`call` runs one of its methods there, one call at a time.

    It starts in the background: the first call waits until the collection is open there (or
    raises why it could not be opened)."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.name = name
        context = multiprocessing.get_context("spawn")  # never fork a process that runs torch threads
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=serve, args=(str(data_dir), name, child_end),
                                        name=f"visdoc-engine-{name}", daemon=True)  # fmt: skip
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()
        self._opened = False

    def call(self, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """``method(*args, **kwargs)`` on the child's store: its result, or its exception raised here."""
        with self._lock:
            self._wait_opened()
            try:
                self._conn.send((method, args, kwargs))
            except OSError as exc:
                raise self._stopped() from exc
            return self._reply()

    def close(self) -> None:
        """Flush and close the collection in the child; it then exits (see :meth:`join`)."""
        with self._lock:
            try:
                self._wait_opened()
                self._conn.send(None)
                self._reply()
            except (StoreError, OSError):
                pass  # it stopped or never opened the collection: there is nothing left to flush

    def join(self) -> None:
        """Wait for the child to exit (killing it if it hangs) and release the pipe."""
        self._process.join(timeout=CLOSE_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def _wait_opened(self) -> None:
        if not self._opened:
            self._reply()  # the collection opened there, or why not
            self._opened = True

    def _reply(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._stopped() from exc
        if not ok:
            raise value
        return value

    def _stopped(self) -> StoreError:
        self._process.join(timeout=5)
        return StoreError(f"the engine process of collection {self.name!r} stopped (exit code "
                          f"{self._process.exitcode}); writes it had not acknowledged may be lost")  # fmt: skip


def serve(data_dir: str, name: str, conn: Connection) -> None:
    """The child's loop: open the collection, answer calls until ``None``, then close it."""
    import signal

    from .edge import EdgeStore

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it closes us in order

    try:
        store = EdgeStore(data_dir, name, lock=False)  # the parent holds the collection's lock
    except Exception as exc:
        conn.send((False, _picklable(exc)))
        return
    conn.send((True, None))
    try:
        while (request := conn.recv()) is not None:
            method, args, kwargs = request
            try:
                conn.send((True, getattr(store, method)(*args, **kwargs)))
            except Exception as exc:
                conn.send((False, _picklable(exc)))
    finally:
        store.close()
    conn.send((True, None))


def _picklable(exc: Exception) -> Exception:
    """The exception itself where it survives pickling, else a StoreError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return StoreError(f"{type(exc).__name__}: {exc}")
    return exc
