"""One forward pass over a prepared batch, and the pooling of its final hidden states.

Dense: the float32 mean of each item's pooling span, L2-normalised, truncated to the Matryoshka
size and normalised again. Multivector: every token through the projector, L2-normalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..network import Network
    from ..preprocess import ImagePreprocessor
    from .batches import Batch


def run_batch(
    network: Network, preprocessor: ImagePreprocessor, batch: Batch, *, device: torch.device, dtype: torch.dtype,
    packed: bool, image_token_id: int, dim: int, dense: bool, multivector: bool,
) -> tuple[np.ndarray | None, list[np.ndarray] | None]:  # fmt: skip
    """Dense rows ``[items, dim]`` and per-item token matrices ``[tokens_i, 128]`` of one batch."""
    import torch.nn.functional as F

    from ..attention import packed_sequences

    copy = {"non_blocking": device.type == "cuda"}
    lengths = batch.lengths
    ids = batch.ids.to(device, **copy)
    kwargs: dict[str, Any] = {}
    if batch.pixels is not None:
        kwargs["pixel_values"] = preprocessor.normalize(batch.pixels.to(device, **copy), dtype)
        kwargs["image_grid_thw"] = batch.grid_thw.to(device, **copy)  # type: ignore[union-attr]
    if packed:
        kwargs["position_ids"] = batch.positions.to(device, **copy)  # type: ignore[union-attr]
        with packed_sequences(lengths, device):
            hidden = network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state[0]
        token_index = None
    else:
        mask = batch.mask.to(device, **copy)  # type: ignore[union-attr]
        kwargs["attention_mask"] = mask if min(lengths) < max(lengths) else None
        if batch.pixels is not None:
            kwargs["mm_token_type_ids"] = (ids == image_token_id).int()
        hidden = network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state
        token_index = mask.bool()

    dense_rows = None
    if dense:
        pooled = mean_over_spans(hidden, batch)
        pooled = F.normalize(F.normalize(pooled, dim=-1)[:, :dim], dim=-1)
        dense_rows = pooled.cpu().numpy()
    token_rows = None
    if multivector:
        flat = hidden if token_index is None else hidden[token_index]
        tokens = F.normalize(network.multi_vector_projector(flat).float(), dim=-1).cpu().numpy()
        token_rows = np.split(tokens, np.cumsum(lengths)[:-1])
    return dense_rows, token_rows


def mean_over_spans(hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
    """float32 mean of each item's pooling span of final hidden states (packed ``[tokens, H]`` or
    padded ``[items, longest, H]``)."""
    import torch

    starts = [s.pool_start for s in batch.seqs]
    ends = [s.pool_end for s in batch.seqs]
    if hidden.ndim == 2:  # packed: sum each item's span with one index_add
        offsets = np.concatenate([[0], np.cumsum(batch.lengths)[:-1]])
        rows = np.concatenate([np.arange(o + a, o + b) for o, a, b in zip(offsets, starts, ends, strict=True)])
        owner = np.repeat(np.arange(len(starts)), [b - a for a, b in zip(starts, ends, strict=True)])
        rows_t = torch.from_numpy(rows).to(hidden.device)
        owner_t = torch.from_numpy(owner).to(hidden.device)
        sums = torch.zeros((len(starts), hidden.shape[-1]), dtype=torch.float32, device=hidden.device)
        sums.index_add_(0, owner_t, hidden[rows_t].float())
    else:
        span = torch.zeros(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
        for row, (a, b) in enumerate(zip(starts, ends, strict=True)):
            span[row, a:b] = 1.0
        sums = torch.bmm(span.unsqueeze(1), hidden.float()).squeeze(1)
    counts = torch.tensor([b - a for a, b in zip(starts, ends, strict=True)], dtype=torch.float32)
    return sums / counts.to(hidden.device).unsqueeze(1)
