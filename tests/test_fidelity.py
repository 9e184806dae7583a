"""Outputs match the reference implementation's golden arrays (and fp32 matches bf16)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURE


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.atleast_2d(a).astype(np.float64)
    b = np.atleast_2d(b).astype(np.float64)
    return float(np.min(np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)))


def golden_calls(model, inputs: dict) -> dict[str, np.ndarray]:
    """Every call listed in the fixture README, keyed like the golden files."""
    texts, images = inputs["texts"], inputs["images"]
    out = {
        "t_query_retrieval": model.encode_texts(texts, prompt_name="query").dense,
        "t_passage_retrieval": model.encode_texts(texts, prompt_name="passage").dense,
        "t_query_code": model.encode_texts(texts[3:5], task="code", prompt_name="query").dense,
        "t_passage_code": model.encode_texts(texts[3:5], task="code", prompt_name="passage").dense,
        "t_passage_retrieval_trunc32": model.encode_texts(texts[0:4], prompt_name="passage", dim=32).dense,
        "t_textmatching": model.encode_texts(texts[6:11], task="text-matching").dense,
        "i_code_trunc16": model.encode_images(images[:1], task="code", dim=16).dense,
        "i_retrieval_maxpix": model.encode_images([images[0], images[2]], max_pixels=28 * 28 * 20).dense,
    }
    mv = model.encode_texts(texts[0:4], prompt_name="query", dense=False, multivector=True).multivector
    out |= {f"t_query_retrieval_mv_mv{i}": m for i, m in enumerate(mv)}
    mv = model.encode_texts(texts[3:5], task="code", prompt_name="passage", dense=False, multivector=True).multivector
    out |= {f"t_passage_code_mv_mv{i}": m for i, m in enumerate(mv)}
    both = model.encode_images(images, multivector=True)
    out["i_retrieval"] = both.dense
    out |= {f"i_retrieval_mv{i}": m for i, m in enumerate(both.multivector)}
    return out


@pytest.mark.parametrize(("model_fixture", "golden", "threshold"), [
    ("tiny_fp32", "golden_fp32.npz", 0.9999),
    ("tiny_bf16", "golden_bf16.npz", 0.999),
    ("tiny_varlen_fp32", "golden_fp32.npz", 0.9999),
    ("tiny_varlen_bf16", "golden_bf16.npz", 0.999),
])  # fmt: skip
def test_matches_reference_golden_outputs(request, fixture_inputs, model_fixture, golden, threshold):
    model = request.getfixturevalue(model_fixture)
    expected = np.load(FIXTURE / golden)
    ours = golden_calls(model, fixture_inputs)
    assert set(ours) == set(expected.files)
    worst = {}
    for key in expected.files:
        assert ours[key].shape == expected[key].shape, key  # same dims and token counts
        worst[key] = min_cosine(ours[key], expected[key])
    failing = {k: v for k, v in worst.items() if v < threshold}
    assert not failing, failing


def test_fp32_and_bf16_agree_on_a_second_checkpoint_shape(built_checkpoint):
    """More layers/heads, vision depth 6 with several attention windows per image."""
    from visdoc import JinaV4

    fp32 = JinaV4.from_pretrained(built_checkpoint, dtype="float32")
    bf16 = JinaV4.from_pretrained(built_checkpoint, dtype="bfloat16")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(448, 336), (300, 500)]]
    texts = ["Which page shows the organisation chart?", "", "Umlaute: äöü ß " * 20]
    window = fp32.checkpoint.config["vision_config"]["window_size"]
    assert all(min(image.size) >= 2 * window for image in images)  # several attention windows per image
    for task in fp32.tasks:
        for encode in (
            lambda m, task=task: m.encode_texts(texts, task=task, prompt_name="passage", multivector=True),
            lambda m, task=task: m.encode_images(images, task=task, multivector=True),
        ):
            a, b = encode(fp32), encode(bf16)
            assert min_cosine(a.dense, b.dense) >= 0.999
            for x, y in zip(a.multivector, b.multivector, strict=True):
                assert x.shape == y.shape
                assert min_cosine(x, y) >= 0.999
