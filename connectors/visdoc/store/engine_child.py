"""The child's side of :class:`~visdoc.store.engine_process.EngineProcess`: run in the child
process, it opens the collection as an :class:`~visdoc.store.edge.EdgeStore` and answers the
parent's calls over the socket the parent passed down.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection

from ..children import picklable
from .base import StoreError
from .edge import EdgeStore


def serve(data_dir: str, name: str, fd: str) -> None:
    """The child's loop: open the collection, answer calls until ``None``, then close it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it then closes us
    conn = Connection(int(fd))
    try:
        store = EdgeStore(data_dir, name, lock=False)  # the parent holds the collection's lock
    except Exception as exc:
        conn.send((False, picklable(exc, StoreError)))
        return
    conn.send((True, None))
    try:
        while (request := conn.recv()) is not None:
            method, args, kwargs = request
            try:
                conn.send((True, getattr(store, method)(*args, **kwargs)))
            except Exception as exc:
                conn.send((False, picklable(exc, StoreError)))
    except (EOFError, OSError):
        pass  # the parent is gone: close the collection and exit
    try:
        store.close()
    except Exception as exc:
        _send_if_possible(conn, (False, picklable(exc, StoreError)))
        raise
    _send_if_possible(conn, (True, None))


def _send_if_possible(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except OSError:
        pass
