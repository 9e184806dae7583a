"""Qdrant storage for visdoc: one interface, an embedded engine or a server/cluster behind it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..points import PagePoint, point_id
from .base import (
    SEARCH_MODES,
    CollectionNotFoundError,
    DiskFullError,
    QueryVectors,
    SearchMode,
    Store,
    StoreError,
    StoreLockedError,
)
from .schema import DEFAULT_COLLECTION, LEXICAL, SPEC_FILE, CollectionSpec, Fusion, Hit, PageFilter, Record

DATA_DIR_ENV = "VISDOC_DATA_DIR"
DEFAULT_DATA_DIR = "visdoc_data"

__all__ = [
    "LEXICAL",
    "SEARCH_MODES",
    "SPEC_FILE",
    "CollectionNotFoundError",
    "CollectionSpec",
    "DiskFullError",
    "Fusion",
    "Hit",
    "PageFilter",
    "PagePoint",
    "QueryVectors",
    "Record",
    "SearchMode",
    "Store",
    "StoreError",
    "StoreLockedError",
    "check_available",
    "open_store",
    "point_id",
]


def open_store(
    collection: str = DEFAULT_COLLECTION,
    spec: CollectionSpec | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    url: str | None = None,
    api_key: str | None = None,
    client: Any = None,
    **server_options: Any,
) -> Store:
    """Open (or, given ``spec``, create) a collection.

    With ``url`` (or a ``qdrant_client.QdrantClient`` as ``client``) the collection lives on a
    Qdrant server or cluster; ``server_options`` are :class:`~visdoc.store.server.ServerStore`'s
    (``shard_number``, ``replication_factor``, ``write_consistency_factor``, ``prefer_grpc`` ...).
    Otherwise it is embedded: Qdrant's engine in this process, stored under ``data_dir``
    (default ``$VISDOC_DATA_DIR`` or ``./visdoc_data``).
    """
    if url or client is not None:
        from .server import ServerStore

        return ServerStore(collection, spec, url=url, api_key=api_key, client=client, **server_options)
    if server_options:
        raise TypeError(f"options {sorted(server_options)} need a Qdrant server (url=...)")
    from .edge import EdgeStore

    return EdgeStore(data_dir_path(data_dir), collection, spec)


def check_available(collection: str = DEFAULT_COLLECTION, *, data_dir: str | os.PathLike | None = None) -> None:
    """Fail fast, before slow work (loading a model), when an embedded collection is open in another
    process: raises :class:`StoreLockedError` naming the holder. A collection that does not exist yet
    passes. Opening the collection still takes the lock; this only reports a held one early."""
    from .folder import check_unlocked

    check_unlocked(data_dir_path(data_dir) / collection, collection)


def data_dir_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The embedded store's folder: ``data_dir``, else ``$VISDOC_DATA_DIR``, else ``./visdoc_data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
