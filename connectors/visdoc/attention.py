"""Variable-length attention over packed sequences: no padding token is ever computed.

Registered with transformers as ``visdoc_flash_varlen``. The name contains "flash" on purpose:
transformers then hands the vision tower's window boundaries (``cu_seqlens``) to the attention
function in one call instead of looping over windows in Python, and builds no dense mask for the
text tower. Text sequences are packed into one row; their boundaries travel in a context
variable set by :func:`packed_sequences` for the duration of one forward pass.

On CUDA the kernel is PyTorch's own FlashAttention varlen (``torch.nn.attention.varlen``), so no
extra package is needed. Elsewhere each sequence runs through ``scaled_dot_product_attention``:
slower, but it computes the same numbers, which is what the CPU tests compare.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

NAME = "visdoc_flash_varlen"

_TEXT_SEQUENCES: ContextVar[tuple[torch.Tensor, list[int]] | None] = ContextVar("visdoc_text_sequences", default=None)


@contextlib.contextmanager
def packed_sequences(lengths: list[int], device: torch.device) -> Iterator[None]:
    """Tell the text tower's attention where each packed sequence starts and ends."""
    offsets = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    token = _TEXT_SEQUENCES.set((offsets.to(device, non_blocking=True), lengths))
    try:
        yield
    finally:
        _TEXT_SEQUENCES.reset(token)


def register() -> str:
    """Register the attention function with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    return NAME


@torch.compiler.disable  # a graph break by design: boundaries are data, the kernel is already fused
def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    is_causal: bool | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention interface: ``query`` is ``[1, heads, tokens, head_dim]`` holding
    packed sequences; returns ``[1, tokens, heads, head_dim]``."""
    if query.shape[0] != 1:
        raise ValueError(f"{NAME} expects one packed row, got a batch of {query.shape[0]}")
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    if cu_seq_lens_q is not None:  # vision tower: windows or whole images
        offsets = cu_seq_lens_q.to(torch.int32)
        lengths = None
    else:
        packed = _TEXT_SEQUENCES.get()
        if packed is None:
            total = query.shape[2]
            offsets, lengths = torch.tensor([0, total], dtype=torch.int32, device=query.device), [total]
        else:
            offsets, lengths = packed
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, head_dim]
    if q.dtype in (torch.float16, torch.bfloat16) and available_on(q.device):
        out = _flash(q, k, v, offsets, lengths, causal=causal, scale=scaling, longest=max_length_q)
    else:
        out = _by_sequence(q, k, v, offsets, lengths, causal=causal, scale=scaling)
    return out.unsqueeze(0), None


def _by_sequence(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, lengths: list[int] | None,
    *, causal: bool, scale: float | None,
) -> torch.Tensor:  # fmt: skip
    """Reference path: one SDPA call per sequence (exactly what an unpadded batch of one computes)."""
    if lengths is None:
        lengths = (offsets[1:] - offsets[:-1]).tolist()
    outputs = []
    gqa = k.shape[1] != q.shape[1]
    for qs, ks, vs in zip(*(t.split(lengths) for t in (q, k, v)), strict=True):
        o = F.scaled_dot_product_attention(
            qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1), is_causal=causal, scale=scale, enable_gqa=gqa
        )
        outputs.append(o.transpose(0, 1))
    return torch.cat(outputs)


def _flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, lengths: list[int] | None,
    *, causal: bool, scale: float | None, longest: int | None,
) -> torch.Tensor:  # fmt: skip
    kernel, params = _cuda_varlen()  # type: ignore[misc]
    if lengths is not None:
        longest = max(lengths)
    elif longest is None:  # transformers passes the vision tower's longest window; this syncs the GPU
        longest = int((offsets[1:] - offsets[:-1]).max())
    if k.shape[1] != q.shape[1] and "enable_gqa" not in params:
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    options: dict[str, Any] = {}
    if scale is not None and "scale" in params:  # older torch: always the default 1/sqrt(head_dim)
        options["scale"] = scale
    if "enable_gqa" in params and k.shape[1] != q.shape[1]:
        options["enable_gqa"] = True
    if "window_size" in params:
        options["window_size"] = (-1, 0) if causal else (-1, -1)
    else:
        options["is_causal"] = causal
    return kernel(q, k, v, offsets, offsets, longest, longest, **options)


@cache
def _cuda_varlen() -> tuple[Any, frozenset[str]] | None:
    """PyTorch's FlashAttention varlen kernel and its keyword names, where this torch has one."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


@cache
def available_on(device: torch.device) -> bool:
    """Whether packed attention runs a fused kernel on ``device``: CUDA with torch's varlen API on
    an Ampere or newer GPU (FlashAttention needs compute capability 8.0)."""
    if device.type != "cuda" or _cuda_varlen() is None:
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)
