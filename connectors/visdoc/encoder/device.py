"""Where and how a local model computes: device, dtype and attention kernel, chosen from what is there."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ATTENTION_CHOICES = ("varlen", "flash_attention_2", "sdpa", "eager")
DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when there is a GPU, else the CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` (a torch dtype or a name such as ``bf16``), else bfloat16 on a GPU that has it, else float32."""
    import torch

    if dtype is None:
        gpu_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(set(DTYPE_NAMES.values()))}")
    return getattr(torch, name)


def pick_attention(attn_implementation: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """``attn_implementation`` checked, else the fastest kernel for the device and dtype: packed
    ``varlen`` in half precision where torch's FlashAttention runs, flash-attn's, else ``sdpa``."""
    import torch

    from ..attention import available_on

    if attn_implementation is not None:
        if attn_implementation not in ATTENTION_CHOICES:
            raise ValueError(
                f"unknown attn_implementation {attn_implementation!r}; use one of {', '.join(ATTENTION_CHOICES)}"
            )
        return attn_implementation
    half = dtype in (torch.bfloat16, torch.float16)  # flash-attention has no float32 kernels
    if half and available_on(device):
        return "varlen"
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"
