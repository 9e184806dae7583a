"""Free-space checks for the embedded engine, which maps its files into memory.

On a full filesystem a write into a mapped page that has no block behind it yet kills the process
with SIGBUS (exit status 135), which no exception handler can catch; on tmpfs even reading such a
page allocates it, and opening a collection reads (populates) its vector and payload-index files.
So the embedded store checks the room each step needs before taking it and raises
:class:`~visdoc.store.DiskFullError` instead (measured with qdrant-edge 0.9):

- opening: :data:`OPEN_MARGIN` (the engine rewrites a few small files), plus, on filesystems that
  allocate on read (tmpfs), the holes of the segment files, which opening fills;
- creating: :data:`CREATE_BYTES`;
- each upsert: :data:`WRITE_MARGIN` plus :data:`WRITE_FACTOR` times the float32 bytes of its vectors
  and its payload (the write-ahead log keeps a float32 copy, the segment another; 1.8x measured);
- each delete and each optimize: :data:`WRITE_MARGIN`; an optimize is then checked by the engine
  itself against its plan (about twice the segments it rewrites), and its refusal, like any
  "no space left" of the engine, becomes a :class:`~visdoc.store.DiskFullError` too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..points import PagePoint
from .base import DiskFullError
from .schema import MULTIVECTOR_DIM, CollectionSpec

MiB = 1 << 20
OPEN_MARGIN = 1 * MiB
CREATE_BYTES = 16 * MiB  # an empty shard: 80 KB on ext4, 8.5 MB on tmpfs (its payload indexes are filled)
WRITE_MARGIN = 16 * MiB  # a new write-ahead log segment's header, flushes, payload index pages
WRITE_FACTOR = 3
POPULATING_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})  # reading a hole of a mapped file allocates it
_NO_SPACE = ("no space left on device", "os error 28", "errno 28", "not enough space")
_ENGINE_NUMBERS = re.compile(r"needed: ([\d.]+) MiB, available: ([\d.]+) MiB")


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on ``path``'s filesystem."""
    return shutil.disk_usage(existing(path)).free


def existing(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require(folder: Path, needed: int, doing: str) -> None:
    """Raise :class:`DiskFullError` unless ``needed`` bytes are free where the collection ``folder`` is."""
    free = free_bytes(folder)
    if free < needed:
        raise DiskFullError(describe(folder, doing, needed, free), str(folder.parent), needed, free)


def describe(folder: Path, doing: str, needed: int, free: int) -> str:
    """The message of a :class:`DiskFullError`: the data dir, what for, the room needed and free."""
    need = f"needs about {_size(needed)}, " if needed else ""
    return (f"not enough free space in {folder.parent} to {doing}: {need}{_size(free)} free; free some "
            "space and run it again (what was stored is kept)")  # fmt: skip


def open_need(shard: Path) -> int:
    """Bytes opening the shard may allocate."""
    return OPEN_MARGIN + (unallocated(shard / "segments") if populates_on_read(shard) else 0)


def upsert_need(raw: int) -> int:
    """Bytes an upsert of ``raw`` bytes (:func:`raw_bytes`) may allocate."""
    return WRITE_MARGIN + WRITE_FACTOR * raw


def raw_bytes(points: Sequence[PagePoint], spec: CollectionSpec) -> int:
    """float32 bytes of the points' stored vectors, plus their payloads' size."""
    total = 0
    for p in points:
        rows = np.asarray(p.multivector).size + np.asarray(p.dense).size + spec.pool_size * MULTIVECTOR_DIM
        if spec.rowcol and p.grid is not None:
            rows += sum(p.grid) * MULTIVECTOR_DIM
        total += 4 * rows + len(repr(p.payload))
    return total


def unallocated(folder: Path) -> int:
    """Bytes of the files under ``folder`` that have no block yet (holes of sparse files)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            total += max(0, st.st_size - st.st_blocks * 512)
    return total


def populates_on_read(path: Path) -> bool:
    return filesystem(path) in POPULATING_FILESYSTEMS


def filesystem(path: Path) -> str:
    """The type of the filesystem ``path`` is on (Linux; "" where unknown)."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return ""
    target, best, kind = os.path.realpath(existing(path)), "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of stacked mounts is the visible one
            best, kind = point, fields[2]
    return kind


@contextlib.contextmanager
def engine_errors(folder: Path, doing: str) -> Iterator[None]:
    """Turn the engine's (or the OS's) "no space" failures in the block into :class:`DiskFullError`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        text = str(exc)
        if not any(marker in text.lower() for marker in _NO_SPACE):
            raise
        numbers = _ENGINE_NUMBERS.search(text)  # the engine's own check before an optimize
        needed, free = (0, free_bytes(folder))
        if numbers:
            needed, free = int(float(numbers[1]) * MiB), int(float(numbers[2]) * MiB)
        message = f"{describe(folder, doing, needed, free)} [{text}]"
        raise DiskFullError(message, str(folder.parent), needed, free) from exc


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.2f} GiB"
