"""The child's side of :class:`~visdoc.store.engine_process.EngineProcess`: run in the child
process, it opens the collection as an :class:`~visdoc.store.edge.EdgeStore` and answers the
parent's calls over the socket the parent passed down.
"""

from __future__ import annotations

import pickle
import signal
from multiprocessing.connection import Connection

from .base import StoreError
from .edge import EdgeStore


def serve(data_dir: str, name: str, fd: str) -> None:
    """The child's loop: open the collection, answer calls until ``None``, then close it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it then closes us
    conn = Connection(int(fd))
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
    except (EOFError, OSError):
        pass  # the parent is gone: close the collection and exit
    try:
        store.close()
    except Exception as exc:
        _send_if_possible(conn, (False, _picklable(exc)))
        raise
    _send_if_possible(conn, (True, None))


def _send_if_possible(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except OSError:
        pass


def _picklable(exc: Exception) -> Exception:
    """The exception itself where it survives pickling, else a StoreError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return StoreError(f"{type(exc).__name__}: {exc}")
    return exc
