"""Evaluate retrieval modes and compression options side by side on a labelled dataset."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..points import DOC_ID, PAGE_IMAGE, TEXT_CHUNK, framework_payload, framework_points, page_reference
from ..store import CollectionSpec, Fusion, QueryVectors, open_store
from ..store.schema import DEFAULT_LEXICAL_PREFETCH, DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH
from .datasets import Dataset
from .metrics import evaluate

if TYPE_CHECKING:
    from ..encoder import Encoder

DEFAULT_OPTIONS = {  # name -> collection settings besides dim (rerank search on each)
    "rerank float16": {},
    "rerank float32": {"multivector_datatype": "float32"},
    "rerank scalar int8": {"quantization": "scalar"},
    "rerank binary": {"quantization": "binary"},
    "rerank token pooling x3": {"token_pool_factor": 3},
    "rerank + row/column prefetch": {"rowcol": True},
}
OTHER_MODES = ("multivector", "lexical", "hybrid", "mmr")  # run on the default collection, next to its rerank
MODE_ROWS = {"multivector": "multivector float16"}  # a mode's row name where it is not the mode's own


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    bytes_per_item: float
    p50_ms: float
    extra: dict = field(default_factory=dict)
    search_mode: str = ""  # the Store.search mode the row measures (dense, multivector, rerank, lexical, ...)


def run_evaluation(
    model: Encoder,
    dataset: Dataset,
    *,
    options: dict[str, dict] | None = None,
    modes: Sequence[str] = OTHER_MODES,
    k: int = 10,
    prefetch: int = DEFAULT_PREFETCH,
    pooled_prefetch: int | None = DEFAULT_POOLED_PREFETCH,
    lexical_prefetch: int = DEFAULT_LEXICAL_PREFETCH,
    fusion: Fusion = Fusion(),  # noqa: B008 - frozen
    mmr_lambda: float = 0.5,
    task: str = "retrieval",
) -> list[ModeResult]:
    """Embed the corpus once, then score every mode: dense at each Matryoshka size and exact
    MaxSim (numpy, the references), each compression option as a real embedded collection
    searched the default way (``rerank``: dense + pooled prefetch, MaxSim rerank), and the other
    search ``modes`` (``multivector``, ``lexical``, ``hybrid``, ``mmr``) on the default
    collection. Points carry each item's text (``dataset.texts``) for the lexical stage."""
    if dataset.kind == "text":
        docs = model.encode_texts(dataset.corpus, task=task, prompt_name="passage", multivector=True)
    else:
        docs = model.encode_images(dataset.corpus, task=task, multivector=True)
    query_ids = list(dataset.queries)
    texts = [dataset.queries[q] for q in query_ids]
    queries = model.encode_texts(texts, task=task, prompt_name="query", multivector=True)
    ids = np.array(dataset.corpus_ids)
    results = []
    for dim in model.dims:
        d = _unit(docs.dense[:, :dim])
        q = _unit(queries.dense[:, :dim])
        run, latencies = {}, []
        for i, qid in enumerate(query_ids):
            start = time.perf_counter()
            scores = d @ q[i]
            top = np.argsort(-scores)[:k]
            latencies.append(1000 * (time.perf_counter() - start))
            run[qid] = {str(ids[j]): float(scores[j]) for j in top}
        results.append(ModeResult(f"dense {dim}", evaluate(dataset.qrels, run), dim * 4, _p50(latencies),
                                  search_mode="dense"))  # fmt: skip
    run, latencies = {}, []
    for i, qid in enumerate(query_ids):
        start = time.perf_counter()
        scores = np.array([(queries.multivector[i] @ m.T).max(axis=1).sum() for m in docs.multivector])
        top = np.argsort(-scores)[:k]
        latencies.append(1000 * (time.perf_counter() - start))
        run[qid] = {str(ids[j]): float(scores[j]) for j in top}
    tokens = float(np.mean([len(m) for m in docs.multivector]))
    results.append(ModeResult("exact MaxSim (float32)", evaluate(dataset.qrels, run), tokens * 128 * 4,
                              _p50(latencies), search_mode="multivector"))  # fmt: skip
    search = {"k": k, "prefetch": prefetch, "pooled_prefetch": pooled_prefetch, "lexical_prefetch": lexical_prefetch,
              "fusion": fusion, "mmr_lambda": mmr_lambda}  # fmt: skip
    extra_rows = [(MODE_ROWS.get(mode, mode), mode) for mode in modes]
    for name, settings in (options if options is not None else DEFAULT_OPTIONS).items():
        rows = [(name, "rerank")]
        if not settings and extra_rows:  # the default collection: every search mode on it
            rows, extra_rows = rows + extra_rows, []
        results += _collection_modes({"task": task, **settings}, rows, model, dataset, docs, queries, search)
    if extra_rows:  # no default collection among the options: one for the modes alone
        results += _collection_modes({"task": task}, extra_rows, model, dataset, docs, queries, search)
    return results


