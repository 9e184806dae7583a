"""The GPU-path switches (packed varlen attention, merged adapters, background preprocessing,
random full-shape models) run on CPU too and must not change results beyond their stated bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURE
from visdoc import JinaV4
from visdoc.batching import plan_packed
from visdoc.errors import ImageLoadError
from visdoc.network import pad_intermediate

TEXTS = ["x", "hello world", "a much longer passage about invoices, revenue and margins " * 6, "short query"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    sizes = [(300, 500), (420, 300), (200, 200)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _encode(model: JinaV4, task: str = "retrieval"):
    texts = model.encode_texts(TEXTS, task=task, prompt_name="passage", multivector=True)
    images = model.encode_images(_images(), task=task, multivector=True)
    return texts, images


def _max_difference(a, b) -> float:
    dense = np.abs(a.dense - b.dense).max()
    tokens = max(np.abs(x - y).max() for x, y in zip(a.multivector, b.multivector, strict=True))
    return float(max(dense, tokens))


def _min_cosine(a, b) -> float:
    dense = np.sum(a.dense * b.dense, axis=1).min()
    tokens = min(np.sum(x * y, axis=1).min() for x, y in zip(a.multivector, b.multivector, strict=True))
    return float(min(dense, tokens))


@pytest.mark.parametrize("checkpoint", ["fixture", "built"])
def test_packed_batches_equal_padded_batches_in_float32(checkpoint, built_checkpoint, tiny_fp32, tiny_varlen_fp32):
    if checkpoint == "fixture":
        padded, packed = tiny_fp32, tiny_varlen_fp32
    else:
        padded = JinaV4.from_pretrained(built_checkpoint, dtype="float32")
        packed = JinaV4.from_pretrained(built_checkpoint, dtype="float32", attn_implementation="varlen")
    assert packed.packed and not padded.packed
    for a, b in zip(_encode(padded), _encode(packed), strict=True):
        assert [m.shape for m in a.multivector] == [m.shape for m in b.multivector]
        assert _max_difference(a, b) < 1e-5


def test_packing_puts_several_sequences_in_one_forward_pass(tiny_varlen_fp32):
    calls = []
    hook = tiny_varlen_fp32.network.model.register_forward_hook(lambda m, args, kwargs_out: calls.append(1))
    try:
        tiny_varlen_fp32.encode_texts(TEXTS)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_merged_adapters_match_unmerged_within_the_documented_bounds(tiny_fp32, tiny_bf16):
    merged_fp32 = JinaV4.from_pretrained(FIXTURE, dtype="float32", merge_adapters=True)
    merged_bf16 = JinaV4.from_pretrained(FIXTURE, dtype="bfloat16", merge_adapters=True)
    for task in ("retrieval", "code"):
        for a, b in zip(_encode(tiny_fp32, task), _encode(merged_fp32, task), strict=True):
            assert _max_difference(a, b) < 1e-5
        for a, b in zip(_encode(tiny_bf16, task), _encode(merged_bf16, task), strict=True):
            assert _min_cosine(a, b) > 0.999  # the bound docs/model.md states for bf16


def test_switching_merged_tasks_does_not_drift():
    merged = JinaV4.from_pretrained(FIXTURE, dtype="bfloat16", merge_adapters=True)
    first_weights = {k: v.clone() for k, v in merged.network.state_dict().items() if "base_layer" in k}
    first = _encode(merged, "retrieval")
    for task in ("code", "text-matching", "retrieval", "code"):
        _encode(merged, task)
    merged.network.use_task("retrieval")
    weights = {k: v for k, v in merged.network.state_dict().items() if "base_layer" in k}
    assert first_weights and all(torch.equal(first_weights[k], weights[k]) for k in first_weights)
    for a, b in zip(first, _encode(merged, "retrieval"), strict=True):
        assert _max_difference(a, b) < 1e-6  # equal weights; GPU kernels may still sum in another order


def test_stopping_merging_restores_the_original_weights(tiny_bf16):
    model = JinaV4.from_pretrained(FIXTURE, dtype="bfloat16", merge_adapters=True)
    _encode(model, "code")
    model.network.stop_merging()
    original = tiny_bf16.network.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in model.network.state_dict().items() if "base_layer" in k)
    for a, b in zip(_encode(tiny_bf16, "code"), _encode(model, "code"), strict=True):
        assert _max_difference(a, b) < 1e-6


def test_background_preprocessing_gives_the_same_results_and_names_bad_items(tiny_fp32, tmp_path):
    threaded = JinaV4.from_pretrained(FIXTURE, dtype="float32", preprocess_workers=3, max_batch_tokens=600)
    images = _images() * 3
    a = tiny_fp32.encode_images(images, multivector=True)
    b = threaded.encode_images(images, multivector=True)
    assert _max_difference(a, b) < 1e-5  # other batch-mates: GPU kernels may sum in another order
    truncated = tmp_path / "truncated.png"  # a readable header, undecodable pixels
    images[0].save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match=r"truncated\.png") as info:
        threaded.encode_images([*images, truncated])
    assert info.value.index == len(images)


def test_a_call_waiting_for_the_model_prepares_its_first_batches_meanwhile(tiny_fp32):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    threaded = JinaV4.from_pretrained(FIXTURE, dtype="float32", preprocess_workers=2, max_batch_tokens=600)
    prepared = threading.Event()
    prepare = threaded._prepare

    def spy(*args, **kwargs):
        batch = prepare(*args, **kwargs)
        prepared.set()
        return batch

    threaded._prepare = spy
    with ThreadPoolExecutor(1) as pool:
        with threaded._lock:  # another call holds the model
            waiting = pool.submit(threaded.encode_images, _images(), task="code", multivector=True)
            assert prepared.wait(30)  # its first batch was prepared while it waited
            assert not waiting.done()
        got = waiting.result(timeout=60)
    assert _max_difference(tiny_fp32.encode_images(_images(), task="code", multivector=True), got) < 1e-5


def test_concurrent_calls_with_workers_get_their_own_results(tiny_fp32):
    from concurrent.futures import ThreadPoolExecutor

    threaded = JinaV4.from_pretrained(FIXTURE, dtype="float32", preprocess_workers=2, max_batch_tokens=600)
    jobs = [(task, _images()[k:] + _images()[:k]) for k in range(3) for task in ("retrieval", "code")]
    expected = [tiny_fp32.encode_images(images, task=task, multivector=True) for task, images in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda job: threaded.encode_images(job[1], task=job[0], multivector=True), jobs))
    for a, b in zip(expected, got, strict=True):
        assert _max_difference(a, b) < 1e-5


def test_plan_packed_fills_each_batch_up_to_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 400, size=200).tolist()
    batches = plan_packed(lengths, 2048)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(sum(lengths[i] for i in b) <= 2048 for b in batches)
    assert len(batches) <= np.ceil(sum(lengths) / 2048) + 2
    assert plan_packed([5000, 10], 1000) == [[0], [1]]
    assert all(len(b) <= 3 for b in plan_packed(lengths, 10**6, 3))


def test_a_random_model_of_a_checkpoint_shape_loads_without_weight_files(tmp_path):
    from visdoc.testing import TinySpec, build_checkpoint

    folder = build_checkpoint(tmp_path / "shape", TinySpec(layers=2, vision_depth=2, vision_fullatt_blocks=(1,)),
                              weights=False)  # fmt: skip
    assert not list(folder.glob("model*.safetensors"))
    model = JinaV4.from_pretrained(folder, dtype="float32", attn_implementation="varlen", random_weights=True)
    texts, images = _encode(model)
    assert np.isfinite(texts.dense).all() and np.isfinite(images.dense).all()
    assert images.multivector[0].shape[1] == 128
    with pytest.raises(Exception, match="missing"):
        JinaV4.from_pretrained(folder)


def test_compiled_towers_give_the_same_results(tiny_varlen_fp32):
    compiled = JinaV4.from_pretrained(FIXTURE, dtype="float32", attn_implementation="varlen", compile=True)
    for a, b in zip(_encode(tiny_varlen_fp32), _encode(compiled), strict=True):
        assert _max_difference(a, b) < 1e-5


def test_compiled_towers_switch_tasks_without_stale_graphs(tiny_varlen_fp32):
    compiled = JinaV4.from_pretrained(FIXTURE, dtype="float32", attn_implementation="varlen", compile=True)
    for task in ("retrieval", "code", "retrieval"):
        expected = tiny_varlen_fp32.encode_texts(TEXTS, task=task, prompt_name="passage").dense
        assert np.abs(compiled.encode_texts(TEXTS, task=task, prompt_name="passage").dense - expected).max() < 1e-5
    assert not any(p.requires_grad for p in compiled.network.parameters())


def test_padding_the_vision_mlp_to_aligned_widths_changes_nothing():
    model = JinaV4.from_pretrained(FIXTURE, dtype="float32", attn_implementation="varlen")
    before = model.encode_images(_images(), multivector=True)
    width = model.network.model.visual.blocks[0].mlp.gate_proj.out_features
    for block in model.network.model.visual.blocks:
        pad_intermediate(block.mlp, multiple=width + 24)
    mlp = model.network.model.visual.blocks[0].mlp
    assert mlp.gate_proj.weight.shape[0] == mlp.up_proj.bias.shape[0] == mlp.down_proj.weight.shape[1] == width + 24
    assert _max_difference(before, model.encode_images(_images(), multivector=True)) < 1e-6
