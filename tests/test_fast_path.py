"""The fast path's defaults (merged adapters, compiled blocks): on for long-running work on CUDA,
off for one-off calls and on the CPU, one flag away from the exact arithmetic; and compiled graphs
that survive task switches. CPU tests give "cuda" as an argument and record what would be loaded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fidelity import golden_calls, min_cosine

from conftest import FIXTURE
from visdoc import JinaV4
from visdoc.cli.parser import _parser
from visdoc.encoder import speed
from visdoc.encoder.speed import fast_path, speed_choice

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["hello world", "a much longer passage about invoices, revenue and margins " * 4]


class Loaded(Exception):
    """Stops a command once it has asked for its model."""


@pytest.fixture
def loads(monkeypatch) -> list[dict]:
    """``JinaV4.from_pretrained``'s keywords, recorded instead of loading (it then raises Loaded)."""
    calls: list[dict] = []

    def record(name, **kwargs):  # noqa: ANN001, ANN202
        calls.append(kwargs)
        raise Loaded

    monkeypatch.setattr(JinaV4, "from_pretrained", staticmethod(record))
    return calls


def _run(*argv: str) -> None:
    args = _parser().parse_args(list(argv))
    with pytest.raises(Loaded):
        args.run(args)


def test_the_policy_is_on_only_for_long_running_work_on_cuda():
    assert fast_path("cuda", True) and fast_path(torch.device("cuda:1"), True)
    assert not fast_path("cuda", False) and not fast_path("cpu", True) and not fast_path("cpu", False)
    assert speed_choice("cuda", True) == (True, True)
    assert speed_choice("cuda", True, merge_adapters=False) == (False, True)
    assert speed_choice("cpu", False, compile=True) == (False, True)
    assert speed.LONG_INGEST_PAGES == 200


def test_user_code_and_long_running_work_on_the_cpu_stay_plain():
    for model in (JinaV4.from_pretrained(FIXTURE, dtype="float32"),
                  JinaV4.from_pretrained(FIXTURE, dtype="float32", long_running=True)):  # fmt: skip
        assert not model.network.merge_adapters and not model.network.compiled


def test_serve_on_cuda_merges_and_compiles_unless_told_otherwise(loads):
    _run("serve", "--device", "cuda")
    _run("serve", "--device", "cuda", "--no-compile")
    _run("serve", "--device", "cuda", "--exact")
    _run("serve", "--device", "cpu")
    picked = [(c["merge_adapters"], c["compile"]) for c in loads]
    assert picked == [(True, True), (True, False), (False, False), (False, False)]


def test_one_off_commands_stay_plain_on_cuda(loads, tmp_path):
    _run("similarity", "query", str(FIXTURE / "inputs" / "gray150.png"), "--device", "cuda")
    _run("similarity", "query", "x.png", "--device", "cuda", "--compile")
    assert [(c["merge_adapters"], c["compile"]) for c in loads] == [(False, False), (False, True)]


def _pdf(path: Path, pages: int) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"page {i}")
    doc.save(path)
    return path


@pytest.mark.parametrize(("pages", "fast"), [(2, False), (3, True)])
def test_ingest_turns_the_fast_path_on_from_the_threshold(loads, monkeypatch, tmp_path, pages, fast):
    monkeypatch.setattr(speed, "LONG_INGEST_PAGES", 3)
    folder = tmp_path / "docs"
    folder.mkdir()
    _pdf(folder / "a.pdf", pages - 1)
    (folder / "notes.txt").write_text("one text file counts one page")
    _run("ingest", str(folder), "--data-dir", str(tmp_path / "data"), "--device", "cuda")
    _run("ingest", str(folder), "--data-dir", str(tmp_path / "data"), "--device", "cuda", "--exact")
    assert [(c["merge_adapters"], c["compile"]) for c in loads] == [(fast, fast), (False, False)]


