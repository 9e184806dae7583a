"""The visdoc command line: ingest, search, info, delete against the embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURE

SAMPLES = FIXTURE.parents[2] / "examples" / "data"


def visdoc(*args: str, data_dir) -> subprocess.CompletedProcess:
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    env.pop("QDRANT_URL", None)
    cmd = [sys.executable, "-m", "visdoc", *args, "--data-dir", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "data"
    result = visdoc("ingest", str(SAMPLES), "--workers", "1", data_dir=folder)
    assert result.returncode == 0, result.stderr
    assert "4 pages/chunks embedded" in result.stdout and "0 problems" in result.stdout
    assert "ingest: 100%" in result.stderr  # progress is visible in the CLI
    return folder


def test_search_json_filters_and_modes(data_dir):
    result = visdoc("search", "revenue by quarter", "-k", "10", "--json", data_dir=data_dir)
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0]["score"] >= rows[-1]["score"]
    assert {r["file_name"] for r in rows} == {"annual-report.pdf", "sample-page.png"}
    pdf = str(SAMPLES / "annual-report.pdf")
    result = visdoc("search", "revenue", "--json", "--filter", f"source={pdf}", "--filter", "page=1..2",
                    "--mode", "multivector", data_dir=data_dir)  # fmt: skip
    assert sorted(r["page"] for r in json.loads(result.stdout)) == [1, 2]
    image_query = visdoc("search", str(SAMPLES / "sample-page.png"), "--image", "--json", "-k", "1",
                         data_dir=data_dir)  # fmt: skip
    assert json.loads(image_query.stdout)[0]["file_name"] == "sample-page.png"  # a page finds itself
    bad = visdoc("search", "x", "--filter", "colour=red", data_dir=data_dir)
    assert bad.returncode == 2 and "unknown filter key 'colour'" in bad.stderr


def test_speed_options_load_a_merged_compiled_model_that_ranks_the_same(data_dir):
    plain = json.loads(visdoc("search", "revenue by quarter", "--json", data_dir=data_dir).stdout)
    fast = visdoc("search", "revenue by quarter", "--json", "--merge-adapters", "--compile", data_dir=data_dir)
    assert fast.returncode == 0 and "(merged adapters, compiled)" in fast.stderr, fast.stderr
    rows = json.loads(fast.stdout)
    assert [(r["file_name"], r["page"]) for r in rows] == [(r["file_name"], r["page"]) for r in plain]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in plain], abs=1e-4)


def test_info_and_delete(data_dir):
    info = visdoc("info", data_dir=data_dir)
    assert "4 points, 2 documents" in info.stdout and "3/3 pages" in info.stdout
    document = next(line.split()[0] for line in info.stdout.splitlines() if "sample-page.png" in line)
    deleted = visdoc("delete", "--document", document, data_dir=data_dir)
    assert deleted.returncode == 0 and "deleted 1 points" in deleted.stdout
    assert "3 points, 1 documents" in visdoc("info", data_dir=data_dir).stdout
    again = visdoc("ingest", str(SAMPLES), "--workers", "0", data_dir=data_dir)
    assert "1 pages/chunks embedded" in again.stdout and "1 unchanged" in again.stdout


def test_missing_collection_is_a_clear_error(tmp_path):
    result = visdoc("search", "x", data_dir=tmp_path)
    assert result.returncode == 2 and "no collection 'visdoc'" in result.stderr and "Traceback" not in result.stderr


COMMANDS = [["ingest", str(SAMPLES)], ["search", "revenue"], ["ingest", str(SAMPLES), "--ray"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_collection_open_elsewhere_is_refused_before_the_model_loads(data_dir, command):
    """A second command on a held embedded collection fails at once, naming the holder: a model that
    does not exist shows the model was never loaded (that error would come otherwise)."""
    from visdoc.store import open_store

    with open_store("visdoc", data_dir=data_dir):
        result = visdoc(*command, "--model", "/no/such/checkpoint", data_dir=data_dir)
    assert result.returncode == 2, result.stderr
    assert "is open in process" in result.stderr and f"process {os.getpid()}" in result.stderr
    assert "loading" not in result.stderr and "checkpoint" not in result.stderr.lower()


def test_search_modes_lexical_hybrid_and_mmr(data_dir):
    from visdoc import lexical
    from visdoc.store import open_store

    with open_store("visdoc", data_dir=data_dir) as store:
        page = next(r for r in store.iter_records() if lexical.terms(str(r.payload.get("text") or "")))
    word = max(lexical.terms(page.payload["text"]), key=len)  # a word of that page's text layer
    for mode in ("lexical", "hybrid"):
        result = visdoc("search", word, "--mode", mode, "--json", "-k", "2", data_dir=data_dir)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)[0]["id"] == page.id, mode
    fused = visdoc("search", word, "--mode", "hybrid", "--fusion", "dbsf", "--json", data_dir=data_dir)
    assert fused.returncode == 0 and json.loads(fused.stdout)
    mmr = visdoc("search", "revenue", "--mode", "mmr", "--mmr-lambda", "0.3", "--json", data_dir=data_dir)
    assert mmr.returncode == 0 and json.loads(mmr.stdout)
    bad = visdoc("search", "x", "--mode", "mmr", "--mmr-lambda", "2", data_dir=data_dir)
    assert bad.returncode == 2 and "mmr_lambda must be between 0 and 1" in bad.stderr
    image = visdoc("search", str(SAMPLES / "sample-page.png"), "--image", "--mode", "lexical", data_dir=data_dir)
    assert image.returncode == 2 and "an image query has none" in image.stderr


def test_reindex_text_adds_lexical_vectors_to_an_old_collection(tmp_path):
    import numpy as np

    from visdoc.store import CollectionSpec, PagePoint, open_store, point_id

    rng = np.random.default_rng(0)
    with open_store("visdoc", CollectionSpec(dim=64, lexical=False), data_dir=tmp_path) as store:
        store.upsert([PagePoint(point_id("doc", i), rng.normal(size=64), rng.normal(size=(4, 128)),
                                {"document_id": "doc", "source": "/x.pdf", "page": i, "kind": "page_image",
                                 "text": text}) for i, text in enumerate(["Invoice INV-2025-0042", ""])])  # fmt: skip
    assert "lexical (BM25) vectors: no (add them: visdoc reindex-text" in visdoc("info", data_dir=tmp_path).stdout
    before = visdoc("search", "inv 2025 0042", "--mode", "lexical", "--json", data_dir=tmp_path)
    assert before.returncode == 0 and json.loads(before.stdout) == [] and "reindex-text" in before.stderr
    result = visdoc("reindex-text", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lexical vectors added for 1 of 2 points (1 have no text)" in result.stdout
    assert "lexical: 100%" in result.stderr  # progress is visible
    assert "lexical (BM25) vectors: yes" in visdoc("info", data_dir=tmp_path).stdout
    after = visdoc("search", "inv 2025 0042", "--mode", "lexical", "--json", data_dir=tmp_path)
    assert [r["page"] for r in json.loads(after.stdout)] == [0]
