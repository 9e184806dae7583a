"""The collections of one store location: listed, opened on first use and kept open until closed."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from ..store.edge import SPEC_FILE  # TODO: from ..store once it exports SPEC_FILE
from .settings import UISettings
from .validation import UIError, check_collection_name, is_collection_name

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..store import Store


class Stores:
    """Open collections by name (each opened once, for ``model``), and the Qdrant client that lists
    a server's collections."""

    def __init__(self, model: Encoder, settings: UISettings) -> None:
        self.model = model
        self.settings = settings
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False

    def open(self, name: str, *, create: bool = False) -> Store:
        """The open collection ``name`` (created for this model when ``create``)."""
        from ..store import CollectionNotFoundError, CollectionSpec, StoreError, open_store

        check_collection_name(name)
        with self._lock:
            if self._closed:
                raise UIError(503, "the server is shutting down")
            if name in self._stores:
                return self._stores[name]
            spec = CollectionSpec(dim=self.model.dims[-1], model=self.model.name) if create else None
            try:
                if self.settings.url:
                    store = open_store(name, spec, url=self.settings.url, api_key=self.settings.qdrant_api_key)
                else:
                    store = open_store(name, spec, data_dir=self.settings.resolved_data_dir())
            except CollectionNotFoundError:
                raise UIError(404, f"collection {name!r} does not exist yet: upload a document to create it") from None
            except StoreError as exc:
                raise UIError(409, str(exc)) from None
            if store.spec.dim not in self.model.dims:
                store.close()
                raise UIError(409, f"collection {name!r} stores {store.spec.dim}-d vectors; this model makes "
                                   f"{list(self.model.dims)}")  # fmt: skip
            self._stores[name] = store
            return store

    def collections(self) -> list[dict[str, Any]]:
        """Every collection at the store location (the default one even before it exists)."""
        names: dict[str, dict[str, Any]] = {}
        if self.settings.url:
            for item in self._qdrant().get_collections().collections:
                if is_collection_name(item.name):
                    names[item.name] = {"name": item.name, "exists": True}
        else:
            root = self.settings.resolved_data_dir()
            folders = sorted(root.iterdir()) if root.is_dir() else []
            for folder in folders:
                spec_file = folder / SPEC_FILE
                if is_collection_name(folder.name) and spec_file.is_file():
                    try:
                        spec = json.loads(spec_file.read_text())
                    except (OSError, ValueError):
                        continue
                    names[folder.name] = {"name": folder.name, "exists": True, "model": spec.get("model", ""),
                                          "dim": spec.get("dim")}  # fmt: skip
        default = self.settings.collection
        names.setdefault(default, {"name": default, "exists": False})
        for name, info in names.items():
            store = self._stores.get(name)
            if store is not None:
                info |= {"exists": True, "points": store.count(), "model": store.spec.model, "dim": store.spec.dim}
        return sorted(names.values(), key=lambda info: (info["name"] != default, info["name"]))

    def _qdrant(self) -> Any:
        with self._lock:
            if self._closed:
                raise UIError(503, "the server is shutting down")
            if self._client is None:
                from qdrant_client import QdrantClient

                self._client = QdrantClient(url=self.settings.url, api_key=self.settings.qdrant_api_key)
            return self._client

    def close(self) -> None:
        """Close the open stores and the Qdrant client; :meth:`open` refuses (503) from now on."""
        with self._lock:
            self._closed = True
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            client, self._client = self._client, None
        if client is not None:
            client.close()
