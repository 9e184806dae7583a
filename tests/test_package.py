"""Package-level promises: cheap import, CLI, test checkpoints that read ids from their files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import FIXTURE

ROOT = FIXTURE.parents[2]


def test_import_does_not_load_torch_transformers_or_peft():
    heavy = "('torch', 'transformers', 'peft', 'numpy')"
    code = f"import sys, visdoc; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_time_is_small():
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import visdoc"], capture_output=True, text=True)
    line = next(ln for ln in result.stderr.splitlines() if ln.rstrip().endswith("| visdoc"))
    cumulative_us = int(line.split("|")[1])
    assert cumulative_us < 300_000


def test_cli_similarity_with_the_tiny_checkpoint():
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    sample = ROOT / "examples" / "data" / "sample-page.png"
    cmd = [sys.executable, "-m", "visdoc", "similarity", "revenue in the third quarter", str(sample)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    row = result.stdout.strip().splitlines()[-1].split()
    assert row[-1].endswith("sample-page.png") and -1 <= float(row[0]) <= 1 and int(row[2]) > 700


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    env = os.environ | {"VISDOC_MODEL": str(FIXTURE)}
    cmd = [sys.executable, "-m", "visdoc", "similarity", "q", str(tmp_path / "missing.png")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "image 0" in result.stderr and "missing.png" in result.stderr and "Traceback" not in result.stderr


def test_built_checkpoint_uses_its_own_token_ids(built_checkpoint):
    from visdoc import JinaV4

    config = json.loads((built_checkpoint / "config.json").read_text())
    assert config["image_token_id"] < 1000  # not the 3B model's 151655
    model = JinaV4.from_pretrained(built_checkpoint)
    ids, start, end = model.tokenizer.image(4)
    assert ids.count(config["image_token_id"]) == 4
    assert ids[start] == config["vision_start_token_id"] and ids[end - 1] == config["vision_end_token_id"]
    assert model.dims == (32, 64, 128)
