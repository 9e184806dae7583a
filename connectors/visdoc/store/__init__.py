"""Qdrant storage for visdoc: one interface, an embedded engine or a server/cluster behind it."""

from __future__ import annotations

import os
from typing import Any

from ..points import PagePoint, point_id
from .backup import BackupManifest, backup_collection, restore_collection
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
from .folder import DATA_DIR_ENV, DEFAULT_DATA_DIR, data_dir_path
from .schema import DEFAULT_COLLECTION, LEXICAL, SPEC_FILE, CollectionSpec, Fusion, Hit, PageFilter, Record, StoredPoint
from .transfer import CopyReport, copy_collection

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "LEXICAL",
    "SEARCH_MODES",
    "SPEC_FILE",
    "BackupManifest",
    "CollectionNotFoundError",
    "CollectionSpec",
    "CopyReport",
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
    "StoredPoint",
    "backup_collection",
    "check_available",
    "copy_collection",
    "data_dir_path",
    "open_store",
    "point_id",
    "restore_collection",
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
