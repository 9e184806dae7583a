"""Shared fixtures: the reference tiny checkpoint and a second one built by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "jina-v4-tiny"


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # far steadier timings and numerics on small shared machines


@pytest.fixture(scope="session")
def fixture_inputs() -> dict:
    inputs = json.loads((FIXTURE / "inputs" / "inputs.json").read_text())
    inputs["images"] = [FIXTURE / "inputs" / f"{name}.png" for name in inputs["image_order"]]
    return inputs


@pytest.fixture(scope="session")
def tiny_fp32():
    from visdoc import JinaV4

    return JinaV4.from_pretrained(FIXTURE, dtype="float32")


@pytest.fixture(scope="session")
def tiny_bf16():
    from visdoc import JinaV4

    return JinaV4.from_pretrained(FIXTURE, dtype="bfloat16")


@pytest.fixture(scope="session")
def tiny_varlen_fp32():
    """Packed batches through visdoc's varlen attention (the CUDA default), run on CPU."""
    from visdoc import JinaV4

    return JinaV4.from_pretrained(FIXTURE, dtype="float32", attn_implementation="varlen")


@pytest.fixture(scope="session")
def tiny_varlen_bf16():
    from visdoc import JinaV4

    return JinaV4.from_pretrained(FIXTURE, dtype="bfloat16", attn_implementation="varlen")


@pytest.fixture(scope="session")
def built_checkpoint(tmp_path_factory) -> Path:
    """A second random checkpoint: more layers and heads, a deeper vision tower, own tokenizer."""
    from visdoc.testing import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("built") / "ckpt")


def page_data_routes(app) -> list[tuple[str, str]]:  # noqa: ANN001 - a FastAPI app
    """``(method, sample URL)`` of every route of the search page that serves data (``/ui/api``,
    ``/files``), read from the app's schema, so a route added later is checked too."""
    samples = {"{name}": "docs", "{point_id}": "00000000-0000-0000-0000-000000000000", "{document_id}": "0" * 32,
               "{job_id}": "x", "{file_name}": "a.pdf"}  # fmt: skip
    routes = []
    for path, methods in app.openapi()["paths"].items():
        if path.startswith(("/ui/api", "/files")):
            for placeholder, value in samples.items():
                path = path.replace(placeholder, value)
            routes += [(method.upper(), path) for method in methods]
    return routes
