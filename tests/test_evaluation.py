"""The evaluation harness: datasets from disk, every mode scored, ids mapped correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURE
from visdoc.evaluation import DatasetError, load_dataset, run_evaluation

EVAL_SET = FIXTURE.parents[2] / "examples" / "eval" / "pages"


def write_beir(folder, docs: dict[str, str], queries: dict[str, str], qrels: list[tuple[str, str, int]]) -> None:
    (folder / "qrels").mkdir(parents=True)
    corpus = [json.dumps({"_id": k, "title": "", "text": v}) for k, v in docs.items()]
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in queries.items()))
    judged = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + judged)


def test_bundled_page_set_runs_every_mode(tiny_fp32):
    dataset = load_dataset(EVAL_SET)
    assert dataset.kind == "page" and len(dataset.corpus) == 8 and len(dataset.queries) == 16
    results = {r.mode: r for r in run_evaluation(tiny_fp32, dataset)}
    expected = {f"dense {d}" for d in tiny_fp32.dims} | {"exact MaxSim (float32)", "rerank float16", "rerank binary"}
    assert expected | {"rerank token pooling x3"} <= set(results)
    for result in results.values():
        assert set(result.metrics) == {"ndcg@1", "ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "mrr"}
        assert all(0 <= v <= 1 for v in result.metrics.values())
    # with 8 pages every candidate is reranked: float16 storage ranks like exact float32 MaxSim
    assert results["rerank float16"].metrics == pytest.approx(results["exact MaxSim (float32)"].metrics, abs=1e-3)
    assert results["rerank token pooling x3"].bytes_per_item < results["rerank float16"].bytes_per_item


def test_ids_are_mapped_through_every_mode(tiny_fp32, tmp_path):
    docs = {f"d{i}": text for i, text in enumerate(["invoices and receipts", "quarterly revenue chart",
                                                     "printer cartridge", "organisation chart"])}  # fmt: skip
    queries = {f"q{i}": text for i, text in enumerate(docs.values())}  # each query is its document's text
    write_beir(tmp_path, docs, queries, [(f"q{i}", f"d{i}", 1) for i in range(4)])
    dataset = load_dataset(tmp_path)
    for result in run_evaluation(tiny_fp32, dataset, task="text-matching", options={"rerank float16": {}}):
        assert result.metrics["ndcg@1"] == 1.0, result.mode  # symmetric task: identical text ranks first


def test_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no corpus.jsonl"):
        load_dataset(tmp_path)
    write_beir(tmp_path, {"d": "x"}, {"q": "y"}, [("q", "d", 1)])
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n{broken\n')
    with pytest.raises(DatasetError, match="corpus.jsonl line 2"):
        load_dataset(tmp_path)


def test_cli_eval_json():
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    out = subprocess.run([sys.executable, "-m", "visdoc", "eval", str(EVAL_SET), "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = json.loads(out)
    assert rows[0]["mode"].startswith("dense") and "ndcg@10" in rows[0] and rows[-1]["bytes_per_item"] > 0


def test_an_ingested_collection_is_scored_like_the_on_the_fly_index(tiny_fp32, tmp_path):
    from visdoc.evaluation import evaluate_collection
    from visdoc.ingest import Ingestor
    from visdoc.store import CollectionSpec, open_store

    dataset = load_dataset(EVAL_SET)
    with open_store("pages", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path) as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([EVAL_SET / "images"])
        collection = evaluate_collection(tiny_fp32, store, dataset)
    reference = next(r for r in run_evaluation(tiny_fp32, dataset, options={}) if r.mode.startswith("exact"))
    assert collection.mode == "collection pages"
    assert collection.metrics == pytest.approx(reference.metrics, abs=1e-3)  # 8 pages: everything reranked
