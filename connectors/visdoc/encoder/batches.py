"""Host-side inputs of a forward pass: token ids, uint8 image patches and positions, for padded or
packed batches, in pinned memory on CUDA (fast, asynchronous copies to the device).

Images are decoded and patchified by a small thread pool when ``workers`` > 1 (PIL and torch's
resize release the GIL), each writing its slice of one buffer per batch.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..images import ImageInput, load_rgb
from ..preprocess import ImagePreprocessor, PatchGrid

if TYPE_CHECKING:
    import torch

    from ..tokenization import PromptTokenizer


@dataclass
class ModelInput:
    """One sequence: token ids, the dense pooling span ``[pool_start, pool_end)``, the content span
    (what token pooling may merge), and its image (if any) with the image's patch grid."""

    ids: list[int]
    pool_start: int
    pool_end: int
    content_span: tuple[int, int]
    grid: PatchGrid | None = None
    image: ImageInput | None = None


@dataclass
class Batch:
    """One forward pass's inputs, prepared on the host."""

    indices: list[int]
    seqs: list[ModelInput]
    lengths: list[int]
    ids: torch.Tensor  # [items, longest] padded, or [1, tokens] packed
    mask: torch.Tensor | None  # padded only
    positions: torch.Tensor | None  # packed only: [4, 1, tokens]
    pixels: torch.Tensor | None  # uint8 [patches, 3, patch * patch]
    grid_thw: torch.Tensor | None

    def pinned(self) -> Batch:
        pin = {name: getattr(self, name) for name in ("ids", "mask", "positions", "pixels", "grid_thw")}
        return dataclasses.replace(self, **{k: v.pin_memory() for k, v in pin.items() if v is not None})


RopeIndex = Callable[..., Any]  # transformers' get_rope_index of the backbone


class BatchPreparer:
    """Builds :class:`Batch` es for one model: ``packed`` (one row, no padding) or padded;
    ``pin`` puts them in pinned memory; ``rope_index`` computes M-RoPE positions of image prompts."""

    def __init__(self, tokenizer: PromptTokenizer, preprocessor: ImagePreprocessor, rope_index: RopeIndex) -> None:
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.rope_index = rope_index
        self._pool: tuple[int, ThreadPoolExecutor | None] | None = None
        self._pool_lock = threading.Lock()

    def prepare(self, seqs: list[ModelInput], indices: list[int], *, packed: bool, pin: bool, workers: int) -> Batch:
        import torch

        members = [seqs[i] for i in indices]
        lengths = [len(s.ids) for s in members]
        pixels = grid_thw = None
        if members[0].grid is not None:
            grid_thw = torch.tensor([[s.grid.t, s.grid.h, s.grid.w] for s in members])  # type: ignore[union-attr]
            offsets = np.concatenate([[0], np.cumsum(grid_thw.prod(dim=1).numpy())])  # each image's patch rows
            pixels = self._pixel_buffer(int(offsets[-1]), pin)
            jobs = [(s, i, pixels[a:b]) for s, i, a, b in zip(members, indices, offsets[:-1], offsets[1:], strict=True)]
            pool = self._workers(workers)
            for _ in pool.map(self._patches, jobs) if pool is not None else map(self._patches, jobs):
                pass  # each job fills its slice; a worker's error is raised here
        if packed:
            ids = torch.tensor([t for s in members for t in s.ids]).view(1, -1)
            mask = None
            positions = self._packed_positions(members, lengths, grid_thw)
        else:
            ids, mask = self._padded(members)
            positions = None
        batch = Batch(indices, members, lengths, ids, mask, positions, pixels, grid_thw)
        return batch.pinned() if pin else batch

    def _workers(self, workers: int) -> ThreadPoolExecutor | None:
        """The image threads (``workers`` > 1), made once and reused; a changed count replaces them."""
        with self._pool_lock:
            if self._pool is None or self._pool[0] != workers:
                if self._pool is not None and self._pool[1] is not None:
                    self._pool[1].shutdown(wait=False)
                pool = ThreadPoolExecutor(workers, thread_name_prefix="visdoc-preprocess") if workers > 1 else None
                self._pool = (workers, pool)
            return self._pool[1]

    def _padded(self, members: list[ModelInput]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, attention mask)`` of the sequences right-padded to the longest."""
        import torch

        width = max(len(s.ids) for s in members)
        ids = torch.full((len(members), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, s in enumerate(members):
            ids[row, : len(s.ids)] = torch.tensor(s.ids)
            mask[row, : len(s.ids)] = 1
        return ids, mask

    def _pixel_buffer(self, patches: int, pin: bool) -> torch.Tensor:
        """Room for a batch's uint8 patches, pinned on CUDA (the workers write straight into it)."""
        import torch

        p = self.preprocessor.budget
        return torch.empty((patches, 3, p.patch_size**2), dtype=torch.uint8, pin_memory=pin)

    def _patches(self, job: tuple[ModelInput, int, torch.Tensor]) -> None:
        s, index, out = job
        assert s.image is not None and s.grid is not None
        self.preprocessor.pixels(load_rgb(s.image, index), s.grid, out=out)

    def _packed_positions(
        self, members: list[ModelInput], lengths: list[int], grid_thw: torch.Tensor | None
    ) -> torch.Tensor:
        """``[4, 1, tokens]``: each sequence's own text positions (row 0, where transformers sees
        the packing) and its 3-D M-RoPE positions, as if it ran alone."""
        import torch

        text = torch.cat([torch.arange(n) for n in lengths])
        if grid_thw is None:
            mrope = text.expand(3, -1)
        else:
            ids, mask = self._padded(members)
            kinds = (ids == self.tokenizer.image_token_id).int()
            grid = self.rope_index(ids, mm_token_type_ids=kinds, image_grid_thw=grid_thw, attention_mask=mask)[0]
            mrope = grid[:, mask.bool()]
        return torch.cat([text.view(1, -1), mrope]).unsqueeze(1)
