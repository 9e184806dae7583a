"""Every ```python snippet of README.md and docs/*.md runs as a user would run it: saved as a script
(no main guard added, not edited) and run with ``python file.py`` in a folder holding the inputs
snippets name, offline. It passes when it exits with 0, prints no traceback (a worker's included)
and no ingestion summary it prints reports problems (the sample documents are all good).

Snippets name the real model (``jinaai/jina-embeddings-v4``, or nothing: ``$VISDOC_MODEL`` unset
falls back to that id). A Hugging Face hub cache built here resolves that id to the tiny checkpoint
exactly as the hub's own cache would (``refs/main`` -> ``snapshots/<commit>/``), with
``HF_HUB_OFFLINE=1``: neither the snippets nor visdoc are changed for the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE

ROOT = FIXTURE.parents[2]
EXAMPLES = ROOT / "examples"
HUB_ID = "jinaai/jina-embeddings-v4"
COMMIT = "0" * 40  # the snapshot's (made-up) commit hash
TIMEOUT_S = 300
PROBLEMS = re.compile(r"\b[1-9][0-9]* problems\b")  # an ingestion summary that skipped files or pages
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")

# Snippets that need what cannot exist offline (a Qdrant server, an API key): a piece of their code
# and why. Each one is reported as skipped with its reason, never passed over in silence.
NEEDS_SERVICE: dict[str, str] = {
    'OpenAI(base_url="http://localhost:8080/v1"': "needs a running `visdoc serve`; the same OpenAI SDK calls run "
    "against a real one in tests/test_server_clients.py",
}


def snippets() -> list[tuple[str, str]]:
    """``(id, code)`` of each ```python fenced block, the id ``FILE:LLINE`` of its opening fence."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = doc.read_text(encoding="utf-8").splitlines()
        number = 0
        while number < len(lines):
            fence = FENCE.match(lines[number])
            number += 1
            if not fence:
                continue
            start, indent, code = number, fence["indent"], []
            while number < len(lines) and lines[number].strip() != "```":
                code.append(lines[number].removeprefix(indent))
                number += 1
            number += 1
            found.append((f"{doc.relative_to(ROOT)}:L{start}", "\n".join(code) + "\n"))
    return found


SNIPPETS = snippets()


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face home whose hub cache holds the tiny checkpoint as the snapshot of ``HUB_ID``."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for entry in FIXTURE.iterdir():
        (snapshot / entry.name).symlink_to(entry.resolve())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)  # no newline: the hub reads the file as is
    return home


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A fresh folder holding the inputs snippets name: ``examples/``, ``page1.png``, ``page2.png``
    and ``docs/`` with the sample documents."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    sample = EXAMPLES / "data" / "sample-page.png"
    for name in ("page1.png", "page2.png"):
        shutil.copy(sample, tmp_path / name)
    shutil.copytree(EXAMPLES / "data", tmp_path / "docs")
    return tmp_path


def offline_env(hub_cache: Path) -> dict[str, str]:
    """This environment, offline, with the hub cache above and nothing naming a model or a service."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VISDOC_MODEL", "QDRANT_URL", "QDRANT_API_KEY", "OPENAI_API_KEY", "RAY_ADDRESS")}  # fmt: skip
    env |= {"HF_HOME": str(hub_cache), "HF_HUB_CACHE": str(hub_cache / "hub"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    return env


def test_the_docs_have_python_snippets():
    assert any(name.startswith("README.md:") for name, _ in SNIPPETS)


@pytest.mark.parametrize("code", [code for _, code in SNIPPETS], ids=[name for name, _ in SNIPPETS])
def test_snippet_runs_as_a_script(code, workdir, hub_cache):
    for piece, reason in NEEDS_SERVICE.items():
        if piece in code:
            pytest.skip(reason)
    script = workdir / "snippet.py"
    script.write_text(code, encoding="utf-8")
    try:
        done = subprocess.run([sys.executable, script.name], cwd=workdir, env=offline_env(hub_cache),
                              capture_output=True, text=True, timeout=TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the snippet ran over {TIMEOUT_S} s\n--- stderr ---\n{_text(exc.stderr)}\n--- code ---\n{code}")
    failed = (f"exited with {done.returncode}" if done.returncode
              else "printed a traceback" if "Traceback (most recent call last)" in done.stderr
              else "reported problems" if PROBLEMS.search(done.stdout) else None)  # fmt: skip
    if failed:
        pytest.fail(f"the snippet {failed}\n--- stderr ---\n{done.stderr}\n--- stdout ---\n{done.stdout}\n"
                    f"--- code ---\n{code}")  # fmt: skip


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""
