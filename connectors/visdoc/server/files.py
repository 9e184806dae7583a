"""Source files of stored pages: served only while they still have the content they were ingested with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..points import CONTENT_HASH, FILE_NAME, SOURCE
from ..sources import file_sha256
from .stores import Stores
from .validation import UIError, check_document_id

MEDIA_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff", ".bmp": "image/bmp",
               ".gif": "image/gif"}  # fmt: skip


class SourceFiles:
    """Looks a file up by the stored payload only, and checks its hash (cached per file version)."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self._hashes: dict[tuple, str] = {}

    def source_file(self, name: str, document_id: str, file_name: str) -> tuple[Path, str]:
        """The stored source file of a document and its media type."""
        from ..store import PageFilter

        where = PageFilter(document_ids=(check_document_id(document_id),))
        records, _ = self.stores.open(name).scroll(where, limit=1)
        if not records or records[0].payload.get(FILE_NAME) != file_name:
            raise UIError(404, "no such document")
        path = self.verified(records[0].payload)
        return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def verified(self, payload: dict[str, Any]) -> Path:
        """The payload's source file, if it is still a regular file with the ingested content."""
        source, expected = payload.get(SOURCE), payload.get(CONTENT_HASH)
        if not isinstance(source, str) or not isinstance(expected, str) or not os.path.isabs(source):
            raise UIError(404, "this page has no stored source file")
        path = Path(source)
        try:
            stat = path.stat()
        except OSError:
            raise UIError(404, "the source file is no longer there") from None
        if not path.is_file() or path.suffix.lower() not in MEDIA_TYPES:
            raise UIError(404, "the source file is no longer there")
        key = (source, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        digest = self._hashes.get(key)
        if digest is None:
            digest = self._hashes[key] = file_sha256(path)
        if digest != expected:
            raise UIError(404, "the source file changed since it was ingested")
        return path
