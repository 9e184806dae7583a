"""Find the files to ingest, say what kind each is, and say in words why one cannot be used."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import SourceError

FileKind = Literal["pdf", "image", "text"]
FileState = tuple[int, int, int, int]  # (size, mtime_ns, inode, ctime_ns): what a file was when it was hashed
EXTENSIONS: dict[str, FileKind] = {
    ".pdf": "pdf",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".webp": "image",
    ".tif": "image",
    ".tiff": "image",
    ".bmp": "image",
    ".gif": "image",
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
}
CHANGED = "the file changed while it was read; run again"
_NAMES = {"pdf": "PDF", "image": "image", "text": "text file"}
# Errors a parser raises on input it does not expect: the file is damaged, whatever the type says.
_DAMAGED = (AssertionError, ArithmeticError, IndexError, KeyError, TypeError, AttributeError, RecursionError, EOFError)
_SPECIAL = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device",
            stat.S_ISBLK: "a device"}  # fmt: skip


@dataclass(frozen=True)
class SourceFile:
    path: Path
    kind: FileKind


@dataclass(frozen=True)
class Problem:
    """A file (and page) that was skipped, and why."""

    path: str
    message: str
    page: int | None = None

    def __str__(self) -> str:
        where = self.path if self.page is None else f"{self.path} (page {self.page + 1})"
        return f"{where}: {self.message}"


def explain(exc: BaseException, path: str | os.PathLike | None = None, otherwise: str | None = None) -> str:
    """What an error says about the file at ``path``, in words, its type and detail at the end.

    Errors whose own message already says it (a :class:`SourceError`, PyMuPDF's ``code=2: ...``)
    are kept as ``Type: detail`` unless ``otherwise`` gives the words to put before them.
    """
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = _NAMES.get(EXTENSIONS.get(Path(path).suffix.lower(), ""), "file") if path is not None else "file"
    if isinstance(exc, SourceError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        words = "the file is gone (removed or moved away during the run)"
    elif isinstance(exc, PermissionError):
        words = "not readable (permission denied)"
    elif isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        words = "a link that leads back to itself (a loop of links)"
    elif isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        words = "the file was replaced by a folder during the run"
    elif isinstance(exc, MemoryError):
        words = f"not enough memory to read the {what}"
    elif isinstance(exc, _DAMAGED):
        words = f"the {what} is damaged"
    elif not str(exc):
        words = otherwise or f"the {what} could not be read"
    elif otherwise:
        words = otherwise
    else:
        return detail
    return f"{words} ({detail})"


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[SourceFile], list[Problem]]:
    """Files under the given paths (folders recursively, hidden entries skipped), in a stable order.

    What cannot be used is a :class:`Problem` in words: a missing path, an unreadable file or
    folder, a link to nothing, a link to a folder (not followed: no loops, no file found twice),
    a pipe, socket or device (never opened), an unsupported type.
    """
    found: list[SourceFile] = []
    problems: list[Problem] = []
    for given in paths:
        try:
            root = Path(given).expanduser().absolute()
        except RuntimeError as exc:  # ~user of no such user
            problems.append(Problem(str(given), explain(exc, otherwise="not a usable path")))
            continue
        candidates: list[Path] = []
        skipped: list[Problem] = []
        try:
            folder = root.is_dir()  # a link given by name is followed: it was asked for
        except OSError:  # e.g. in a folder that cannot be searched: _usable says why
            folder = False
        if folder:
            _walk(root, candidates, skipped)
        else:
            candidates.append(root)
        for path in sorted(candidates):
            usable = _usable(path)
            (skipped if isinstance(usable, Problem) else found).append(usable)  # type: ignore[arg-type]
        problems += sorted(skipped, key=lambda p: p.path)
    return found, problems


def _walk(root: Path, files: list[Path], problems: list[Problem]) -> None:
    """Every entry under ``root`` that is not a folder itself; folders that cannot be listed and
    links to folders become problems. Iterative: no nesting depth is too deep."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            problems.append(Problem(_shown(folder), f"folder {explain(exc, otherwise='cannot be listed')}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                links_to_folder = entry.is_symlink() and entry.is_dir()
            except OSError:  # a link loop: _usable says so
                is_folder = links_to_folder = False
            if links_to_folder:
                problems.append(Problem(_shown(path), _folder_link(path)))
            elif is_folder:
                subfolders.append(path)
            else:
                files.append(path)
        pending.extend(reversed(subfolders))


def _shown(path: Path) -> str:
    """A path as text that prints anywhere (bytes of a name that is not UTF-8 as escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _folder_link(path: Path) -> str:
    target = path.resolve()
    if target == path.parent or target in path.parents:
        return "a link to a folder that contains it (a loop); not followed"
    return f"a link to the folder {target}; not followed (give that folder to ingest it)"


def _usable(path: Path) -> SourceFile | Problem:
    """``path`` as a file to ingest, or why it cannot be one (nothing is opened)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return Problem(_shown(path), "its name is not valid UTF-8, which the collection's payload must be; rename it")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            return Problem(str(path), f"a link to nothing (its target {os.readlink(path)} does not exist)")
        return Problem(str(path), "no such file or folder")
    except OSError as exc:
        return Problem(str(path), explain(exc, path, otherwise="cannot be read"))
    special = next((name for test, name in _SPECIAL.items() if test(info.st_mode)), None)
    if special is not None:
        return Problem(str(path), f"not a regular file but {special}; not read")
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        return Problem(str(path), f"unsupported file type {path.suffix or '(none)'!r}")
    if not os.access(path, os.R_OK):
        return Problem(str(path), "not readable (permission denied)")
    return SourceFile(path, kind)


def file_state(path: str | os.PathLike) -> FileState:
    """(size, mtime_ns, inode, ctime_ns) of a file: compared again later, it tells whether the file
    changed (ctime too, as an in-place rewrite that restores the mtime still moves it)."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks; anything but a regular file (a pipe
    that would block) raises :class:`SourceError` without being read."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError("not a regular file; not read")
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
