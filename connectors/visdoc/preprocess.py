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
class PatchGrid:
    """Patch grid of one image: temporal, height and width in vision patches."""

    t: int
    h: int
    w: int

    def tokens(self, merge_size: int) -> int:
        """Number of language-model tokens (``<|image_pad|>``) the image expands to."""
        return self.t * self.h * self.w // (merge_size * merge_size)

    def merged(self, merge_size: int) -> tuple[int, int]:
        """(rows, cols) of the language-model tokens the patches merge into."""
        return self.h // merge_size, self.w // merge_size


class ImagePreprocessor:
    """Resizes and patchifies images exactly like Qwen2-VL's image processor."""

    def __init__(self, budget: PixelBudget) -> None:
        self.budget = budget
        self._affines: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale / std, -mean / std)`` as ``[1, 3, 1]`` float32 tensors on ``device``,
        made once per device (a fresh one each batch would be a blocking copy to a GPU)."""
        import torch

        key = str(device)
        if key not in self._affines:
            b = self.budget
            gain = [b.rescale_factor / s for s in b.image_std]
            shift = [-m / s for m, s in zip(b.image_mean, b.image_std, strict=True)]
            self._affines[key] = (torch.tensor(gain, device=device).view(1, -1, 1),
                                  torch.tensor(shift, device=device).view(1, -1, 1))  # fmt: skip
        return self._affines[key]

    def grid(self, width: int, height: int, max_pixels: int | None = None) -> PatchGrid:
        """The patch grid an image of this size gets under the (optionally lowered) pixel cap."""
        b = self.budget
        cap = b.max_pixels if max_pixels is None else max_pixels
        if cap < b.min_pixels:
            raise ValueError(f"max_pixels={cap} is below the checkpoint's min_pixels={b.min_pixels}")
        h, w = smart_resize(height, width, b.factor, b.min_pixels, cap)
        return PatchGrid(1, h // b.patch_size, w // b.patch_size)

    def patches(self, image: Image.Image, grid: PatchGrid) -> torch.Tensor:
        """``[t*h*w, 3 * temporal * patch * patch]`` float32 patches of an RGB image (the model's input)."""
        return self.normalize(self.pixels(image, grid))

    def pixels(self, image: Image.Image, grid: PatchGrid, out: torch.Tensor | None = None) -> torch.Tensor:
        """``[t*h*w, 3, patch * patch]`` uint8 patches of an RGB image resized to ``grid``, written
        into ``out`` when given: what travels to the model's device, 8x smaller than its float
        input (:meth:`normalize` finishes them there)."""
        import torch
        import torch.nn.functional as F

        b = self.budget
        ps, ms = b.patch_size, b.merge_size
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)
        size = (grid.h * ps, grid.w * ps)
        if tuple(pixels.shape[-2:]) != size:
            pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)
        channels = pixels.shape[1]
        frame = pixels.reshape(grid.t, channels, grid.h // ms, ms, ps, grid.w // ms, ms, ps)
        frame = frame.permute(0, 2, 5, 3, 6, 1, 4, 7)  # [t, h/m, w/m, m, m, C, p, p]: 2x2 merge units
        shape = (grid.t * grid.h * grid.w, channels, ps * ps)
        if out is None:
            return frame.reshape(shape)
        out.view(frame.shape).copy_(frame)
        return out

    def normalize(self, pixels: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """uint8 patches from :meth:`pixels` (on any device) as the model's input: rescaled and
        normalised per channel in float32 (``x * (scale / std) - mean / std``), cast to ``dtype``,
        the still frame repeated over the temporal patch: ``[n, 3 * temporal * patch * patch]``."""
        import torch

        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 patches from pixels(), got {pixels.dtype}")
        b = self.budget
        n, channels, area = pixels.shape
        gain, shift = self._affine(pixels.device)
        values = pixels.float().mul_(gain).add_(shift)
        if dtype is not None:
            values = values.to(dtype)
        frames = values.unsqueeze(2).expand(n, channels, b.temporal_patch_size, area)
        return frames.reshape(n, channels * b.temporal_patch_size * area)
