"""What the search page reads: collections, their documents, search hits, page images and files.

Everything a client asks for is looked up by collection name and point or document id; file
paths only ever come from the stored payload, and a source file is served (or rendered) only
while its content still has the hash it was ingested with.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..ingest import DOCUMENT_ID_CHARS
from ..sources import file_sha256
from ..store.edge import SPEC_FILE

if TYPE_CHECKING:
    from ..model import JinaV4
    from ..store import QueryVectors, Store

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DOCUMENT_ID = re.compile(f"[0-9a-f]{{{DOCUMENT_ID_CHARS}}}")
IMAGE_SIZES = {"thumb": 96_000, "page": None}  # pixel budget; None: the model's own (the heatmap's grid)
DOCUMENTS_TTL_S = 30.0
MAX_DOCUMENTS = 1000  # the documents list stops at this many documents ...
MAX_DOCUMENT_RECORDS = 20_000  # ... or after reading this many points, and says it is truncated
SNIPPET_CHARS = 220
UI_DIR = ".visdoc-ui"
MEDIA_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff", ".bmp": "image/bmp",
               ".gif": "image/gif"}  # fmt: skip


class UIError(Exception):
    """A request the page cannot be given: HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
        from ..store import data_dir_path

        return data_dir_path(self.data_dir).absolute()

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir).absolute() if self.work_dir else self.resolved_data_dir() / UI_DIR


def check_collection_name(name: str) -> str:
    if not COLLECTION_NAME.fullmatch(name or ""):
        raise UIError(404, "no such collection (names are letters, digits, '_' and '-')")
    return name


def check_point_id(value: str) -> str:
    try:
        parsed = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise UIError(404, "no such page") from None
    if parsed != value:  # only the canonical form the server hands out (lowercase, hyphenated)
        raise UIError(404, "no such page")
    return parsed


def check_document_id(value: str) -> str:
    if not DOCUMENT_ID.fullmatch(value or ""):
        raise UIError(404, "no such document")
    return value