def _collection_modes(settings, rows, model, dataset, docs, queries, search):  # noqa: ANN001, ANN202
    """One embedded collection made with ``settings``, searched in each ``(row name, mode)``."""
    spec = CollectionSpec(dim=model.dims[-1], **settings)
    kind = TEXT_CHUNK if dataset.kind == "text" else PAGE_IMAGE
    texts = dataset.texts or [""] * len(dataset.corpus_ids)
    query_ids = list(dataset.queries)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("eval", spec, data_dir=tmp)
        payloads = [framework_payload(cid, text, {}, kind) for cid, text in zip(dataset.corpus_ids, texts, strict=True)]
        points = framework_points(docs, payloads)
        for start in range(0, len(points), 64):
            store.upsert(points[start : start + 64])
        store.optimize()
        measured = []
        for name, mode in rows:
            run, latencies = {}, []
            for i, qid in enumerate(query_ids):
                vectors = QueryVectors(queries.dense[i], queries.multivector[i], dataset.queries[qid])
                started = time.perf_counter()
                hits = store.search(vectors, mode=mode, **search)
                latencies.append(1000 * (time.perf_counter() - started))
                run[qid] = {h.payload[DOC_ID]: h.score for h in hits}
            measured.append((name, mode, evaluate(dataset.qrels, run), _p50(latencies)))
        store.close()
        size = sum(f.stat().st_blocks * 512 for f in Path(tmp).rglob("*") if f.is_file())
    per_item = size / len(dataset.corpus_ids)
    return [ModeResult(name, metrics, per_item, p50, search_mode=mode) for name, mode, metrics, p50 in measured]


def evaluate_collection(model: Encoder, store: Any, dataset: Dataset, *, k: int = 10, **search: Any) -> ModeResult:
    """Score an existing collection (e.g. made by ``visdoc ingest`` from the dataset's files);
    ``search`` goes to :func:`visdoc.search.search` (``mode=`` names the row after the mode too).

    Hits are matched to corpus ids by their page reference (``metadata.image_path``, the same
    ``file.pdf#page=N`` or image path the dataset names) or, for points added with explicit
    ids through a framework, by that id.
    """
    from ..search import search as run_search

    by_reference = {_normal(ref): cid for cid, ref in zip(dataset.corpus_ids, dataset.corpus, strict=True)}
    run, latencies = {}, []
    for qid, text in dataset.queries.items():
        started = time.perf_counter()
        hits = run_search(model, store, text, k=k, **search)
        latencies.append(1000 * (time.perf_counter() - started))
        found = {}
        for hit in hits:
            reference = page_reference(hit.payload)
            cid = by_reference.get(_normal(reference)) if reference else hit.payload.get(DOC_ID)
            if cid is not None:
                found[cid] = hit.score
        run[qid] = found
    mode = search.get("mode", "rerank")
    name = f"collection {store.name}" + (f" {mode}" if "mode" in search else "")
    return ModeResult(name, evaluate(dataset.qrels, run), 0.0, _p50(latencies), search_mode=mode)


def format_table(results: list[ModeResult]) -> str:
    names = list(results[0].metrics)
    width = max(26, *(len(r.mode) for r in results))
    lines = [f"{'mode':<{width}} " + " ".join(f"{n:>9}" for n in names) + f" {'B/item':>10} {'p50 ms':>7}"]
    for r in results:
        values = " ".join(f"{r.metrics[n]:9.4f}" for n in names)
        lines.append(f"{r.mode:<{width}} {values} {r.bytes_per_item:10,.0f} {r.p50_ms:7.2f}")
    return "\n".join(lines)


def _normal(reference: str) -> str:
    """A page reference with its file path made absolute, so references from anywhere compare."""
    path, sep, page = str(reference).partition("#")
    return str(Path(path).resolve()) + sep + page


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _p50(values: list[float]) -> float:
    return float(np.percentile(values, 50)) if values else 0.0
