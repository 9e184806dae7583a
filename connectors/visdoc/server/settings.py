"""The search page's settings: :class:`UISettings`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

UI_DIR = ".visdoc-ui"


@dataclass
class UISettings:
    """Where the search page finds its store, and its limits.

    ``data_dir`` (embedded collections) or ``url`` (a Qdrant server) as for ``open_store``;
    ``collection`` is the one shown first. Uploaded files and rendered page images go under
    ``work_dir`` (default: ``<data dir>/.visdoc-ui``).
    """

    data_dir: str | os.PathLike | None = None
    url: str | None = None
    qdrant_api_key: str | None = None
    collection: str = "visdoc"
    work_dir: str | os.PathLike | None = None
    max_upload_bytes: int = 100 << 20
    max_queued_jobs: int = 16
    ingest_workers: int = 1  # PDF render processes per upload (never 0: rendering here is serialised)
    max_results: int = 50
    preload: bool = False  # open ``collection`` before serving (1,000 embedded pages take ~0.4 s to open)

    def resolved_data_dir(self) -> Path:
        """The embedded store's folder, absolute."""
        from ..store import data_dir_path

        return data_dir_path(self.data_dir).absolute()

    def resolved_work_dir(self) -> Path:
        """Where uploads and rendered images go, absolute."""
        return Path(self.work_dir).absolute() if self.work_dir else self.resolved_data_dir() / UI_DIR
