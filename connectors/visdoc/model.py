"""``JinaV4``: load jina-embeddings-v4 natively and encode texts and images."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .arguments import check_dim, check_outputs, check_prompt, check_task
from .batching import plan_batches, plan_packed
from .checkpoint import DEFAULT_MODEL, MODEL_ENV, Checkpoint, read_checkpoint, resolve
from .errors import ImageLoadError
from .images import ImageInput, describe, image_size, load_rgb
from .outputs import EncodeResult
from .preprocess import ImageGrid, ImagePreprocessor
from .readahead import ReadAhead
from .tokenization import PROMPT_PREFIXES, PromptTokenizer

if TYPE_CHECKING:
    import torch

    from .network import Network
    from .remote import RemoteJinaV4

DEFAULT_MAX_LENGTH = 32768
CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = 32768
PREFETCH_BATCHES = 2
ATTENTION_CHOICES = ("varlen", "flash_attention_2", "sdpa", "eager")
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
        preprocess_workers: int | None = None,
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
        if preprocess_workers is None:
            preprocess_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
        self.preprocess_workers = preprocess_workers
        self._pool: tuple[int, ThreadPoolExecutor | None] | None = None
        self._pool_lock = threading.Lock()

    def _image_workers(self) -> ThreadPoolExecutor | None:
        """Threads that decode and patchify a batch's images (``preprocess_workers`` > 1), made once
        and reused (threads exit with the process; a changed worker count replaces them)."""
        workers = self.preprocess_workers
        with self._pool_lock:
            if self._pool is None or self._pool[0] != workers:
                if self._pool is not None and self._pool[1] is not None:
                    self._pool[1].shutdown(wait=False)
                pool = ThreadPoolExecutor(workers, thread_name_prefix="visdoc-preprocess") if workers > 1 else None
                self._pool = (workers, pool)
            return self._pool[1]

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
        merge_adapters: bool = False,
        compile: bool = False,
        preprocess_workers: int | None = None,
        random_weights: bool = False,
    ) -> JinaV4:
        """Load a checkpoint folder or hub id (``jinaai/jina-embeddings-v4``) without remote code.

        ``dtype`` defaults to bfloat16 on GPU and float32 on CPU. ``attn_implementation``:
        ``varlen`` packs each batch into one row with no padding (PyTorch's FlashAttention varlen
        kernel on CUDA; the default there in half precision), ``flash_attention_2`` (flash-attn),
        ``sdpa`` (padded batches; the default on CPU) or ``eager``. ``max_batch_tokens`` bounds
        the tokens (padded ones included) per forward pass. ``merge_adapters`` folds the active
        task's LoRA into the weights (faster; bf16 results move by ~1e-3 in cosine, see
        docs/model.md). ``compile`` runs the towers through ``torch.compile``.
        ``preprocess_workers`` threads decode and patchify the next batches' images while the
        model runs the current one (default: up to 8 on CUDA, none on CPU). ``random_weights``
        makes the checkpoint's shape with random weights on the device, ignoring weight files
        (full-size benchmarks; see :func:`visdoc.testing.build_checkpoint`).
        """
        from .network import load_network, random_network

        folder = resolve(name_or_path, revision=revision)
        ckpt = read_checkpoint(folder, weights=not random_weights)
        dev = _pick_device(device)
        torch_dtype = _pick_dtype(dtype, dev)
        attn = attn_implementation or _pick_attention(dev, torch_dtype)
        if attn not in ATTENTION_CHOICES:
            raise ValueError(f"unknown attn_implementation {attn!r}; use one of {', '.join(ATTENTION_CHOICES)}")
        build = random_network if random_weights else load_network
        network = build(ckpt, device=dev, dtype=torch_dtype, attn_implementation=attn, merge_adapters=merge_adapters)
        if compile:
            network.compile_towers()
        return cls(
            network,
            ckpt,
            name=str(name_or_path),
            device=dev,
            dtype=torch_dtype,
            max_length=max_length,
            max_batch_tokens=max_batch_tokens,
            preprocess_workers=preprocess_workers,
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
    def packed(self) -> bool:
        """Whether each batch runs as one row of concatenated sequences (``varlen`` attention)."""
        from .attention import NAME

        return self.network.model.config._attn_implementation == NAME

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

    @property
    def pixels(self):  # noqa: ANN201
        return self.checkpoint.pixels

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

        lengths = [len(s.ids) for s in seqs]
        plan = plan_packed if self.packed and self._plan is plan_batches else self._plan
        batches = plan(lengths, self.max_batch_tokens, batch_size)
        progress = tqdm(total=n, unit="item", disable=not show_progress)
        pool = self._image_workers()
        ahead = PREFETCH_BATCHES if self.preprocess_workers > 0 else 0  # batches prepared while the device runs
        inputs = ReadAhead((self._prepare(seqs, b, pool) for b in batches), ahead, name="visdoc-prefetch")
        # preparation starts before the lock: a call waiting for another's passes has its first batches ready
        with inputs as prepared, progress as bar, self._lock, torch.inference_mode():
            self.network.use_task(task)
            for batch in prepared:
                d, mv = self._forward(batch, dim=dim, dense=dense, multivector=multivector)
                for row, index in enumerate(batch.indices):
                    if dense_out is not None:
                        dense_out[index] = d[row]
                    if mv_out is not None:
                        mv_out[index] = mv[row]
                bar.update(len(batch.indices))
        return EncodeResult(dense_out, mv_out)

    def _prepare(self, seqs: list[_Sequence], indices: list[int], pool: ThreadPoolExecutor | None) -> _Batch:
        """Host-side inputs of one batch (token ids, decoded and patchified uint8 images, positions),
        in pinned memory on CUDA (fast, asynchronous copies to the device)."""
        import torch

        members = [seqs[i] for i in indices]
        lengths = [len(s.ids) for s in members]
        pixels = grid_thw = None
        if members[0].grid is not None:
            grid_thw = torch.tensor([[s.grid.t, s.grid.h, s.grid.w] for s in members])  # type: ignore[union-attr]
            offsets = np.concatenate([[0], np.cumsum(grid_thw.prod(dim=1).numpy())])  # each image's patch rows
            pixels = self._pixel_buffer(int(offsets[-1]))
            jobs = [(s, i, pixels[a:b]) for s, i, a, b in zip(members, indices, offsets[:-1], offsets[1:], strict=True)]
            for _ in pool.map(self._patches, jobs) if pool is not None else map(self._patches, jobs):
                pass  # each job fills its slice; a worker's error is raised here
        if self.packed:
            ids = torch.tensor([t for s in members for t in s.ids]).view(1, -1)
            mask = None
            positions = self._packed_positions(members, lengths, grid_thw)
        else:
            ids, mask = self._padded(members)
            positions = None
        batch = _Batch(indices, members, lengths, ids, mask, positions, pixels, grid_thw)
        return batch.pinned() if self.device.type == "cuda" else batch

    def _padded(self, members: list[_Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, attention mask)`` of the sequences right-padded to the longest."""
        import torch

        width = max(len(s.ids) for s in members)
        ids = torch.full((len(members), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, s in enumerate(members):
            ids[row, : len(s.ids)] = torch.tensor(s.ids)
            mask[row, : len(s.ids)] = 1
        return ids, mask

    def _pixel_buffer(self, patches: int) -> torch.Tensor:
        """Room for a batch's uint8 patches, pinned on CUDA (the workers write straight into it)."""
        import torch

        p = self.checkpoint.pixels
        return torch.empty((patches, 3, p.patch_size**2), dtype=torch.uint8, pin_memory=self.device.type == "cuda")

    def _patches(self, job: tuple[_Sequence, int, torch.Tensor]) -> None:
        s, index, out = job
        assert s.image is not None and s.grid is not None
        self.preprocessor.pixels(load_rgb(s.image, index), s.grid, out=out)

    def _packed_positions(
        self, members: list[_Sequence], lengths: list[int], grid_thw: torch.Tensor | None
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
            grid = self.network.model.get_rope_index(ids, mm_token_type_ids=kinds, image_grid_thw=grid_thw,
                                                     attention_mask=mask)[0]  # fmt: skip
            mrope = grid[:, mask.bool()]
        return torch.cat([text.view(1, -1), mrope]).unsqueeze(1)

    def _forward(
        self, batch: _Batch, *, dim: int, dense: bool, multivector: bool
    ) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        """One forward pass over a batch; returns dense rows and per-item token matrices."""
        import torch.nn.functional as F

        from .attention import packed_sequences

        dev, copy = self.device, {"non_blocking": self.device.type == "cuda"}
        lengths = batch.lengths
        ids = batch.ids.to(dev, **copy)
        kwargs: dict[str, Any] = {}
        if batch.pixels is not None:
            kwargs["pixel_values"] = self.preprocessor.normalize(batch.pixels.to(dev, **copy), self.dtype)
            kwargs["image_grid_thw"] = batch.grid_thw.to(dev, **copy)  # type: ignore[union-attr]
        if self.packed:
            kwargs["position_ids"] = batch.positions.to(dev, **copy)  # type: ignore[union-attr]
            with packed_sequences(lengths, dev):
                hidden = self.network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state[0]
            token_index = None
        else:
            mask = batch.mask.to(dev, **copy)  # type: ignore[union-attr]
            kwargs["attention_mask"] = mask if min(lengths) < max(lengths) else None
            if batch.pixels is not None:
                kwargs["mm_token_type_ids"] = (ids == self.tokenizer.image_token_id).int()
            hidden = self.network.model(input_ids=ids, use_cache=False, **kwargs).last_hidden_state
            token_index = mask.bool()

        dense_rows = None
        if dense:
            pooled = _mean_over_spans(hidden, batch)
            pooled = F.normalize(F.normalize(pooled, dim=-1)[:, :dim], dim=-1)
            dense_rows = pooled.cpu().numpy()
        token_rows = None
        if multivector:
            flat = hidden if token_index is None else hidden[token_index]
            tokens = F.normalize(self.network.multi_vector_projector(flat).float(), dim=-1).cpu().numpy()
            token_rows = np.split(tokens, np.cumsum(lengths)[:-1])
        return dense_rows, token_rows


@dataclass
class _Batch:
    """One forward pass's inputs, prepared on the host."""

    indices: list[int]
    seqs: list[_Sequence]
    lengths: list[int]
    ids: torch.Tensor  # [items, longest] padded, or [1, tokens] packed
    mask: torch.Tensor | None  # padded only
    positions: torch.Tensor | None  # packed only: [4, 1, tokens]
    pixels: torch.Tensor | None  # uint8 [patches, 3, patch * patch]
    grid_thw: torch.Tensor | None

    def pinned(self) -> _Batch:
        pin = {name: getattr(self, name) for name in ("ids", "mask", "positions", "pixels", "grid_thw")}
        return dataclasses.replace(self, **{k: v.pin_memory() for k, v in pin.items() if v is not None})


def _mean_over_spans(hidden: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """float32 mean of each item's pooling span of final hidden states."""
    import torch

    starts = [s.pool_start for s in batch.seqs]
    ends = [s.pool_end for s in batch.seqs]
    if hidden.ndim == 2:  # packed, [tokens, H]: sum each item's span with one index_add
        offsets = np.concatenate([[0], np.cumsum(batch.lengths)[:-1]])
        rows = np.concatenate([np.arange(o + a, o + b) for o, a, b in zip(offsets, starts, ends, strict=True)])
        owner = np.repeat(np.arange(len(starts)), [b - a for a, b in zip(starts, ends, strict=True)])
        rows_t = torch.from_numpy(rows).to(hidden.device)
        owner_t = torch.from_numpy(owner).to(hidden.device)
        sums = torch.zeros((len(starts), hidden.shape[-1]), dtype=torch.float32, device=hidden.device)
        sums.index_add_(0, owner_t, hidden[rows_t].float())
    else:  # padded, [items, longest, H]
        span = torch.zeros(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
        for row, (a, b) in enumerate(zip(starts, ends, strict=True)):
            span[row, a:b] = 1.0
        sums = torch.bmm(span.unsqueeze(1), hidden.float()).squeeze(1)
    counts = torch.tensor([b - a for a, b in zip(starts, ends, strict=True)], dtype=torch.float32)
    return sums / counts.to(hidden.device).unsqueeze(1)


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

    from .attention import available_on

    half = dtype in (torch.bfloat16, torch.float16)  # flash-attention has no float32 kernels
    if half and available_on(device):
        return "varlen"
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"
