"""Search results as the page shows them: the page's fields, a snippet, and links to its image,
heatmap and source file."""

from __future__ import annotations

import re
from typing import Any

from ..points import DOCUMENT_ID, FILE_NAME, KIND, PAGE, PAGE_IMAGE, TEXT, summary
from .queries import Queries
from .routes import heatmap_url, page_image_url, source_file_url
from .settings import UISettings
from .stores import Stores
from .validation import check_document_id, is_document_id

SNIPPET_CHARS = 220


class Results:
    """Runs the page's searches and shapes each hit for it."""

    def __init__(self, stores: Stores, queries: Queries, settings: UISettings) -> None:
        self.stores = stores
        self.queries = queries
        self.settings = settings

    def search(self, name: str, query: str, *, k: int = 12, documents: tuple[str, ...] = (),
               mode: str = "rerank") -> list[dict[str, Any]]:  # fmt: skip
        """The top ``k`` (at most ``max_results``) pages of collection ``name``, optionally only of
        ``documents``."""
        from ..store import PageFilter

        where = PageFilter(document_ids=tuple(check_document_id(d) for d in documents)) if documents else None
        store = self.stores.open(name)
        vectors, _ = self.queries.vectors(store, query)
        hits = store.search(vectors, k=min(k, self.settings.max_results), mode=mode, where=where)  # type: ignore[arg-type]
        return [result(name, hit.id, hit.score, hit.payload, query) for hit in hits]


def result(name: str, point_id: str, score: float, payload: dict[str, Any], query: str) -> dict[str, Any]:
    """One hit as the page reads it: :func:`visdoc.points.summary` of its payload, its id and
    score, a snippet, and links (to images and the heatmap only for page images of files)."""
    fields = summary(payload)
    doc_id, file_name, page = fields[DOCUMENT_ID], fields[FILE_NAME], fields[PAGE]
    is_file = bool(is_document_id(doc_id) and file_name)
    has_image = is_file and fields[KIND] == PAGE_IMAGE
    return {
        "id": point_id,
        "score": round(float(score), 5),
        **fields,
        "snippet": snippet(str(payload.get(TEXT, "")), query),
        "thumb_url": page_image_url(name, point_id, "thumb") if has_image else None,
        "image_url": page_image_url(name, point_id, "page") if has_image else None,
        "heatmap_url": heatmap_url(name, point_id) if has_image else None,
        "file_url": source_file_url(name, doc_id, file_name, page) if is_file else None,
    }


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
