"""Search results as the page shows them: the page's fields, a snippet, and links to its image,
heatmap and source file."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .. import lexical
from ..points import DOCUMENT_ID, FILE_NAME, KIND, PAGE, PAGE_IMAGE, TEXT, summary
from .queries import Queries
from .routes import heatmap_url, page_image_url, source_file_url
from .settings import UISettings
from .stores import Stores
from .validation import UIError, check_document_id, is_document_id

SNIPPET_CHARS = 220
SCAN_CHARS = 20_000  # text read for the first matching word (past it, the window falls back to a plain find)
_ALNUM = re.compile(r"[^\W_]+")  # runs of letters and digits (str.isalnum)


class Results:
    """Runs the page's searches and shapes each hit for it."""

    def __init__(self, stores: Stores, queries: Queries, settings: UISettings) -> None:
        self.stores = stores
        self.queries = queries
        self.settings = settings

    def search(self, name: str, query: str, *, k: int = 12, documents: tuple[str, ...] = (),
               mode: str = "rerank") -> list[dict[str, Any]]:  # fmt: skip
        """The top ``k`` (at most ``max_results``) pages of collection ``name`` in search ``mode``,
        optionally only of ``documents``. A query the store refuses (e.g. more distinct terms than
        lexical search takes) is answered 422 with the store's message."""
        from ..store import PageFilter

        where = PageFilter(document_ids=tuple(check_document_id(d) for d in documents)) if documents else None
        store = self.stores.open(name)
        vectors, _ = self.queries.vectors(store, query)
        k = min(k, self.settings.max_results)
        try:
            hits = store.search(vectors, k=k, mode=mode, where=where)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UIError(422, str(exc)) from exc
        marker = Highlighter(query)
        return [result(name, hit.id, hit.score, hit.payload, marker) for hit in hits]


def result(name: str, point_id: str, score: float, payload: dict[str, Any], query: str | Highlighter) -> dict[str, Any]:
    """One hit as the page reads it: :func:`visdoc.points.summary` of its payload, its id and
    score, a snippet and its parts (``snippet_parts``: ``{"text", "match"}`` pieces that join into
    the snippet, ``match`` for words that share a lexical term with the query), and links (to
    images and the heatmap only for page images of files)."""
    fields = summary(payload)
    doc_id, file_name, page = fields[DOCUMENT_ID], fields[FILE_NAME], fields[PAGE]
    is_file = bool(is_document_id(doc_id) and file_name)
    has_image = is_file and fields[KIND] == PAGE_IMAGE
    parts = snippet_parts(str(payload.get(TEXT, "")), query)
    return {
        "id": point_id,
        "score": round(float(score), 5),
        **fields,
        "snippet": "".join(part["text"] for part in parts),
        "snippet_parts": parts,
        "thumb_url": page_image_url(name, point_id, "thumb") if has_image else None,
        "image_url": page_image_url(name, point_id, "page") if has_image else None,
        "heatmap_url": heatmap_url(name, point_id) if has_image else None,
        "file_url": source_file_url(name, doc_id, file_name, page) if is_file else None,
    }


class Highlighter:
    """Which words of a text match a query lexically: a word matches when its terms
    (:func:`visdoc.lexical.terms`: lowercased, NFKC, accents folded, stop words left out) share one
    with the query's, so ``INV-2025-0042`` is marked for the query ``inv 2025 0042`` and ``Café``
    for ``cafe``; in Han, kana and Hangul runs, the character pairs the query names are marked."""

    def __init__(self, query: str) -> None:
        self._terms_of = lexical.terms
        self.terms = frozenset(lexical.terms(query))
        self._known: dict[str, bool] = {}

    def matches(self, word: str) -> bool:
        """Whether ``word`` (one run of letters and digits) shares a term with the query."""
        known = self._known.get(word)
        if known is None:
            if word.isascii():  # its one term is itself, lowercased (a stop word is never a query term)
                known = word.lower() in self.terms
            else:
                known = not self.terms.isdisjoint(self._terms_of(word))
            self._known[word] = known
        return known

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The ``[start, end)`` spans of ``text``'s matching words, in order."""
        if not self.terms:
            return []
        found: list[tuple[int, int]] = []
        for start, end in _words(text):
            word = text[start:end]
            if word.isascii() or not lexical.CJK_RUN.search(word):
                if self.matches(word):
                    found.append((start, end))
                continue
            found += [(start + a, start + b) for a, b in self._cjk_spans(word)]
        return _merged(found)

    def _cjk_spans(self, word: str) -> list[tuple[int, int]]:
        """Matching spans of a word holding Han, kana or Hangul: those runs by character pair (one
        character alone), the letters and digits between them as words."""
        found, at = [], 0
        for run in lexical.CJK_RUN.finditer(word):
            found += self._alnum_spans(word, at, run.start())
            a, b = run.span()
            pairs = [(a, b)] if b - a == 1 else [(i, i + 2) for i in range(a, b - 1)]
            found += [(i, j) for i, j in pairs if self.matches(word[i:j])]
            at = b
        return found + self._alnum_spans(word, at, len(word))

    def _alnum_spans(self, word: str, start: int, end: int) -> list[tuple[int, int]]:
        return [m.span() for m in _ALNUM.finditer(word, start, end) if self.matches(m.group())]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _words(text: str) -> list[tuple[int, int]]:
    """Spans of the runs of letters and digits of ``text``, with the combining marks inside and
    after them (Devanagari vowel signs, accents of decomposed text), as the lexical tokenizer splits."""
    spans: list[tuple[int, int]] = []
    for match in _ALNUM.finditer(text):
        start, end = match.span()
        if spans and _marks_only(text[spans[-1][1] : start]):
            start = spans.pop()[0]
        while end < len(text) and unicodedata.category(text[end]) in ("Mn", "Mc"):
            end += 1
        spans.append((start, end))
    return spans


def _marks_only(gap: str) -> bool:
    return not gap or all(unicodedata.category(c) in ("Mn", "Mc") for c in gap)


def snippet_parts(text: str, query: str | Highlighter, width: int = SNIPPET_CHARS) -> list[dict[str, Any]]:
    """A window of ``text`` (whitespace collapsed) around its first word that matches the query
    lexically (else around the first query word it contains, else its beginning), as pieces
    ``{"text": ..., "match": bool}`` that join into the snippet."""
    marker = query if isinstance(query, Highlighter) else Highlighter(query)
    flat = " ".join(text.split())
    start, end = 0, len(flat)
    if len(flat) > width:
        first = marker.spans(flat[:SCAN_CHARS])
        hit = first[0][0] if first else _plain_find(flat, marker.terms)
        start = max(0, min(hit - width // 3, len(flat) - width))
        end = start + width
        while start < end and flat[start] == " ":
            start += 1
        while end > start and flat[end - 1] == " ":
            end -= 1
    window = flat[start:end]
    parts: list[dict[str, Any]] = [{"text": "…", "match": False}] if start else []
    at = 0
    for a, b in marker.spans(window):
        if a > at:
            parts.append({"text": window[at:a], "match": False})
        parts.append({"text": window[a:b], "match": True})
        at = b
    if at < len(window):
        parts.append({"text": window[at:], "match": False})
    if end < len(flat):
        parts.append({"text": "…", "match": False})
    return parts


def _plain_find(flat: str, terms: frozenset[str]) -> int:
    """Where the first query term (3 characters or more) appears in ``flat``, as a substring; 0 if none."""
    lowered = flat.lower()
    positions = [lowered.find(t) for t in terms if len(t) >= 3]
    return min((p for p in positions if p >= 0), default=0)
