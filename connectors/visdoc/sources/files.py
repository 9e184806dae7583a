"""Find the files to ingest and say what kind each is."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FileKind = Literal["pdf", "image", "text"]
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


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[SourceFile], list[Problem]]:
    """Files under the given paths (folders recursively, hidden entries skipped), in a stable order."""
    found: list[SourceFile] = []
    problems: list[Problem] = []
    for given in paths:
        root = Path(given).expanduser().absolute()
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
        elif root.is_file():
            candidates = [root]
        else:
            problems.append(Problem(str(root), "no such file or folder"))
            continue
        for path in candidates:
            kind = EXTENSIONS.get(path.suffix.lower())
            if kind is None:
                problems.append(Problem(str(path), f"unsupported file type {path.suffix or '(none)'!r}"))
            elif not os.access(path, os.R_OK):
                problems.append(Problem(str(path), "not readable (permission denied)"))
            else:
                found.append(SourceFile(path, kind))
    return found, problems


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
