"""Behaviour of the encoding API that every front-end relies on."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURE
from visdoc import (
    CheckpointError,
    ImageLoadError,
    JinaV4,
    UnknownPromptError,
    UnknownTaskError,
    UnsupportedDimError,
)

TEXTS = ["short", "a somewhat longer text about invoices and receipts " * 3, "", "mid length text here", "x" * 50]


def test_dense_and_multivector_from_one_call_equal_separate_calls(tiny_fp32, fixture_inputs):
    both = tiny_fp32.encode_texts(TEXTS, prompt_name="passage", dense=True, multivector=True)
    dense = tiny_fp32.encode_texts(TEXTS, prompt_name="passage").dense
    multi = tiny_fp32.encode_texts(TEXTS, prompt_name="passage", dense=False, multivector=True).multivector
    np.testing.assert_allclose(both.dense, dense, atol=1e-6)
    for a, b in zip(both.multivector, multi, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    images = fixture_inputs["images"]
    both = tiny_fp32.encode_images(images, multivector=True)
    np.testing.assert_allclose(both.dense, tiny_fp32.encode_images(images).dense, atol=1e-6)
    separate = tiny_fp32.encode_images(images, dense=False, multivector=True).multivector
    for a, b in zip(both.multivector, separate, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_one_forward_pass_yields_both_outputs(tiny_fp32):
    calls = []
    hook = tiny_fp32.network.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        tiny_fp32.encode_texts(["one text"], dense=True, multivector=True)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_results_come_back_in_input_order_whatever_the_batching(tiny_fp32, fixture_inputs):
    reference = [tiny_fp32.encode_texts([t], multivector=True) for t in TEXTS]
    budget = tiny_fp32.max_batch_tokens
    try:
        for max_tokens, batch_size in [(8192, None), (40, None), (8192, 2)]:
            tiny_fp32.max_batch_tokens = max_tokens
            got = tiny_fp32.encode_texts(TEXTS, multivector=True, batch_size=batch_size)
            for i, ref in enumerate(reference):
                np.testing.assert_allclose(got.dense[i], ref.dense[0], atol=1e-5)
                assert got.multivector[i].shape == ref.multivector[0].shape
    finally:
        tiny_fp32.max_batch_tokens = budget
    images = fixture_inputs["images"]
    single = np.concatenate([tiny_fp32.encode_images([p]).dense for p in images])
    np.testing.assert_allclose(tiny_fp32.encode_images(images, batch_size=2).dense, single, atol=1e-5)


def test_outputs_are_normalised_float32_with_the_requested_dims(tiny_fp32):
    for dim in tiny_fp32.dims:
        result = tiny_fp32.encode_texts(TEXTS, dim=dim, multivector=True)
        assert result.dense.shape == (len(TEXTS), dim) and result.dense.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(result.dense, axis=1), 1, atol=1e-5)
        for tokens in result.multivector:
            assert tokens.dtype == np.float32 and tokens.shape[1] == tiny_fp32.multivector_dim
            np.testing.assert_allclose(np.linalg.norm(tokens, axis=1), 1, atol=1e-5)
    full = tiny_fp32.encode_texts(TEXTS).dense
    small = tiny_fp32.encode_texts(TEXTS, dim=tiny_fp32.dims[0]).dense
    prefix = full[:, : tiny_fp32.dims[0]]
    np.testing.assert_allclose(small, prefix / np.linalg.norm(prefix, axis=1, keepdims=True), atol=1e-5)


def test_prompts_select_the_prefix_and_text_matching_is_symmetric(tiny_fp32):
    query = tiny_fp32.encode_texts(TEXTS, prompt_name="query").dense
    passage = tiny_fp32.encode_texts(TEXTS, prompt_name="passage").dense
    assert np.max(np.abs(query - passage)) > 1e-3
    tm_query = tiny_fp32.encode_texts(TEXTS, task="text-matching", prompt_name="query").dense
    tm_passage = tiny_fp32.encode_texts(TEXTS, task="text-matching", prompt_name="passage").dense
    np.testing.assert_allclose(tm_query, tm_passage, atol=1e-6)
    prefix_tokens = len(tiny_fp32.tokenizer.texts([""], "Query: ")[0])
    assert prefix_tokens > 0  # the empty text still carries its prompt
    assert tiny_fp32.encode_texts([""], multivector=True, dense=False).multivector[0].shape[0] == prefix_tokens


def test_task_adapters_switch_per_call(tiny_fp32):
    outputs = {task: tiny_fp32.encode_texts(TEXTS, task=task).dense for task in tiny_fp32.tasks}
    assert np.max(np.abs(outputs["retrieval"] - outputs["code"])) > 1e-3
    again = tiny_fp32.encode_texts(TEXTS, task="retrieval").dense
    np.testing.assert_allclose(again, outputs["retrieval"], atol=1e-6)


def test_images_may_be_pil_paths_or_bytes(tiny_fp32, fixture_inputs):
    path = fixture_inputs["images"][3]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    result = tiny_fp32.encode_images([path, str(path), data, pil]).dense
    for row in result[1:]:
        np.testing.assert_allclose(row, result[0], atol=1e-6)


def test_max_pixels_caps_tokens_per_image(tiny_fp32):
    page = Image.new("RGB", (850, 1100), "white")
    full = tiny_fp32.encode_images([page], multivector=True).multivector[0]
    capped = tiny_fp32.encode_images([page], multivector=True, max_pixels=28 * 28 * 100).multivector[0]
    overhead = len(tiny_fp32.tokenizer.image(0)[0])
    assert len(capped) - overhead <= 100 < len(full) - overhead
    for bad in (100, 0, 2.5e6, 10**7):
        with pytest.raises(ValueError, match="max_pixels must be an int between the checkpoint's min_pixels"):
            tiny_fp32.encode_images([page], max_pixels=bad)


def test_texts_truncate_on_the_right_at_max_length(tiny_fp32):
    text = "word " * 100
    full = tiny_fp32.encode_texts([text], multivector=True, dense=False).multivector[0]
    limit = tiny_fp32.tokenizer.max_length
    try:
        tiny_fp32.tokenizer.max_length = 16
        tokens = tiny_fp32.encode_texts([text], multivector=True, dense=False).multivector[0]
    finally:
        tiny_fp32.tokenizer.max_length = limit
    assert tokens.shape[0] == 16
    np.testing.assert_allclose(tokens, full[:16], atol=1e-5)  # the model is causal: the kept prefix is unchanged


def test_any_iterable_of_inputs_works_but_a_single_input_is_refused(tiny_fp32, fixture_inputs):
    from_generator = tiny_fp32.encode_texts(t for t in TEXTS[:3]).dense
    np.testing.assert_allclose(from_generator, tiny_fp32.encode_texts(TEXTS[:3]).dense, atol=1e-6)
    with pytest.raises(TypeError, match="list of inputs"):
        tiny_fp32.encode_texts("hello")
    with pytest.raises(TypeError, match="list of inputs"):
        tiny_fp32.encode_images(fixture_inputs["images"][0])


def test_bf16_keeps_rotary_frequencies_in_float32(tiny_bf16):
    import torch

    buffers = {name: b for name, b in tiny_bf16.network.named_buffers() if "inv_freq" in name}
    assert buffers and all(b.dtype == torch.float32 for b in buffers.values())
    assert all(p.dtype == torch.bfloat16 for p in tiny_bf16.network.parameters())


def test_empty_input_gives_empty_result(tiny_fp32):
    result = tiny_fp32.encode_texts([], multivector=True)
    assert result.dense.shape == (0, tiny_fp32.dims[-1]) and result.multivector == [] and len(result) == 0
    assert len(tiny_fp32.encode_images([])) == 0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"task": "summarise"}, UnknownTaskError, "summarise"),
    ({"dim": 48}, UnsupportedDimError, "48"),
    ({"prompt_name": "document"}, UnknownPromptError, "document"),
    ({"dense": False}, ValueError, "nothing to compute"),
])  # fmt: skip
def test_bad_arguments_raise_clear_errors(tiny_fp32, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_fp32.encode_texts(["text"], **kwargs)


def test_non_string_text_names_its_index(tiny_fp32):
    with pytest.raises(TypeError, match="text 1"):
        tiny_fp32.encode_texts(["ok", 42])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_images_name_their_index_and_source(tiny_fp32, tmp_path, fixture_inputs):
    good = fixture_inputs["images"][0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:2000])
    cases = [
        ([good, corrupt], "image 1 .*corrupt.png"),
        ([tmp_path / "missing.png"], "image 0 .*missing.png"),
        ([good, good, truncated], "image 2 .*truncated.png"),
        ([good, b"garbage"], "image 1 .*7 bytes"),
        ([42], "image 0 .*expected a PIL image"),
        ([Image.new("RGB", (1000, 2))], "image 0 .*aspect ratio"),
    ]
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (4000, 4000)).save(bomb)
    monkey_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # anything above twice this is refused as a decompression bomb
    try:
        with pytest.raises(ImageLoadError, match="image 1 .*bomb.png"):
            tiny_fp32.encode_images([fixture_inputs["images"][1], bomb])  # 37x29 px stays under the limit
    finally:
        Image.MAX_IMAGE_PIXELS = monkey_limit
    for images, match in cases:
        with pytest.raises(ImageLoadError, match=match):
            tiny_fp32.encode_images(images)


def test_checkpoint_folder_missing_files_is_reported(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    (broken / "adapters" / "adapter_model.safetensors").unlink()
    (broken / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="adapter_model.safetensors.*model-00002|model-00002.*adapter_model"):
        JinaV4.from_pretrained(broken)
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        JinaV4.from_pretrained(tmp_path / "nowhere")


def test_checkpoint_with_a_weight_missing_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    weight_map = json.loads((broken / "model.safetensors.index.json").read_text())["weight_map"]
    shard = broken / weight_map["model.layers.0.mlp.up_proj.weight"]
    tensors = load_file(shard)
    del tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, shard)
    with pytest.raises(CheckpointError, match="lacks or mismatches"):
        JinaV4.from_pretrained(broken)


def test_no_language_model_head_is_built(tiny_fp32):
    names = [name for name, _ in tiny_fp32.network.named_modules()]
    assert not any("lm_head" in name for name in names)


def test_sizing_many_image_files_leaves_no_file_open(fixture_inputs):
    import os

    from visdoc.images import image_size

    before = len(os.listdir("/proc/self/fd"))
    sizes = [image_size(fixture_inputs["images"][i % 5], i) for i in range(200)]
    assert len(os.listdir("/proc/self/fd")) <= before and sizes[0] == (500, 300)


def test_concurrent_calls_with_different_tasks_do_not_mix_adapters(tiny_fp32):
    from concurrent.futures import ThreadPoolExecutor

    expected = {task: tiny_fp32.encode_texts(TEXTS, task=task).dense for task in tiny_fp32.tasks}
    jobs = [task for task in tiny_fp32.tasks for _ in range(4)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda task: tiny_fp32.encode_texts(TEXTS, task=task).dense, jobs))
    for task, got in zip(jobs, results, strict=True):
        np.testing.assert_allclose(got, expected[task], atol=1e-6)


def test_hub_ids_are_fetched_with_huggingface_hub(monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(FIXTURE)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = JinaV4.from_pretrained("jinaai/jina-embeddings-v4", revision="main")
    assert model.name == "jinaai/jina-embeddings-v4" and model.dims == (16, 32, 64)
    repo, revision, patterns = calls[0]
    assert (repo, revision) == ("jinaai/jina-embeddings-v4", "main")
    assert "adapters/adapter_model.safetensors" in patterns and "model*.safetensors" in patterns

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="could not fetch jinaai/jina-embeddings-v4.*network unreachable"):
        JinaV4.from_pretrained("jinaai/jina-embeddings-v4")


def test_each_result_item_says_where_its_content_tokens_and_image_patches_are(tiny_fp32, fixture_inputs):
    from visdoc.points import PAGE_IMAGE, TEXT_CHUNK

    images = tiny_fp32.encode_images(fixture_inputs["images"], multivector=True)
    merge = tiny_fp32.pixels.merge_size
    for i, path in enumerate(fixture_inputs["images"]):
        item = images.item(i)
        assert item.tokens == len(item.multivector)
        assert item.content_span == tiny_fp32.tokenizer.content_span(PAGE_IMAGE, item.tokens)
        with Image.open(path) as image:
            grid = tiny_fp32.preprocessor.grid(*image.size)
        assert item.grid == (grid.h // merge, grid.w // merge)
        start, end = item.content_span
        assert end - start == item.grid[0] * item.grid[1]  # the patches, row by row
    texts = tiny_fp32.encode_texts(["a passage of text", "x"], prompt_name="passage", multivector=True)
    for i in range(2):
        item = texts.item(i)
        assert item.grid is None and item.tokens == len(item.multivector)
        assert item.content_span == tiny_fp32.tokenizer.content_span(TEXT_CHUNK, item.tokens, "passage")
        assert item.content_span[0] > 0  # the prompt's tokens are not content


@pytest.fixture(scope="module")
def short_matryoshka(tmp_path_factory):
    """A checkpoint whose Matryoshka sizes stop below its hidden size (64: sizes 16 and 32)."""
    from visdoc.testing import TinySpec, build_checkpoint

    spec = TinySpec(hidden_size=64, heads=4, layers=2, intermediate_size=128, matryoshka_dims=(16, 32),
                    vision_depth=2, vision_fullatt_blocks=(1,))  # fmt: skip
    return JinaV4.from_pretrained(build_checkpoint(tmp_path_factory.mktemp("short") / "ckpt", spec), dtype="float32")


def test_dim_none_returns_the_full_hidden_size_when_matryoshka_stops_below_it(short_matryoshka):
    import torch
    import torch.nn.functional as F

    from visdoc.encoder.arguments import check_dim

    model = short_matryoshka
    assert model.dims == (16, 32, 64) and model.dims[-1] == model.checkpoint.hidden_size
    assert check_dim(None, model.dims) == 64 and model.checkpoint.matryoshka_dims == (16, 32)
    texts = ["short", "a somewhat longer text about invoices and receipts"]
    full = model.encode_texts(texts, dim=None).dense
    assert full.shape == (2, 64)
    with torch.inference_mode():
        model.network.use_task("retrieval")
        means = [model.network.model(input_ids=torch.tensor([ids]), use_cache=False).last_hidden_state[0].mean(0)
                 for ids in model.tokenizer.texts(texts, "Query: ")]  # fmt: skip
        expected = F.normalize(torch.stack(means), dim=-1).numpy()
    np.testing.assert_allclose(full, expected, atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(texts, dim=64).dense, full, atol=1e-6)
    cut = model.encode_texts(texts, dim=32).dense
    np.testing.assert_allclose(cut, full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(UnsupportedDimError, match=r"\[16, 32, 64\]"):
        model.encode_texts(texts, dim=48)
