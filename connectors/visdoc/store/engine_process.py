"""An embedded collection's engine run in a child process, its calls forwarded over a socket. This
module is the parent's side (it starts the child and forwards the calls); the child runs
:mod:`visdoc.store.engine_child`.

qdrant-edge holds Python's GIL for the whole of each call, and the float lists it takes are built
under the GIL too: a few milliseconds per stored page. In a process that also drives a GPU, the
thread queueing the GPU's work waits for the GIL meanwhile and the GPU idles. In a child process
that work holds another interpreter's GIL; this process only pickles the points (arrays travel as
bytes) and waits on the socket with its GIL released.

The child is a fresh interpreter running :func:`visdoc.store.engine_child.serve` (not a
multiprocessing "spawn" child, which would re-import the caller's main script): it imports only the
store. The parent never imports the child's side.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from ..children import start_child
from .base import StoreError

REPLY_TIMEOUT_S = 600.0  # the longest wait for the child to close the collection (a flush) and exit


class EngineProcess:
    """A child process holding an :class:`~visdoc.store.edge.EdgeStore` of an existing collection
    whose lock this process holds; :meth:`call` runs one of its methods there, one call at a time.

    It starts in the background: the first call waits until the collection is open there, or
    raises why it could not be opened. A call interrupted while it talks to the child (Ctrl-C)
    leaves the connection unusable: later calls raise, and :meth:`close` stops the child, whose
    acknowledged writes are in the collection's log."""

    def __init__(self, data_dir: Path, name: str, *, lock_fd: int | None = None) -> None:
        """``lock_fd``: the collection's lock file, held by the child too, so that the lock outlives
        this process while the child still flushes (if this one is killed)."""
        self.name = name
        keep = [lock_fd] if lock_fd is not None else []
        self._process, self._conn = start_child("visdoc.store.engine_child:serve", [str(data_dir), name], keep_fds=keep)
        self._lock = threading.Lock()
        self._opened = False
        self._failure: BaseException | None = None  # why the child cannot be used (any more)

    @property
    def pid(self) -> int:
        return self._process.pid

    def call(self, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """``method(*args, **kwargs)`` on the child's store: its result, or its exception raised here."""
        with self._lock:
            self._wait_opened()
            ok, value = self._exchange((method, args, kwargs))
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Have the child flush and close the collection, or stop it if it cannot be asked (it died,
        hangs, or a call was interrupted): when this returns or raises, the child no longer has the
        collection open. Raises what closing it in the child failed with."""
        with self._lock:
            try:
                self._wait_opened(timeout=REPLY_TIMEOUT_S)
                ok, value = self._exchange(None, timeout=REPLY_TIMEOUT_S)
            except Exception:
                self.join(kill=True)  # it never opened the collection, died, hangs or was interrupted
                return  # calls have raised why; acknowledged writes are in the collection's log
            except BaseException:
                self.join(kill=True)
                raise
            if not ok:
                self.join()
                raise value

    def join(self, *, kill: bool = False) -> None:
        """Wait for the child to exit (stop it first with ``kill``, or if it hangs) and drop the socket.
        A Ctrl-C meanwhile is raised once the child is gone, never before."""
        interrupted: BaseException | None = None
        if kill:
            self._process.kill()  # no-op once it has exited
        while True:
            try:
                self._process.wait(timeout=REPLY_TIMEOUT_S)
                break
            except subprocess.TimeoutExpired:
                self._process.kill()
            except BaseException as exc:  # KeyboardInterrupt: stop it, wait, then raise
                interrupted = interrupted or exc
                self._process.kill()
        self._conn.close()
        if interrupted is not None:
            raise interrupted

    def _wait_opened(self, timeout: float | None = None) -> None:
        if not self._opened:
            ok, value = self._exchange(None, send=False, timeout=timeout)  # it opened there, or why not
            if not ok:
                self._failure = value
                raise value
            self._opened = True

    def _exchange(self, request: Any, *, send: bool = True, timeout: float | None = None) -> tuple[bool, Any]:
        """Send ``request`` (unless ``send`` is false) and read the reply: ``(ok, result or error)``."""
        if self._failure is not None:
            raise self._failure
        try:
            if send:
                self._conn.send(request)
            if timeout is not None and not self._conn.poll(timeout):
                raise StoreError(f"the engine process of collection {self.name!r} gave no answer in {timeout:.0f} s")
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            self._failure = self._stopped()
            raise self._failure from exc
        except BaseException:
            self._failure = StoreError(f"a call to the engine process of collection {self.name!r} was interrupted")
            raise

    def _stopped(self) -> StoreError:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return StoreError(f"the engine process of collection {self.name!r} stopped (exit code {code}); "
                          "writes it had not acknowledged may be lost")  # fmt: skip
