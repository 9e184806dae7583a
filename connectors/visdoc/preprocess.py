"""Qwen2-VL image preprocessing in torch: smart_resize, uint8 bicubic resize, normalise, patchify.

The resize runs on the uint8 CPU tensor, which is what reproduces the reference bit for bit
(float resizing or Pillow's bicubic drift measurably; see docs/model.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import PixelBudget

if TYPE_CHECKING:
    import torch
    from PIL import Image

MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor`` within the pixel budget, aspect kept."""
    if min(height, width) <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} exceeds {MAX_ASPECT_RATIO}")
    h_bar = round(height / factor) * factor  # round-half-even, as the reference
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImageGrid:
    """Patch grid of one image: temporal, height and width in vision patches."""

    t: int
    h: int
    w: int

    def tokens(self, merge_size: int) -> int:
        """Number of language-model tokens (``<|image_pad|>``) the image expands to."""
        return self.t * self.h * self.w // (merge_size * merge_size)


class ImagePreprocessor:
    """Resizes and patchifies images exactly like Qwen2-VL's image processor."""

    def __init__(self, budget: PixelBudget) -> None:
        self.budget = budget

    def grid(self, width: int, height: int, max_pixels: int | None = None) -> ImageGrid:
        """The patch grid an image of this size gets under the (optionally lowered) pixel cap."""
        b = self.budget
        cap = b.max_pixels if max_pixels is None else max_pixels
        if cap < b.min_pixels:
            raise ValueError(f"max_pixels={cap} is below the checkpoint's min_pixels={b.min_pixels}")
        h, w = smart_resize(height, width, b.factor, b.min_pixels, cap)
        return ImageGrid(1, h // b.patch_size, w // b.patch_size)

    def patches(self, image: Image.Image, grid: ImageGrid) -> torch.Tensor:
        """``[t*h*w, 3 * temporal * patch * patch]`` float32 patches of an RGB image."""
        import torch
        import torch.nn.functional as F

        b = self.budget
        ps, ms, tp = b.patch_size, b.merge_size, b.temporal_patch_size
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)
        size = (grid.h * ps, grid.w * ps)
        if tuple(pixels.shape[-2:]) != size:
            pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)
        # patchify while still uint8 (4x less to move), then rescale and normalise in place:
        # x * (scale / std) - mean / std, per channel; a patch row is laid out [C, temporal, p, p]
        channels = pixels.shape[1]
        frame = pixels.reshape(grid.t, 1, channels, grid.h // ms, ms, ps, grid.w // ms, ms, ps)
        frame = frame.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [t, h/m, w/m, m, m, C, 1, p, p]
        frames = frame.expand(*frame.shape[:6], tp, ps, ps)  # the still image repeated over time
        patches = frames.reshape(grid.t * grid.h * grid.w, channels, tp * ps * ps).float()
        gain = torch.tensor([b.rescale_factor / s for s in b.image_std]).view(1, channels, 1)
        shift = torch.tensor([-m / s for m, s in zip(b.image_mean, b.image_std, strict=True)]).view(1, channels, 1)
        return patches.mul_(gain).add_(shift).reshape(grid.t * grid.h * grid.w, channels * tp * ps * ps)
