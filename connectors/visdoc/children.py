"""Child processes that are fresh interpreters running one visdoc function, never the caller's script.

A multiprocessing "spawn" child re-imports the caller's ``__main__`` (a script without an
``if __name__ == "__main__":`` guard then runs again in every child). The embedded engine's child
process and the PDF render workers are started here instead: ``python -c`` importing this very
visdoc and calling one function, with a socket to the parent. Both sides pickle their messages;
:func:`picklable` keeps an exception that does not survive pickling from breaking the channel.
"""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding this very visdoc package


def start_child(
    target: str, args: Sequence[str], *, keep_fds: Sequence[int] = ()
) -> tuple[subprocess.Popen, Connection]:
    """Start ``target`` (``"package.module:function"``) in a fresh interpreter as
    ``function(*args, fd)``, ``fd`` being the child's end of a socket to this process; returns the
    process and this process's end. The child runs in its own session (Ctrl-C in a terminal reaches
    only this process, which then stops the child) and also keeps ``keep_fds``."""
    module, function = target.split(":")
    path = [str(SOURCE_ROOT), *sys.path]  # this very visdoc first
    code = f"import json, sys; sys.path[:0] = json.loads(sys.argv[1]); from {module} import {function}; " \
           f"{function}(*sys.argv[2:])"  # fmt: skip
    ours, theirs = socket.socketpair()
    argv = [sys.executable, "-c", code, json.dumps(path), *args, str(theirs.fileno())]
    try:
        process = subprocess.Popen(argv, pass_fds=[theirs.fileno(), *keep_fds], stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, Connection(ours.detach())


def picklable(exc: Exception, fallback: type[Exception]) -> Exception:
    """``exc`` itself where it survives pickling, else ``fallback`` carrying its type and text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return fallback(f"{type(exc).__name__}: {exc}")
    return exc
