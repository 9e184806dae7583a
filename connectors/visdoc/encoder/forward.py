"""One forward pass over a prepared batch, and the pooling of its final hidden states.

Dense: the float32 mean of each item's pooling span, L2-normalised, truncated to the Matryoshka
size and normalised again. Multivector: every token through the projector, L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    hidden = final_hidden(network, preprocessor, batch, device=device, dtype=dtype, packed=packed,
                          image_token_id=image_token_id)  # fmt: skip
    dense_rows = None
    if dense:
        dense_rows = dense_vectors(mean_over_spans(hidden, batch), dim).cpu().numpy()
    token_rows = None
    if multivector:
        flat = hidden if packed else hidden[batch.mask.to(hidden.device).bool()]  # type: ignore[union-attr]
        token_rows = np.split(token_vectors(network, flat), np.cumsum(batch.lengths)[:-1])
    return dense_rows, token_rows


def final_hidden(
    network: Network, preprocessor: ImagePreprocessor, batch: Batch, *, device: torch.device, dtype: torch.dtype,
    packed: bool, image_token_id: int,
) -> torch.Tensor:  # fmt: skip
    """The text tower's final hidden states of one batch: ``[tokens, H]`` packed, ``[items, longest, H]`` padded."""
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
            return network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state[0]
    mask = batch.mask.to(device, **copy)  # type: ignore[union-attr]
    kwargs["attention_mask"] = mask if min(lengths) < max(lengths) else None
    if batch.pixels is not None:
        kwargs["mm_token_type_ids"] = (ids == image_token_id).int()
    return network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state


def dense_vectors(pooled: torch.Tensor, dim: int) -> torch.Tensor:
    """Pooled rows L2-normalised, truncated to ``dim`` and normalised again (a no-op cut at the full size)."""
    import torch.nn.functional as F

    return F.normalize(F.normalize(pooled, dim=-1)[:, :dim], dim=-1)


def token_vectors(network: Network, flat: torch.Tensor) -> np.ndarray:
    """Final hidden states ``[tokens, H]`` through the multi-vector projector, L2-normalised, float32."""
    import torch.nn.functional as F

    return F.normalize(network.multi_vector_projector(flat).float(), dim=-1).cpu().numpy()


def mean_over_spans(hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
    """float32 mean of each item's pooling span of final hidden states (packed ``[tokens, H]`` or
    padded ``[items, longest, H]``)."""
    import torch

    starts = [s.pool_start for s in batch.seqs]
    ends = [s.pool_end for s in batch.seqs]
    if hidden.ndim == 2:  # packed: the spans lie one after another in the one row
        offsets = np.concatenate([[0], np.cumsum(batch.lengths)[:-1]])
        return mean_over_rows(hidden, [(o + a, o + b) for o, a, b in zip(offsets, starts, ends, strict=True)])
    span = torch.zeros(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
    for row, (a, b) in enumerate(zip(starts, ends, strict=True)):
        span[row, a:b] = 1.0
    sums = torch.bmm(span.unsqueeze(1), hidden.float()).squeeze(1)
    counts = torch.tensor([b - a for a, b in zip(starts, ends, strict=True)], dtype=torch.float32)
    return sums / counts.to(hidden.device).unsqueeze(1)


def mean_over_rows(flat: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """float32 mean of the rows ``[start, end)`` of ``flat`` (``[tokens, H]``) for each span, with one index_add."""
    import torch

    rows = np.concatenate([np.arange(a, b) for a, b in spans])
    owner = np.repeat(np.arange(len(spans)), [b - a for a, b in spans])
    sums = torch.zeros((len(spans), flat.shape[-1]), dtype=torch.float32, device=flat.device)
    sums.index_add_(0, torch.from_numpy(owner).to(flat.device), flat[torch.from_numpy(rows).to(flat.device)].float())
    counts = torch.tensor([b - a for a, b in spans], dtype=torch.float32, device=flat.device)
    return sums / counts.unsqueeze(1)
