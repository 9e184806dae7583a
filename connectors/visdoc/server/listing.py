"""The documents of a collection, as the page's document selector lists them (cached briefly)."""

from __future__ import annotations

import time
from typing import Any

from ..points import DOCUMENT_ID, FILE_NAME, SOURCE, TITLE, TOTAL_PAGES
from .stores import Stores
from .validation import is_document_id

DOCUMENTS_TTL_S = 30.0
MAX_DOCUMENTS = 1000  # the documents list stops at this many documents ...
MAX_DOCUMENT_RECORDS = 20_000  # ... or after reading this many points, and says it is truncated


class DocumentListing:
    """Per collection: one entry per stored document, kept for :data:`DOCUMENTS_TTL_S`."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}

    def invalidate(self, name: str) -> None:
        """Forget the cached listing of ``name`` (after an ingestion)."""
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
        for read, record in enumerate(self.stores.open(name).iter_records(batch=1024)):
            if read >= MAX_DOCUMENT_RECORDS:
                truncated = True
                break
            p = record.payload
            doc_id = str(p.get(DOCUMENT_ID, ""))
            if not is_document_id(doc_id):
                continue  # added through a framework, not ingested from a file
            if doc_id not in docs and len(docs) >= MAX_DOCUMENTS:
                truncated = True
                break
            entry = docs.setdefault(doc_id, {DOCUMENT_ID: doc_id, FILE_NAME: p.get(FILE_NAME, ""),
                                             SOURCE: p.get(SOURCE, ""), TITLE: p.get(TITLE, ""),
                                             TOTAL_PAGES: p.get(TOTAL_PAGES, 0), "pages": 0})  # fmt: skip
            entry["pages"] += 1
        documents = sorted(docs.values(), key=lambda d: (str(d[FILE_NAME]).lower(), d[SOURCE]))
        listing = {"documents": documents, "truncated": truncated}
        self._documents[name] = (time.monotonic(), listing)
        return listing
