"""Image preprocessing: smart_resize arithmetic and patch layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visdoc.checkpoint import read_checkpoint
from visdoc.preprocess import ImagePreprocessor, PatchGrid, smart_resize

BUDGET = dict(factor=28, min_pixels=3136, max_pixels=602112)


@pytest.mark.parametrize(("size", "expected"), [
    ((1100, 850), (868, 672)),  # US Letter page at 100 DPI: 744 tokens, as documented for the model
    ((29, 37), (56, 84)),  # scaled up to the minimum budget
    ((700, 700), (700, 700)),  # multiples of 28 that fit stay as they are
    ((42, 70), (56, 56)),  # round half to even: 42/28 = 1.5 -> 2 and 70/28 = 2.5 -> 2
])  # fmt: skip
def test_smart_resize(size, expected):
    assert smart_resize(*size, **BUDGET) == expected


def test_smart_resize_keeps_within_budget_for_many_shapes():
    rng = np.random.default_rng(0)
    for h, w in rng.integers(10, 5000, size=(300, 2)):
        if max(h, w) / min(h, w) > 200:
            continue
        rh, rw = smart_resize(int(h), int(w), **BUDGET)
        assert rh % 28 == 0 and rw % 28 == 0
        assert rh * rw <= BUDGET["max_pixels"] and rh * rw >= BUDGET["min_pixels"]


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 3000, **BUDGET)


def test_patches_follow_the_qwen2_vl_layout():
    pre = ImagePreprocessor(read_checkpoint(__import__("conftest").FIXTURE).pixels)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8))
    grid = pre.grid(84, 56)
    assert grid == PatchGrid(1, 4, 6) and grid.tokens(2) == 6
    patches = pre.patches(image, grid)
    assert patches.shape == (24, 3 * 2 * 14 * 14) and patches.dtype == torch.float32
    # first patch = top-left 14x14 block, channel-major, repeated for the two temporal frames
    b = pre.budget
    pixels = np.asarray(image, dtype=np.float32)[:14, :14].transpose(2, 0, 1) / 255
    normalised = (pixels - np.array(b.image_mean)[:, None, None]) / np.array(b.image_std)[:, None, None]
    expected = np.stack([normalised, normalised], axis=1).reshape(-1)
    np.testing.assert_allclose(patches[0].numpy(), expected, atol=1e-5)

    # patches come in 2x2 merge units: index 1 is the block to the right, index 2 the block below
    def block(top: int, left: int) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.float32)[top : top + 14, left : left + 14].transpose(2, 0, 1) / 255
        normalised = (pixels - np.array(b.image_mean)[:, None, None]) / np.array(b.image_std)[:, None, None]
        return np.stack([normalised, normalised], axis=1).reshape(-1)

    np.testing.assert_allclose(patches[1].numpy(), block(0, 14), atol=1e-5)
    np.testing.assert_allclose(patches[2].numpy(), block(14, 0), atol=1e-5)
