"""An embedded collection's folder: ``shard/`` (the engine's), ``visdoc.json`` (the spec), ``.lock``
and ``optimize.pending``.

Creating a collection writes its spec last, atomically (a temporary file, fsync, rename, fsync of
the folder), and nothing is written into the shard before: a folder without a readable spec is a
creation that was interrupted, holds no pages, and is replaced by the next create.
``optimize.pending`` exists from the first write after an optimize until the next one completes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .base import StoreError, StoreLockedError
from .schema import SPEC_FILE, CollectionSpec

SHARD_DIR = "shard"
LOCK_FILE = ".lock"
PENDING_FILE = "optimize.pending"
_ASIDE = ".interrupted-"  # a shard an interrupted creation left that could not be opened
_SPEC_TEMP = f".{SPEC_FILE}."  # + pid + ".tmp"
DATA_DIR_ENV = "VISDOC_DATA_DIR"
DEFAULT_DATA_DIR = "visdoc_data"

log = logging.getLogger("visdoc.store")


def data_dir_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The embedded store's folder: ``data_dir``, else ``$VISDOC_DATA_DIR``, else ``./visdoc_data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def read_spec(folder: Path) -> CollectionSpec | None:
    """The collection's spec, or None where it was never completely written."""
    try:
        return CollectionSpec.from_json(json.loads((folder / SPEC_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, AttributeError):  # empty or cut short: older versions wrote it in place
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {folder / SPEC_FILE}: {exc}") from exc


def write_spec(folder: Path, spec: CollectionSpec) -> None:
    """Write the spec so that a kill leaves either no spec or the whole of it."""
    temp = folder / f"{_SPEC_TEMP}{os.getpid()}.tmp"
    try:
        with open(temp, "w") as file:
            file.write(json.dumps(spec.to_json(), indent=2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, folder / SPEC_FILE)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard_unfinished(folder: Path, name: str, count_points: Callable[[Path], int | None]) -> None:
    """Clear what an interrupted creation left in ``folder`` (the engine refuses to create a shard
    over segment data), with a warning. Nothing that is not a creation's leftover is ever deleted:
    a folder holding anything else is refused, a shard holding points is refused, and a shard that
    cannot be opened to count them is moved aside (``shard.interrupted-N``), not deleted."""
    leftovers = [p for p in folder.iterdir() if p.name != LOCK_FILE]
    if not leftovers:
        return  # a new collection's empty folder: nothing was interrupted
    foreign = sorted(p.name for p in leftovers if not _creation_leftover(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise StoreError(f"{folder} is not a visdoc collection (it holds {shown}) and has no {SPEC_FILE}: choose "
                         "another collection name, or move those files away")  # fmt: skip
    shard = folder / SHARD_DIR
    points = count_points(shard) if shard.is_dir() else 0
    if points:
        raise StoreError(f"collection {name!r} in {folder.parent} holds {points} points but no readable {SPEC_FILE}: "
                         "restore that file, or delete the folder to start over")  # fmt: skip
    if points is None:  # unreadable: keep it, out of the way
        aside = folder / f"{SHARD_DIR}{_ASIDE}{time.time_ns()}"
        shard.rename(aside)
        leftovers = [p for p in leftovers if p != shard]
        log.warning("collection %r in %s was interrupted while it was being created; its shard cannot be opened "
                    "and was moved to %s: replacing it", name, folder.parent, aside.name)  # fmt: skip
    else:
        log.warning("collection %r in %s was interrupted while it was being created (it holds no pages): "
                    "replacing it", name, folder.parent)  # fmt: skip
    for path in leftovers:
        if path.name.startswith(SHARD_DIR + _ASIDE):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _creation_leftover(entry: str) -> bool:
    """Whether a folder entry is one that creating a collection writes (see :func:`write_spec`)."""
    return (entry in (SHARD_DIR, SPEC_FILE, PENDING_FILE) or entry.startswith(SHARD_DIR + _ASIDE)
            or (entry.startswith(_SPEC_TEMP) and entry.endswith(".tmp")))  # fmt: skip


def interrupted_message(name: str, data_dir: Path) -> str:
    return (f"collection {name!r} in {data_dir} has no readable {SPEC_FILE}: it was interrupted while it was "
            "being created, and the next ingest into it replaces it")  # fmt: skip


def mark_pending(folder: Path) -> None:
    """Record that the collection needs an optimize (before the write that makes it so)."""
    path = folder / PENDING_FILE
    if not path.exists():
        path.touch()


def clear_pending(folder: Path) -> None:
    (folder / PENDING_FILE).unlink(missing_ok=True)


def is_pending(folder: Path) -> bool:
    return (folder / PENDING_FILE).exists()


def check_unlocked(folder: Path, name: str) -> None:
    """Raise :class:`StoreLockedError` now when the collection in ``folder`` is open elsewhere (another
    process, or another store of this one): a check before slow work such as loading a model, not a
    reservation (opening the collection takes the lock)."""
    if (folder / LOCK_FILE).exists():
        Lock(folder / LOCK_FILE, name).close()


class Lock:
    """An exclusive lock file held for the life of an open collection."""

    def __init__(self, path: Path, name: str) -> None:
        self._file = open(path, "a+")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise StoreLockedError(
                f"collection {name!r} at {path.parent} is open in {holder}; close it there first "
                "(an embedded collection serves one process; use a Qdrant server to share it)"
            ) from None
        with contextlib.suppress(OSError):  # who holds it is only for the message above: not on a full disk
            self._file.seek(0)
            self._file.truncate()
            self._file.write(f"process {os.getpid()}")
            self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # a write the full disk refused is raised again on close
                self._file.close()
