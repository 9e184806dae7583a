"""The RAG templates and the README's framework examples run offline end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURE

ROOT = FIXTURE.parents[2]


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "examples" / "data")
    return tmp_path


def run(args: list[str], cwd) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("QDRANT_URL", "VISDOC_EMBEDDING_URL")}
    env["VISDOC_MODEL"] = str(FIXTURE)
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_langchain_rag_template(workdir):
    out = run([str(ROOT / "examples" / "langchain_rag.py"), "examples/data", "--fake-llm"], workdir)
    assert "A: (offline stand-in model)" in out
    assert len(re.findall(r"^  \S+ page \d+$", out, flags=re.M)) == 3


def test_langchain_prompt_carries_page_images_and_text(workdir):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from langchain_core.documents import Document
        from langchain_rag import build_messages
    finally:
        sys.path.pop(0)
    pdf = str(workdir / "examples" / "data" / "annual-report.pdf")
    page = Document(page_content="Q3 52.6", metadata={"source": pdf, "page": 2, "page_label": "3",
                                                      "image_path": f"{pdf}#page=3"})  # fmt: skip
    system, human = build_messages("Which quarter?", [page])
    kinds = [block["type"] for block in human.content]
    assert kinds == ["text", "text", "image"] and "[annual-report.pdf p. 3]" in human.content[1]["text"]
    assert human.content[2]["mime_type"] == "image/png" and len(human.content[2]["base64"]) > 1000


def test_llamaindex_rag_template_persists(workdir):
    pdf = "examples/data/annual-report.pdf"
    first = run([str(ROOT / "examples" / "llamaindex_rag.py"), pdf, "--mock-llm"], workdir)
    again = run([str(ROOT / "examples" / "llamaindex_rag.py"), pdf, "--mock-llm"], workdir)  # reopens the index
    sources = [re.findall(r"^  (\S+ page \d+)", out, flags=re.M) for out in (first, again)]
    assert len(sources[0]) == 2 and sources[0] == sources[1]


def test_plain_rag_template(workdir):
    out = run([str(ROOT / "examples" / "plain_rag.py"), "examples/data", "--out", "request.json"], workdir)
    assert "chat request with 3 pages" in out
    content = json.loads((workdir / "request.json").read_text())["messages"][0]["content"]
    images = [block for block in content if block["type"] == "image_url"]
    assert len(images) == 3 and all(i["image_url"]["url"].startswith("data:image/png;base64,") for i in images)


@pytest.mark.parametrize("name", ["langchain", "llamaindex"])
def test_readme_examples_run(workdir, name):
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if f"# README example: {name}\n" in b]
    assert len(blocks) == 1
    out = run(["-c", blocks[0]], workdir)
    assert len(out.strip().splitlines()) == 2
