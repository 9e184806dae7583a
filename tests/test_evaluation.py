"""The evaluation harness: datasets from disk, every mode scored, ids mapped correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURE
from visdoc.evaluation import DatasetError, load_dataset, run_evaluation
from visdoc.store import SEARCH_MODES

EVAL_SET = FIXTURE.parents[2] / "examples" / "eval" / "pages"
CODES_SET = FIXTURE.parents[2] / "examples" / "eval" / "codes"


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
    assert results["multivector float16"].metrics == pytest.approx(results["rerank float16"].metrics, abs=1e-3)
    assert results["rerank token pooling x3"].bytes_per_item < results["rerank float16"].bytes_per_item
    assert {r.search_mode for r in results.values()} == set(SEARCH_MODES)
    # page images without a text layer: lexical finds nothing, hybrid is rerank
    assert dataset.texts == [""] * 8 and set(results["lexical"].metrics.values()) == {0.0}
    assert results["hybrid"].metrics == pytest.approx(results["rerank float16"].metrics, abs=1e-3)


def test_codes_set_pages_carry_their_text_layer():
    dataset = load_dataset(CODES_SET)
    assert dataset.kind == "page" and len(dataset.corpus) == 26 and len(dataset.queries) == 28
    texts = dict(zip(dataset.corpus_ids, dataset.texts, strict=True))
    assert "INV-2025-0042" in texts["inv0042"] and "ZX-4471-Q" in texts["zx4471q"]
    assert "Пётр Иванов" in texts["ivanov"] and "Παπαδόπουλος" in texts["papadopoulos"]
    assert "山田太郎" in texts["yamada"] and all(dataset.texts)
    sizes = [path.stat().st_size for path in (CODES_SET / "docs").glob("*.pdf")]
    assert len(sizes) == 3 and max(sizes) < 10_000  # a few KB each: small enough to commit


def test_on_the_codes_set_lexical_and_hybrid_beat_the_vectors(tiny_fp32):
    """The tiny checkpoint's weights are random, so its vectors rank near chance; the lexical stage
    does not depend on them: exact codes and names typed loosely (lowercase, spaces for hyphens, no
    accents, other scripts) find their page ahead of the near-miss distractors."""
    dataset = load_dataset(CODES_SET)
    results = {r.mode: r.metrics for r in run_evaluation(tiny_fp32, dataset, options={"rerank float16": {}},
                                                         modes=("lexical", "hybrid"))}  # fmt: skip
    rerank = results["rerank float16"]
    assert results["lexical"]["ndcg@10"] >= 0.95 and results["lexical"]["recall@10"] == 1.0
    for mode in ("lexical", "hybrid"):
        assert results[mode]["ndcg@10"] >= rerank["ndcg@10"] + 0.3, (mode, results[mode], rerank)
        assert results[mode]["recall@10"] >= rerank["recall@10"] + 0.2, (mode, results[mode], rerank)


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


def test_image_pages_may_carry_a_text_and_a_bad_pdf_page_is_named(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "a", "image": "a.png", "text": "ocr of a"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "a"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    assert load_dataset(tmp_path).texts == ["ocr of a"]
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "a", "pdf": str(CODES_SET / "docs" / "parts.pdf"),
                                                       "page": 8}) + "\n")  # fmt: skip
    with pytest.raises(DatasetError, match="parts.pdf has 8 pages; there is no page 8"):
        load_dataset(tmp_path)


def test_cli_eval_json_reports_every_mode_and_scores_a_collection(tiny_fp32, tmp_path):
    from visdoc.ingest import Ingestor
    from visdoc.store import CollectionSpec, open_store

    with open_store("pages", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path) as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([EVAL_SET / "images"])
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    command = [sys.executable, "-m", "visdoc", "eval", str(EVAL_SET), "--json", "--collection", "pages", "--data-dir",
               str(tmp_path), "--mmr-lambda", "0.7"]  # fmt: skip
    rows = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    assert rows[0]["mode"].startswith("dense") and "ndcg@10" in rows[0]
    by_mode = {row["mode"]: row for row in rows}
    assert {"rerank float16", "multivector float16", "lexical", "hybrid", "mmr", "rerank binary"} <= set(by_mode)
    assert {row["search_mode"] for row in rows} == set(SEARCH_MODES)
    collection = [row for row in rows if row["mode"].startswith("collection pages ")]
    assert [row["search_mode"] for row in collection] == list(SEARCH_MODES)
    same = {"rerank": "rerank float16", "dense": f"dense {tiny_fp32.dims[-1]}", "multivector": "multivector float16"}
    for row in collection:  # 8 pages: the ingested collection ranks like the one built on the fly
        reference = by_mode[same.get(row["search_mode"], row["search_mode"])]
        assert row["ndcg@10"] == pytest.approx(reference["ndcg@10"], abs=1e-3), row["mode"]
    assert by_mode["rerank binary"]["bytes_per_item"] > 0


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