def test_exact_refuses_a_contradicting_flag(capsys):
    from visdoc.cli import main

    assert main(["serve", "--device", "cuda", "--exact", "--compile"]) != 0
    assert "--exact" in capsys.readouterr().err


def test_ray_gpu_actors_merge_and_compile_by_default(loads, monkeypatch, tmp_path):
    pytest.importorskip("ray")
    from visdoc.ingest.ray import _Embedder

    made = []
    monkeypatch.setattr("visdoc.ingest.ray.RayIngestor", lambda *a, **kw: made.append(kw))
    monkeypatch.setattr("visdoc.cli.commands._store_ingestion", lambda args, spec, make: make(None) or 0)
    for extra in ([], ["--exact"]):
        argv = ["ingest", "x", "--ray", "--model", str(FIXTURE), "--data-dir", str(tmp_path), *extra]
        args = _parser().parse_args(argv)
        args.run(args)
    assert [(kw["merge_adapters"], kw["compile"]) for kw in made] == [(None, None), (False, False)]
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # what a CPU actor does to its process
    loading = {"dtype": None, "compile": None, "merge_adapters": None, "long_running": True}  # RayIngestor's
    for device, fast in (("cuda", True), ("cpu", False)):
        with pytest.raises(Loaded):
            _Embedder(str(FIXTURE), "m", None, None, device, loading, 1)
        kw = loads[-1]
        assert speed_choice(kw["device"], kw["long_running"], merge_adapters=kw["merge_adapters"],
                            compile=kw["compile"]) == (fast, fast)  # fmt: skip


def test_a_task_switch_keeps_the_merged_models_compiled_graphs(tiny_fp32):
    from torch._dynamo.backends.registry import lookup_backend

    compiled = []

    def counting(graph, inputs):  # noqa: ANN001, ANN202 - inductor, counted
        compiled.append(1)
        return lookup_backend("inductor")(graph, inputs)

    torch._dynamo.reset()
    model = JinaV4.from_pretrained(FIXTURE, dtype="float32", merge_adapters=True)
    model.network.compile_towers(backend=counting)
    eager = JinaV4.from_pretrained(FIXTURE, dtype="float32", merge_adapters=True)
    counts = []
    for task in ("retrieval", "code", "text-matching", "retrieval"):
        got = model.encode_texts(TEXTS, task=task, prompt_name="passage").dense
        counts.append(len(compiled))
        expected = eager.encode_texts(TEXTS, task=task, prompt_name="passage").dense
        assert np.abs(got - expected).max() < 1e-5, task  # the graphs see the weights merged in place
    assert counts[0] > 0 and counts == [counts[0]] * 4, counts


def test_opting_out_gives_the_reference_arithmetic(fixture_inputs):
    model = JinaV4.from_pretrained(FIXTURE, dtype="float32", merge_adapters=False, compile=False, long_running=True)
    expected = np.load(FIXTURE / "golden_fp32.npz")
    ours = golden_calls(model, fixture_inputs)
    assert min(min_cosine(ours[k], expected[k]) for k in expected.files) > 0.9999  # test_fidelity's bound


def test_the_device_check_fails_fast_saying_what_is_missing(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    script = ROOT / "scripts" / "device-check.sh"
    for path, message in (("/usr/bin:/bin", "no nvidia-smi"), (f"{fake}:/usr/bin:/bin", "sees no CUDA device")):
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: the check would run")
        done = subprocess.run(["bash", str(script)], env={"PATH": path, "OUT": str(tmp_path)}, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stdout and message in (tmp_path / "device-check.txt").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_long_running_model_is_merged_compiled_and_keeps_its_graphs():
    model = JinaV4.from_pretrained(FIXTURE, long_running=True)
    assert model.network.merge_adapters and model.network.compiled
    speed.warm_up(model)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for task in ("code", "text-matching", "retrieval"):
        model.encode_texts(TEXTS, task=task)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