class Library:
    """The collections of one store location, opened on first use and kept open."""

    def __init__(self, model: JinaV4, settings: UISettings) -> None:
        self.model = model
        self.settings = settings
        self.work_dir = settings.resolved_work_dir()
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()  # PyMuPDF is not thread-safe
        self._documents: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._queries: OrderedDict[tuple, tuple[QueryVectors, list[str]]] = OrderedDict()
        self._hashes: dict[tuple, str] = {}
        self._client: Any = None
        self._closed = False

    def preload(self) -> None:
        """Open the first collection now rather than on the first request (if it exists)."""
        try:
            self.store(self.settings.collection)
        except UIError:
            pass  # not created yet (or locked): the page says so when asked

    # -- collections -------------------------------------------------------------------------

    def collections(self) -> list[dict[str, Any]]:
        """Every collection at the store location (the default one even before it exists)."""
        names: dict[str, dict[str, Any]] = {}
        if self.settings.url:
            for item in self._qdrant().get_collections().collections:
                if COLLECTION_NAME.fullmatch(item.name):
                    names[item.name] = {"name": item.name, "exists": True}
        else:
            root = self.settings.resolved_data_dir()
            folders = sorted(root.iterdir()) if root.is_dir() else []
            for folder in folders:
                spec_file = folder / SPEC_FILE
                if COLLECTION_NAME.fullmatch(folder.name) and spec_file.is_file():
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

    def store(self, name: str, *, create: bool = False) -> Store:
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

    def invalidate(self, name: str) -> None:
        """Forget cached listings of ``name`` (after an ingestion)."""
        self._documents.pop(name, None)

    def documents(self, name: str) -> dict[str, Any]:
        """``documents``: one entry per stored document (id, file name, source, title, pages stored),
        and ``truncated``: whether the listing stopped early (at :data:`MAX_DOCUMENTS` documents or
        after :data:`MAX_DOCUMENT_RECORDS` points; page counts may then be short)."""
        cached = self._documents.get(name)
        if cached is not None and time.monotonic() - cached[0] < DOCUMENTS_TTL_S:
            return cached[1]
        docs: dict[str, dict[str, Any]] = {}
        truncated = False
        for read, record in enumerate(self.store(name).iter_records(batch=1024)):
            if read >= MAX_DOCUMENT_RECORDS:
                truncated = True
                break
            p = record.payload
            doc_id = str(p.get("document_id", ""))
            if not DOCUMENT_ID.fullmatch(doc_id):
                continue  # added through a framework, not ingested from a file
            if doc_id not in docs and len(docs) >= MAX_DOCUMENTS:
                truncated = True
                break
            entry = docs.setdefault(doc_id, {"document_id": doc_id, "file_name": p.get("file_name", ""),
                                             "source": p.get("source", ""), "title": p.get("title", ""),
                                             "total_pages": p.get("total_pages", 0), "pages": 0})  # fmt: skip
            entry["pages"] += 1
        documents = sorted(docs.values(), key=lambda d: (str(d["file_name"]).lower(), d["source"]))
        listing = {"documents": documents, "truncated": truncated}
        self._documents[name] = (time.monotonic(), listing)
        return listing

    # -- search ------------------------------------------------------------------------------

    def query_vectors(self, name: str, query: str) -> tuple[QueryVectors, list[str]]:
        """The query's embedding for collection ``name`` and its token labels (cached)."""
        from ..search import embed_query

        store = self.store(name)
        key = (store.spec.dim, store.spec.task, query)
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        vectors = embed_query(self.model, query, store)
        entry = (vectors, token_labels(self.model, query, len(vectors.multivector)))
        with self._lock:
            self._queries[key] = entry
            while len(self._queries) > 128:
                self._queries.popitem(last=False)
        return entry

    def search(self, name: str, query: str, *, k: int = 12, documents: tuple[str, ...] = (),
               mode: str = "rerank") -> list[dict[str, Any]]:  # fmt: skip
        from ..store import PageFilter

        where = PageFilter(document_ids=tuple(check_document_id(d) for d in documents)) if documents else None
        store = self.store(name)
        vectors, _ = self.query_vectors(name, query)
        hits = store.search(vectors, k=min(k, self.settings.max_results), mode=mode, where=where)  # type: ignore[arg-type]
        return [self._result(name, hit.id, hit.score, hit.payload, query) for hit in hits]

    def _result(self, name: str, point_id: str, score: float, p: dict[str, Any], query: str) -> dict[str, Any]:
        kind = p.get("kind", "page_image")
        doc_id = str(p.get("document_id", ""))
        file_name = str(p.get("file_name", ""))
        page = int(p.get("page", 0) or 0)
        base = f"/ui/api/collections/{name}/pages/{point_id}"
        is_file = bool(DOCUMENT_ID.fullmatch(doc_id) and file_name)
        file_url = f"/files/{name}/{doc_id}/{quote(file_name)}" if is_file else None
        if file_url and file_name.lower().endswith(".pdf"):
            file_url += f"#page={page + 1}"
        return {
            "id": point_id,
            "score": round(float(score), 5),
            "document_id": doc_id,
            "file_name": file_name,
            "title": p.get("title", ""),
            "source": p.get("source", ""),
            "page": page,
            "page_label": str(p.get("page_label", page + 1)),
            "total_pages": p.get("total_pages", 0),
            "kind": kind,
            "snippet": snippet(str(p.get("text", "")), query),
            "thumb_url": f"{base}/image?size=thumb" if kind == "page_image" and is_file else None,
            "image_url": f"{base}/image?size=page" if kind == "page_image" and is_file else None,
            "heatmap_url": f"{base}/heatmap" if kind == "page_image" and is_file else None,
            "file_url": file_url,
        }

    def heatmap(self, name: str, point_id: str, query: str) -> dict[str, Any]:
        """Per-patch similarity of the query's tokens on page ``point_id`` (see :mod:`visdoc.heatmap`)."""
        import numpy as np

        from ..heatmap import GRID_FIELD, ImageGrid, patch_heatmap

        point_id = check_point_id(point_id)
        store = self.store(name)
        records = store.retrieve([point_id], with_vectors=True)
        if not records:
            raise UIError(404, "no such page")
        record = records[0]
        if record.payload.get("kind", "page_image") != "page_image" or record.multivector is None:
            raise UIError(409, "this result is a text chunk: it has no page image")
        grid = ImageGrid.from_payload(record.payload.get(GRID_FIELD)) or self._derived_grid(store, record)
        if grid is None:
            raise UIError(409, "the page's image token grid is unknown (stored before grids were recorded, "
                               "or token pooling merged its patches)")  # fmt: skip
        vectors, labels = self.query_vectors(name, query)
        try:
            heat = patch_heatmap(vectors.multivector, record.multivector, grid)
        except ValueError as exc:
            raise UIError(409, str(exc)) from None
        flat = heat.per_token.reshape(len(heat.per_token), -1)
        return {
            "rows": grid.rows,
            "cols": grid.cols,
            "tokens": labels,
            "overall": np.round(heat.overall.reshape(-1), 4).tolist(),
            "per_token": np.round(flat, 4).tolist(),
        }

    def _derived_grid(self, store: Store, record: Any) -> Any:
        """The grid of a page stored without one: from its image at the model's pixel budget."""
        from ..documents import page_grid
        from ..heatmap import image_grid

        if store.spec.token_pool_factor > 1:
            return None
        try:
            image = self._render(self._verified_source(record.payload), record.payload, None)
            grid = page_grid(self.model, image)
        except (UIError, ValueError, OSError):
            return None
        n = len(record.multivector)
        return image_grid(grid, self.model.tokenizer.content_span("page_image", n), n)

    # -- page images and files ---------------------------------------------------------------

    def page_image(self, name: str, point_id: str, size: str) -> Path:
        """A cached WebP of page ``point_id`` (``thumb`` or ``page``), rendered on first use."""
        if size not in IMAGE_SIZES:
            raise UIError(400, f"size must be one of {sorted(IMAGE_SIZES)}")
        point_id = check_point_id(point_id)
        store = self.store(name)
        cached = self.work_dir / "cache" / name / f"{point_id}-{size}.webp"
        if cached.is_file():  # a point id stands for fixed content (document hash, page)
            return cached
        records = store.retrieve([point_id])
        if not records or records[0].payload.get("kind", "page_image") != "page_image":
            raise UIError(404, "no such page image")
        payload = records[0].payload
        image = self._render(self._verified_source(payload), payload, IMAGE_SIZES[size])
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.part")
        image.save(partial, format="WEBP", quality=80 if size == "thumb" else 88, method=4)
        os.replace(partial, cached)
        return cached

    def source_file(self, name: str, document_id: str, file_name: str) -> tuple[Path, str]:
        """The stored source file of a document and its media type."""
        from ..store import PageFilter

        where = PageFilter(document_ids=(check_document_id(document_id),))
        records, _ = self.store(name).scroll(where, limit=1)
        if not records or records[0].payload.get("file_name") != file_name:
            raise UIError(404, "no such document")
        path = self._verified_source(records[0].payload)
        return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def _verified_source(self, payload: dict[str, Any]) -> Path:
        """The payload's source file, if it is still a regular file with the ingested content."""
        source, expected = payload.get("source"), payload.get("content_hash")
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

    def _render(self, path: Path, payload: dict[str, Any], max_pixels: int | None) -> Any:
        """A page as a PIL image: PDF pages rendered (within ``max_pixels``), image frames read."""
        from PIL import Image

        pixels = self.model.checkpoint.pixels
        budget = max_pixels or pixels.max_pixels
        page = int(payload.get("page", 0) or 0)
        if path.suffix.lower() == ".pdf":
            from ..sources.pdf import render_pages

            with self._render_lock:
                [rendered] = render_pages(str(path), [page], (pixels.factor, pixels.min_pixels, budget))
            if rendered.error:
                raise UIError(404, f"cannot render the page: {rendered.error}")
            return rendered.image()
        try:
            with Image.open(path) as image:
                image.seek(page)
                frame = image.convert("RGB")
        except (OSError, ValueError, EOFError) as exc:
            raise UIError(404, f"cannot read the page image: {exc}") from None
        if frame.width * frame.height > budget:
            scale = (budget / (frame.width * frame.height)) ** 0.5
            frame = frame.resize((max(1, int(frame.width * scale)), max(1, int(frame.height * scale))), Image.LANCZOS)
        return frame

    def _qdrant(self) -> Any:
        with self._lock:
            if self._closed:
                raise UIError(503, "the server is shutting down")
            if self._client is None:
                from qdrant_client import QdrantClient

                self._client = QdrantClient(url=self.settings.url, api_key=self.settings.qdrant_api_key)
            return self._client

    def close(self) -> None:
        """Close the open stores and the Qdrant client; :meth:`store` refuses (503) from now on."""
        with self._lock:
            self._closed = True
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            client, self._client = self._client, None
        if client is not None:
            client.close()


def token_labels(model: Any, query: str, n: int) -> list[str]:
    """The query's tokens as text (prompt included), one per multivector row."""
    from ..tokenization import PROMPT_PREFIXES

    labels: list[str] = []
    tokenizer = getattr(model.tokenizer, "_tok", None)
    if tokenizer is not None:
        ids = model.tokenizer.texts([query], PROMPT_PREFIXES["query"])[0]
        labels = [tokenizer.decode([i]) for i in ids]
    labels = labels[:n] + [f"#{i + 1}" for i in range(len(labels), n)]
    return [label if label.strip() else "\u2423" * max(1, len(label)) for label in labels]  # spaces as ␣


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """A window of ``text`` around the first query word it contains (else its beginning)."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lowered = flat.lower()
    positions = [lowered.find(w) for w in re.findall(r"\w{3,}", query.lower())]
    hit = min((p for p in positions if p >= 0), default=0)
    start = max(0, min(hit - width // 3, len(flat) - width))
    return ("…" if start else "") + flat[start : start + width].strip() + ("…" if start + width < len(flat) else "")
