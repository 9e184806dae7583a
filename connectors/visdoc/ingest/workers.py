"""A pool of worker processes that run picklable calls, tied to the process that started them.

Each worker is a fresh interpreter started with ``sys.executable -c`` that imports only this module
(and, to run a call, the call's own module): never the caller's main script, unlike a
multiprocessing "spawn" child, so a script that uses the pool needs no ``if __name__ ==
"__main__":`` guard. It gets this process's ``sys.path`` (this very visdoc first), talks over a
socket passed down as a file descriptor, and runs the calls sent to it one after the other.

A worker dies with the process that started it, however that ends (SIGKILL, SIGTERM, SIGBUS): on
Linux the kernel kills it when its parent exits (``PR_SET_PDEATHSIG``), elsewhere a thread in it
checks once a second; a worker whose parent is already gone when it starts exits at once. Workers
run in their own session and ignore SIGINT: Ctrl-C is the parent's, which then closes the pool.

A worker that dies costs only the call it was running: that call is tried once more on a new
worker, and raises :class:`WorkerDied` when it kills that one too. The calls queued behind it are
sent again, and the other workers keep theirs.

The pool is used from one thread (the one that submits and waits): workers are started there, as
the kernel ties a worker's life to the thread that started it.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..children import picklable, start_child
from ..errors import SourceError

RETRIES = 1  # a call that killed its worker is tried this many times more
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerDied(Exception):
    """The call killed its worker process every time it ran (it crashed there, or was killed)."""


class Task:
    """One call submitted to a :class:`WorkerPool`; :meth:`WorkerPool.result` waits for it."""

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.request = pickle.dumps((fn, args))
        self.deaths = 0  # workers that died while running it
        self.done = False
        self.ok = False
        self.value: Any = None


class _Worker:
    """One worker process, the calls sent to it in order, and a thread that reads their replies."""

    def __init__(self, parent_pid: int, changed: threading.Condition) -> None:
        self.process, self.conn = start_child("visdoc.ingest.workers:spawn_main", [str(parent_pid)])
        self.sent: deque[Task] = deque()  # sent, not answered yet; the first one is running
        self.alive = True
        self._changed = changed
        self._reader = threading.Thread(target=self._read, name="visdoc-worker-replies", daemon=True)
        self._reader.start()

    def send(self, task: Task) -> None:
        with self._changed:
            self.sent.append(task)
        try:
            self.conn.send_bytes(task.request)
        except OSError:  # it died: its reader sees that too, and the task is sent again
            pass

    def stop(self) -> None:
        """Kill the process, wait for it and its reader, drop the socket."""
        self.process.kill()  # no-op once it has exited
        self.process.wait()
        self._reader.join()
        self.conn.close()

    def _read(self) -> None:
        while True:
            try:
                reply = self.conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                ok, value = pickle.loads(reply)
            except Exception as exc:  # the call's result or exception does not unpickle here
                ok, value = False, exc
            with self._changed:
                task = self.sent.popleft()
                task.done, task.ok, task.value = True, ok, value
                self._changed.notify_all()
        with self._changed:
            self.alive = False
            self._changed.notify_all()


class WorkerPool:
    """Up to ``workers`` worker processes, started as calls come; each call goes to the worker with
    the fewest calls queued. :meth:`close` stops them (queued calls are dropped)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {workers}")
        self.workers = workers
        self._live: list[_Worker] = []
        self._changed = threading.Condition()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Task:
        """Queue ``fn(*args)`` (``fn`` and ``args`` are pickled: ``fn`` by its module and name)."""
        task = Task(fn, args)
        self._recover()
        self._send(task)
        return task

    def result(self, task: Task) -> Any:
        """What the call returned, or the exception it raised (raised here, same type and message,
        or a :class:`~visdoc.errors.SourceError` with its text when it does not pickle);
        :class:`WorkerDied` when it killed its worker :data:`RETRIES` + 1 times."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: task.done or any(not w.alive for w in self._live))
            self._recover()
            if task.done:
                break
        if not task.ok:
            raise task.value
        return task.value

    def close(self) -> None:
        """Stop the workers; calls not answered yet are dropped."""
        live, self._live = self._live, []
        for worker in live:
            worker.stop()

    def _send(self, task: Task) -> None:
        if len(self._live) < self.workers:
            self._live.append(_Worker(os.getpid(), self._changed))
        min(self._live, key=lambda w: len(w.sent)).send(task)

    def _recover(self) -> None:
        """Replace each dead worker: the call it was running is tried again unless it has killed
        :data:`RETRIES` + 1 workers (then it fails), the calls behind it are sent again."""
        with self._changed:
            dead = [w for w in self._live if not w.alive]
        for worker in dead:
            self._live.remove(worker)
            worker.stop()
            orphans = list(worker.sent)
            if orphans:
                running = orphans[0]
                running.deaths += 1
                if running.deaths > RETRIES:
                    with self._changed:
                        running.done, running.value = True, WorkerDied("its worker process died")
                    orphans.pop(0)
            for task in orphans:
                self._send(task)


def spawn_main(parent: str, fd: str) -> None:
    """The worker's side: die with ``parent``, then answer the calls sent over ``fd`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it then closes us
    if not _killed_with_parent():
        threading.Thread(target=_watch_parent, args=(int(parent),), name="visdoc-watch-parent", daemon=True).start()
    if os.getppid() != int(parent):  # the parent died before the kernel was told
        os._exit(1)
    conn = Connection(int(fd))
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the pool is closed
        try:
            fn, args = pickle.loads(request)
            reply = pickle.dumps((True, fn(*args)))
        except Exception as exc:
            reply = pickle.dumps((False, picklable(exc, SourceError)))
        try:
            conn.send_bytes(reply)
        except OSError:
            return


def _killed_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
