"""``JinaV4``: load jina-embeddings-v4 natively and encode texts and images."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .arguments import check_dim, check_outputs, check_prompt, check_task
from .batching import plan_batches
from .checkpoint import DEFAULT_MODEL, MODEL_ENV, Checkpoint, read_checkpoint, resolve
from .errors import ImageLoadError
from .images import ImageInput, describe, image_size, load_rgb
from .outputs import EncodeResult
from .preprocess import ImageGrid, ImagePreprocessor
from .tokenization import PROMPT_PREFIXES, PromptTokenizer

if TYPE_CHECKING:
    import torch

    from .network import Network
    from .remote import RemoteJinaV4

DEFAULT_MAX_LENGTH = 32768
CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = 32768
SYMMETRIC_TASKS = {"text-matching"}
DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


@dataclass
class _Sequence:
    """One model input: token ids, the dense pooling span, and its image (if any)."""

    ids: list[int]
    pool_start: int
    pool_end: int
    grid: ImageGrid | None = None
    image: ImageInput | None = None


_SHARED: dict[tuple[str, str, str], JinaV4] = {}
_SHARED_LOCK = threading.Lock()

BatchPlanner = Callable[[Sequence[int], int, "int | None"], list[list[int]]]


class JinaV4:
    """jina-embeddings-v4 on stock transformers modules, with all task adapters resident.

    Create it with :meth:`from_pretrained`; encode with :meth:`encode_texts` and
    :meth:`encode_images`. One forward pass yields both the dense and the multi-vector output.
    """

    def __init__(
        self,
        network: Network,
        checkpoint: Checkpoint,
        *,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
    ) -> None:
        c = checkpoint.config
        self.network = network
        self.checkpoint = checkpoint
        self.name = name
        self.device = device
        self.dtype = dtype
        self.max_batch_tokens = max_batch_tokens or (GPU_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS)
        self.tokenizer = PromptTokenizer(
            checkpoint.path / "tokenizer.json",
            image_token_id=c["image_token_id"],
            vision_start_id=c["vision_start_token_id"],
            vision_end_id=c["vision_end_token_id"],
            max_length=max_length,
        )
        self.preprocessor = ImagePreprocessor(checkpoint.pixels)
        self._plan: BatchPlanner = plan_batches
        self._lock = threading.Lock()  # one forward pass at a time: adapters are switched per call

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str | None = None,
        revision: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
    ) -> JinaV4:
        """Load a checkpoint folder or hub id (``jinaai/jina-embeddings-v4``) without remote code.

        ``dtype`` defaults to bfloat16 on GPU and float32 on CPU; ``attn_implementation`` to
        ``flash_attention_2`` when flash-attn is installed and the device is CUDA, else ``sdpa``.
        ``max_batch_tokens`` bounds padded tokens per forward pass.
        """

        from .network import load_network

        folder = resolve(name_or_path, revision=revision)
        ckpt = read_checkpoint(folder)
        dev = _pick_device(device)
        torch_dtype = _pick_dtype(dtype, dev)
        attn = attn_implementation or _pick_attention(dev, torch_dtype)
        network = load_network(ckpt, device=dev, dtype=torch_dtype, attn_implementation=attn)
        return cls(
            network,
            ckpt,
            name=str(name_or_path),
            device=dev,
            dtype=torch_dtype,
            max_length=max_length,
            max_batch_tokens=max_batch_tokens,
        )

    @classmethod
    def shared(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> JinaV4:
        """One loaded model per (checkpoint, device, dtype) in this process, loaded on first use.

        Framework wrappers use this so that several embedding objects or stores naming the same
        checkpoint share one copy of the weights instead of loading 7.5 GB each.
        """
        key = (str(name_or_path), str(device), str(dtype))
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls.from_pretrained(name_or_path, device=device, dtype=dtype)
            return _SHARED[key]

    @staticmethod
    def remote(base_url: str, *, api_key: str | None = None, timeout: float = 120.0) -> RemoteJinaV4:
        """The same encoding contract served by ``visdoc serve`` at ``base_url`` (no local weights)."""
        from .remote import RemoteJinaV4

        return RemoteJinaV4(base_url, api_key=api_key, timeout=timeout)

    # -- facts -------------------------------------------------------------------------------

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.checkpoint.task_names

    @property
    def dims(self) -> tuple[int, ...]:
        """Matryoshka sizes the dense vector may be truncated to; the last is the full size."""
        return self.checkpoint.matryoshka_dims

    @property
    def multivector_dim(self) -> int:
        return self.checkpoint.multivector_dim

    def __repr__(self) -> str:
        return f"JinaV4({self.name!r}, device={self.device}, dtype={self.dtype})"

    # -- encoding ----------------------------------------------------------------------------

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        task: str = "retrieval",
        prompt_name: str = "query",
        dim: int | None = None,
        dense: bool = True,
        multivector: bool = False,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> EncodeResult:
        """Embed texts as queries or passages (``prompt_name``); ``text-matching`` is symmetric."""
        texts = _as_list(texts, "texts")
        check_task(task, self.tasks)
        dim = check_dim(dim, self.dims)
        check_prompt(prompt_name)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, expected str")
        prefix = PROMPT_PREFIXES["query" if task in SYMMETRIC_TASKS else prompt_name]
        seqs = [_Sequence(ids, 0, len(ids)) for ids in self.tokenizer.texts(texts, prefix)]
        return self._encode(seqs, task=task, dim=dim, dense=dense, multivector=multivector,
                            batch_size=batch_size, show_progress=show_progress)  # fmt: skip

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        task: str = "retrieval",
        dim: int | None = None,
        dense: bool = True,
        multivector: bool = False,
        max_pixels: int | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> EncodeResult:
        """Embed images (PIL images, paths or bytes), e.g. rendered document pages.

        ``max_pixels`` lowers the checkpoint's pixel budget for this call (fewer tokens per
        page, faster, coarser). Unreadable images raise :class:`ImageLoadError` naming the index.
        """
        images = _as_list(images, "images")
        check_task(task, self.tasks)
        dim = check_dim(dim, self.dims)
        self._check_max_pixels(max_pixels)
        seqs = []
        for i, image in enumerate(images):
            width, height = image_size(image, i)
            try:
                grid = self.preprocessor.grid(width, height, max_pixels=max_pixels)
            except ValueError as exc:
                raise ImageLoadError(i, describe(image), str(exc)) from None
            ids, start, end = self.tokenizer.image(grid.tokens(self.checkpoint.pixels.merge_size))
            seqs.append(_Sequence(ids, start, end, grid, image))
        return self._encode(seqs, task=task, dim=dim, dense=dense, multivector=multivector,
                            batch_size=batch_size, show_progress=show_progress)  # fmt: skip

    # -- internals ---------------------------------------------------------------------------

    def _check_max_pixels(self, max_pixels: int | None) -> None:
        floor, ceiling = self.checkpoint.pixels.min_pixels, self.checkpoint.pixels.max_pixels
        if max_pixels is not None and (not isinstance(max_pixels, int) or not floor <= max_pixels <= ceiling):
            raise ValueError(
                f"max_pixels must be an int between the checkpoint's min_pixels ({floor}) and max_pixels ({ceiling}), "
                f"got {max_pixels!r}"
            )

    def _encode(
        self,
        seqs: list[_Sequence],
        *,
        task: str,
        dim: int,
        dense: bool,
        multivector: bool,
        batch_size: int | None,
        show_progress: bool,
    ) -> EncodeResult:
        check_outputs(dense, multivector)
        n = len(seqs)
        dense_out = np.zeros((n, dim), dtype=np.float32) if dense else None
        mv_out: list[np.ndarray] | None = [np.empty((0, self.multivector_dim), np.float32)] * n if multivector else None
        if n == 0:
            return EncodeResult(dense_out, mv_out)
        import torch
        from tqdm.auto import tqdm

        batches = self._plan([len(s.ids) for s in seqs], self.max_batch_tokens, batch_size)
        progress = tqdm(total=n, unit="item", disable=not show_progress)
        with progress as bar, self._lock, torch.inference_mode():
            self.network.use_task(task)
            for batch in batches:
                members = [seqs[i] for i in batch]
                pixels = self._pixels(members, batch) if members[0].grid is not None else None
                d, mv = self._forward(members, pixels, dim=dim, dense=dense, multivector=multivector)
                for row, index in enumerate(batch):
                    if dense_out is not None:
                        dense_out[index] = d[row]
                    if mv_out is not None:
                        mv_out[index] = mv[row]
                bar.update(len(batch))
        return EncodeResult(dense_out, mv_out)

    def _pixels(self, members: list[_Sequence], indices: list[int]) -> torch.Tensor:
        """Patches of a batch's images, decoded now; errors name the input index."""
        import torch

        patches = []
        for s, index in zip(members, indices, strict=True):
            assert s.image is not None and s.grid is not None
            patches.append(self.preprocessor.patches(load_rgb(s.image, index), s.grid))
        return torch.cat(patches)

    def _forward(
        self, seqs: list[_Sequence], pixels: torch.Tensor | None, *, dim: int, dense: bool, multivector: bool
    ) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        """One forward pass over a batch; returns dense rows and per-item token matrices."""
        import torch
        import torch.nn.functional as F

        lengths = [len(s.ids) for s in seqs]
        width = max(lengths)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s.ids)] = torch.tensor(s.ids)
            mask[row, : len(s.ids)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        kwargs: dict[str, Any] = {"attention_mask": mask if min(lengths) < width else None}
        if pixels is not None:
            grids = [s.grid for s in seqs]
            kwargs["pixel_values"] = pixels.to(self.device, self.dtype)
            kwargs["image_grid_thw"] = torch.tensor([[g.t, g.h, g.w] for g in grids], device=self.device)  # type: ignore[union-attr]
            kwargs["mm_token_type_ids"] = (ids == self.tokenizer.image_token_id).int()
        hidden = self.network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state

        dense_rows = None
        if dense:
            span = torch.zeros((len(seqs), width), dtype=torch.float32, device=self.device)
            for row, s in enumerate(seqs):
                span[row, s.pool_start : s.pool_end] = 1.0
            pooled = torch.bmm(span.unsqueeze(1), hidden.float()).squeeze(1) / span.sum(1, keepdim=True)
            pooled = F.normalize(F.normalize(pooled, dim=-1)[:, :dim], dim=-1)
            dense_rows = pooled.cpu().numpy()
        token_rows = None
        if multivector:
            tokens = self.network.multi_vector_projector(hidden[mask.bool()])
            tokens = F.normalize(tokens.float(), dim=-1).cpu().numpy()
            token_rows = np.split(tokens, np.cumsum(lengths)[:-1])
        return dense_rows, token_rows


def model_argument(model: str | os.PathLike | JinaV4 | None) -> tuple[str, JinaV4 | None]:
    """``(name, loaded model or None)`` for a hub id, a folder, a loaded model, or None.

    None means ``$VISDOC_MODEL`` or ``jinaai/jina-embeddings-v4``. Framework wrappers take any of
    these and load by name lazily with :meth:`JinaV4.shared`.
    """
    if model is None:
        return os.environ.get(MODEL_ENV, DEFAULT_MODEL), None
    if isinstance(model, (str, os.PathLike)):
        return str(model), None
    return model.name, model


def connect(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> JinaV4 | RemoteJinaV4:
    """The encoder a wrapper should use: a visdoc server when ``base_url`` is set, else the
    process-wide shared local model ``name``."""
    if base_url:
        return JinaV4.remote(base_url, api_key=api_key)
    return JinaV4.shared(name, device=device, dtype=dtype)


def _as_list(items: Any, name: str) -> list[Any]:
    """Accept any iterable of inputs (generators included), but not a single input."""
    from PIL import Image

    if isinstance(items, (str, bytes, bytearray, os.PathLike, Image.Image)):
        raise TypeError(f"{name} must be a list of inputs, not a single {type(items).__name__}; wrap it in [...]")
    return list(items)


def _pick_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
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


def _pick_attention(device: torch.device, dtype: torch.dtype) -> str:
    import importlib.util

    import torch

    half = dtype in (torch.bfloat16, torch.float16)  # flash-attention has no float32 kernels
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"
