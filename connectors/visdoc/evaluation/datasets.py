"""Evaluation datasets from local files: BEIR text layout and a page-image layout.

BEIR: ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id", "text"}``),
``qrels/<split>.tsv`` (``query-id<TAB>corpus-id<TAB>score``, header line).
Pages: the same files, but each corpus line names an image (``{"_id", "image": "pages/p1.png"}``)
or a PDF page (``{"_id", "pdf": "docs/report.pdf", "page": 0}``, 0-based), relative to the
dataset folder. ViDoRe / Jina-VDR data exported to disk fits this layout. A page's text, which the
lexical and hybrid modes search, is the PDF page's text layer (as ``visdoc ingest`` extracts it),
or a ``"text"`` given on the line (e.g. OCR of an image); an image without one has no text.
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VisdocError
from ..points import image_reference


class DatasetError(VisdocError):
    """A dataset folder is missing files or has malformed lines (the message names them)."""


@dataclass
class Dataset:
    """Corpus items (text or page reference), queries and graded relevance judgements."""

    name: str
    corpus_ids: list[str]
    corpus: list[Any]  # str for texts; an image path or ``file.pdf#page=N`` for pages
    kind: str  # "text" or "page"
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    texts: list[str] = field(default_factory=list)  # each item's text for the lexical stage ("" where none)


def load_dataset(folder: str | Path, split: str = "test") -> Dataset:
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise DatasetError(f"{folder} has no {name}")
    ids, items, texts, kinds = [], [], [], set()
    for line_no, row in _jsonl(folder / "corpus.jsonl"):
        if "image" in row:
            items.append(str(folder / row["image"]))
            texts.append(str(row.get("text") or ""))
            kinds.add("page")
        elif "pdf" in row:
            items.append(image_reference(folder / row["pdf"], int(row.get("page", 0))))
            texts.append(row["text"] if "text" in row else _pdf_text(folder / row["pdf"], int(row.get("page", 0))))
            kinds.add("page")
        elif "text" in row:
            items.append(f"{row.get('title', '')}\n{row['text']}".strip())
            texts.append(items[-1])
            kinds.add("text")
        else:
            raise DatasetError(f"corpus.jsonl line {line_no}: needs 'text', 'image' or 'pdf'")
        ids.append(str(row["_id"]))
    if len(kinds) != 1:
        raise DatasetError(f"{folder}: a corpus must be all texts or all pages, found {sorted(kinds)}")
    queries = {str(row["_id"]): row["text"] for _, row in _jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0] in ("query-id", "query_id"):
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    unknown = sorted(q for q in qrels if q not in queries)
    if unknown:
        raise DatasetError(f"qrels name queries missing from queries.jsonl: {unknown[:5]}")
    return Dataset(folder.name, ids, items, kinds.pop(), {q: queries[q] for q in qrels}, qrels, texts)


def _pdf_text(path: Path, page: int) -> str:
    """A PDF page's text layer, as ingestion stores it (:func:`visdoc.sources.pdf.page_texts`)."""
    try:
        texts = _pdf_texts(str(path), path.stat().st_mtime_ns)  # a rewritten file is read afresh
    except (OSError, VisdocError) as exc:
        raise DatasetError(f"{path}: {exc}") from None
    if not 0 <= page < len(texts):
        raise DatasetError(f"{path} has {len(texts)} pages; there is no page {page} (0-based)")
    return texts[page]


@functools.lru_cache(maxsize=8)
def _pdf_texts(path: str, mtime_ns: int) -> list[str]:
    from ..sources.pdf import page_texts

    return [text for text, _ in page_texts(path)]


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path.name} line {line_no}: {exc}") from None
            if "_id" not in rows[-1][1]:
                raise DatasetError(f"{path.name} line {line_no}: no '_id'")
    return rows
