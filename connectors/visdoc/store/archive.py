"""The backup file of an embedded collection (:mod:`visdoc.store.backup` writes and restores it).

qdrant-edge 0.9 cannot make a snapshot, so the format is visdoc's own (version 1): an uncompressed
tar holding, under ``collection/``, the collection's folder as it is after a flush, taken while the
collection is open (its lock keeps writers out; the ``.lock`` file is left out), and last a
manifest, ``visdoc-backup.json``: ``format`` ("visdoc-backup"), ``version``, ``visdoc`` (the
version that wrote it), ``collection``, ``spec``, ``points``, ``written_at``, ``dirs`` and
``files``: each file's ``size``, ``stored`` and ``sha256``. The engine's files are sparse (a small
collection's 2 MB take 300 MB of file sizes), and tarfile cannot write sparse members, so a member
holds its file up to the end of its last data region (``stored`` bytes, whose SHA-256 is
``sha256``); the rest of the file is a hole, zeros, which restoring recreates by extending the file
to ``size``. A damaged file, cut short or with a changed byte, fails a checksum or loses its
manifest (the last member: tarfile stops at a damaged header), and is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .base import StoreError
from .folder import LOCK_FILE
from .schema import CollectionSpec

MANIFEST = "visdoc-backup.json"
FORMAT = "visdoc-backup"
VERSION = 1
PREFIX = "collection"  # the collection's folder inside the tar
CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds: the collection's name, spec and point count, and every file's
    ``(size, stored, sha256)`` by its path in the collection's folder."""

    collection: str
    spec: CollectionSpec
    points: int
    files: dict[str, tuple[int, int, str]]
    dirs: tuple[str, ...] = ()
    visdoc: str = ""
    written_at: str = ""
    version: int = VERSION

    @property
    def size(self) -> int:
        """Bytes the files hold (their holes left out)."""
        return sum(stored for _, stored, _ in self.files.values())

    def to_json(self) -> dict[str, Any]:
        files = {path: {"size": size, "stored": stored, "sha256": digest}
                 for path, (size, stored, digest) in sorted(self.files.items())}  # fmt: skip
        return {"format": FORMAT, "version": self.version, "visdoc": self.visdoc, "collection": self.collection,
                "spec": self.spec.to_json(), "points": self.points, "written_at": self.written_at,
                "dirs": list(self.dirs), "files": files}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, source: Path) -> BackupManifest:
        """Read a manifest, refusing one that is not visdoc's or of a later version (naming ``source``)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"{source} is not a visdoc backup (its {MANIFEST} is not visdoc's)")
        if data.get("version") != VERSION:
            raise StoreError(f"{source} is a visdoc backup of format version {data.get('version')!r}, this visdoc "
                             f"reads version {VERSION}: restore it with visdoc {data.get('visdoc')}")  # fmt: skip
        try:
            files = {
                str(path): (int(f["size"]), int(f["stored"]), str(f["sha256"])) for path, f in data["files"].items()
            }
            return cls(str(data["collection"]), CollectionSpec.from_json(data["spec"]), int(data["points"]), files,
                       tuple(map(str, data.get("dirs", ()))), str(data.get("visdoc", "")),
                       str(data.get("written_at", "")))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{source} is damaged: its {MANIFEST} is incomplete ({exc!r})") from None


def collection_contents(folder: Path) -> tuple[list[str], list[str]]:
    """The folders and files of a collection's folder (relative, sorted), the lock file left out."""
    dirs, files = [], []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise StoreError(f"cannot back up {path}: only plain files and folders are expected in a collection")
        if path.is_dir():
            dirs.append(name)
        elif name != LOCK_FILE:
            files.append(name)
    return dirs, files


def visdoc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("visdoc")
    except PackageNotFoundError:
        return "unknown"


class HashingReader:
    """A file read through while its SHA-256 is computed (and its progress reported)."""

    def __init__(self, source: BinaryIO, progress: Callable[[int], Any]) -> None:
        self._source, self._progress, self._sha = source, progress, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._sha.update(data)
        self._progress(len(data))
        return data

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def read_manifest(tar: tarfile.TarFile, path: Path) -> BackupManifest:
    try:
        member = tar.getmember(MANIFEST)
        reader = tar.extractfile(member)
        assert reader is not None
        data = json.loads(reader.read())
    except KeyError:
        raise StoreError(f"{path} is not a visdoc backup, or is damaged: it holds no {MANIFEST}") from None
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"{path} is damaged: its {MANIFEST} is not JSON") from None
    return BackupManifest.from_json(data, path)


def collection_members(tar: tarfile.TarFile, manifest: BackupManifest, path: Path) -> list[tarfile.TarInfo]:
    """The collection's members, each one the manifest lists, once; anything else is refused."""
    seen: set[str] = set()
    members = []
    for member in tar.getmembers():
        if member.name == MANIFEST:
            continue
        name = member.name.removeprefix(f"{PREFIX}/")
        listed = name in manifest.files if member.isfile() else member.isdir() and name in manifest.dirs
        if name == member.name or not listed or name in seen:
            raise StoreError(f"{path} is not a visdoc backup as written, or is damaged: it holds {member.name!r}, "
                             "which its manifest does not list (once)")  # fmt: skip
        seen.add(name)
        members.append(member)
    return members


def mismatches(folder: Path, manifest: BackupManifest) -> dict[str, str]:
    """The files in ``folder`` that differ from the manifest's, and how (the lock file ignored)."""
    wrong = {}
    for name, (size, stored, digest) in sorted(manifest.files.items()):
        file = folder / name
        if not file.is_file():
            wrong[name] = "is missing"
        elif file.stat().st_size != size or not _matches(file, stored, digest):
            wrong[name] = "does not match its checksum"
    extra = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    wrong |= {name: "is not in the backup" for name in sorted(extra - set(manifest.files) - {LOCK_FILE})}
    return wrong


def _matches(file: Path, stored: int, digest: str) -> bool:
    """Whether ``file``'s first ``stored`` bytes have the SHA-256 ``digest`` and the rest are zeros."""
    sha = hashlib.sha256()
    with open(file, "rb") as source:
        while len(chunk := source.read(min(CHUNK, stored - source.tell()))):
            sha.update(chunk)
        if source.tell() != stored or sha.hexdigest() != digest:
            return False
        for start, end in _regions(file, stored, os.fstat(source.fileno()).st_size):
            source.seek(start)
            while source.tell() < end:
                if source.read(min(CHUNK, end - source.tell())).strip(b"\0"):
                    return False
    return True


def _regions(file: Path, start: int, size: int) -> list[tuple[int, int]]:
    """The data regions of a file from ``start`` to ``size``: what is not a hole (all of it where the
    file system cannot tell)."""
    regions = []
    fd = os.open(file, os.O_RDONLY)
    try:
        position = start
        while position < size:
            try:
                begin = os.lseek(fd, position, os.SEEK_DATA)
                end = os.lseek(fd, begin, os.SEEK_HOLE)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                begin, end = position, size  # no hole support here
            regions.append((begin, min(end, size)))
            position = end
    finally:
        os.close(fd)
    return regions


def data_end(file: Path, size: int) -> int:
    """Where a file's last data region ends: what follows is a hole."""
    regions = _regions(file, 0, size)
    return regions[-1][1] if regions else 0
