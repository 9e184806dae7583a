"""``JinaV4``: jina-embeddings-v4 loaded natively, encoding texts and images in this process.

A call turns its inputs into token sequences (:mod:`visdoc.tokenization`, image patch grids from
:mod:`visdoc.preprocess`), plans batches under a token budget (:mod:`visdoc.batching`), prepares
the next batches on the host while the device runs the current one (:mod:`.batches`, through
:class:`~visdoc.readahead.ReadAhead`), and runs and pools each batch (:mod:`.forward`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..batching import plan_batches, plan_packed
from ..checkpoint import DEFAULT_MODEL, Checkpoint, PixelBudget, read_checkpoint, resolve
from ..errors import ImageLoadError
from ..images import ImageInput, describe, image_size
from ..points import TEXT_CHUNK
from ..preprocess import ImagePreprocessor
from ..readahead import ReadAhead
from ..tokenization import PROMPT_PREFIXES, PromptTokenizer
from .arguments import as_list, check_dim, check_max_pixels, check_outputs, check_task, check_texts, prompt_for
from .batches import Batch, BatchPreparer, ModelInput
from .contract import EncodeResult
from .device import pick_attention, pick_device, pick_dtype
from .forward import final_hidden, run_batch
from .late_chunking import LateChunks
from .speed import speed_choice

if TYPE_CHECKING:
    import torch

    from ..network import Network
    from .remote import RemoteJinaV4

DEFAULT_MAX_LENGTH = 32768
CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = 32768
PREFETCH_BATCHES = 2

_SHARED: dict[tuple[str, str, str], JinaV4] = {}
_SHARED_LOCK = threading.Lock()

BatchPlanner = Callable[[Sequence[int], int, "int | None"], list[list[int]]]


class JinaV4:
    """jina-embeddings-v4 on stock transformers modules, with all task adapters resident.

    Create it with :meth:`from_pretrained`; encode with :meth:`encode_texts`, :meth:`encode_images`
    and :meth:`encode_late_chunks`. One forward pass yields both the dense and the multi-vector output.
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
        self.network = network
        self.checkpoint = checkpoint
        self.name = name
        self.device = device
        self.dtype = dtype
        self.max_batch_tokens = max_batch_tokens or (GPU_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS)
        self.tokenizer = PromptTokenizer.from_config(checkpoint.config, checkpoint.path / "tokenizer.json",
                                                     max_length=max_length)  # fmt: skip
        self.preprocessor = ImagePreprocessor(checkpoint.pixels)
        self._batches = BatchPreparer(self.tokenizer, self.preprocessor, network.model.get_rope_index)
        self._plan: BatchPlanner = plan_batches
        self._lock = threading.Lock()  # one forward pass at a time: adapters are switched per call
        if preprocess_workers is None:
            preprocess_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
        self.preprocess_workers = preprocess_workers

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
        merge_adapters: bool | None = None,
        compile: bool | None = None,
        long_running: bool = False,
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
        docs/model.md). ``compile`` runs the towers' blocks through ``torch.compile`` (~20 s on the
        first batches). Either left ``None`` follows :func:`~visdoc.encoder.speed.fast_path`: on
        only for ``long_running`` work on CUDA, so by default a model is unmerged and uncompiled.
        ``preprocess_workers`` threads decode and patchify the next batches' images while the
        model runs the current one (default: up to 8 on CUDA, none on CPU). ``random_weights``
        makes the checkpoint's shape with random weights on the device, ignoring weight files
        (full-size benchmarks; see :func:`visdoc.testing.build_checkpoint`).
        """
        from ..network import load_network, random_network

        folder = resolve(name_or_path, revision=revision)
        ckpt = read_checkpoint(folder, weights=not random_weights)
        dev = pick_device(device)
        torch_dtype = pick_dtype(dtype, dev)
        attn = pick_attention(attn_implementation, dev, torch_dtype)
        merge_adapters, compile = speed_choice(dev, long_running, merge_adapters=merge_adapters, compile=compile)
        build = random_network if random_weights else load_network
        network = build(ckpt, device=dev, dtype=torch_dtype, attn_implementation=attn, merge_adapters=merge_adapters)
        if compile:
            network.compile_towers()
        return cls(network, ckpt, name=str(name_or_path), device=dev, dtype=torch_dtype, max_length=max_length,
                   max_batch_tokens=max_batch_tokens, preprocess_workers=preprocess_workers)  # fmt: skip

    @classmethod
    def shared(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> JinaV4:
        """One loaded model per (checkpoint, device, dtype) in this process, loaded on first use.

        Framework wrappers use this (:func:`visdoc.encoder.connect`) so that several objects naming
        the same checkpoint share one copy of the weights instead of loading 7.5 GB each."""
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
        from ..attention import NAME

        return self.network.model.config._attn_implementation == NAME

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.checkpoint.task_names

    @property
    def dims(self) -> tuple[int, ...]:
        """Sizes the dense vector may have: the Matryoshka sizes, then the hidden size when they stop
        below it; the last is the full, untruncated size (what ``dim=None`` returns)."""
        return self.checkpoint.dims

    @property
    def multivector_dim(self) -> int:
        return self.checkpoint.multivector_dim

    @property
    def pixels(self) -> PixelBudget:
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
        texts = as_list(texts, "texts")
        check_task(task, self.tasks)
        dim = check_dim(dim, self.dims)
        prompt = prompt_for(task, prompt_name)
        check_texts(texts)
        seqs = []
        for ids in self.tokenizer.texts(texts, PROMPT_PREFIXES[prompt]):
            seqs.append(ModelInput(ids, 0, len(ids), self.tokenizer.content_span(TEXT_CHUNK, len(ids), prompt, ids)))
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
        """Embed images (PIL images, paths, page references or bytes), e.g. rendered document pages.

        ``max_pixels`` lowers the checkpoint's pixel budget for this call (fewer tokens per
        page, faster, coarser). Unreadable images raise :class:`ImageLoadError` naming the index.
        """
        images = as_list(images, "images")
        check_task(task, self.tasks)
        dim = check_dim(dim, self.dims)
        check_max_pixels(max_pixels, self.pixels)
        seqs = []
        for i, image in enumerate(images):
            width, height = image_size(image, i)
            try:
                grid = self.preprocessor.grid(width, height, max_pixels=max_pixels)
            except ValueError as exc:
                raise ImageLoadError(i, describe(image), str(exc)) from None
            ids, start, end = self.tokenizer.image(grid.tokens(self.pixels.merge_size))
            span = (start + 1, end - 1)  # the patches, between <|vision_start|> and <|vision_end|>
            seqs.append(ModelInput(ids, start, end, span, grid, image))
        return self._encode(seqs, task=task, dim=dim, dense=dense, multivector=multivector,
                            batch_size=batch_size, show_progress=show_progress)  # fmt: skip

    def encode_late_chunks(
        self,
        texts: Sequence[str],
        *,
        task: str = "retrieval",
        prompt_name: str = "passage",
        dim: int | None = None,
        multivector: bool = False,
    ) -> EncodeResult:
        """Embed consecutive texts (the chunks of one document) with late chunking: one forward pass
        over ONE sequence, then each text pooled from its own tokens, so each vector carries the
        context of the texts before it (the model is causal: of those before it only).

        The sequence is the prompt prefix of ``prompt_name`` (``Query:`` for ``text-matching``, as in
        :meth:`encode_texts`), then the token ids of each text in order: each text's content tokens
        exactly as :meth:`encode_texts` tokenises them, concatenated as ids with no separator. Per
        text: ``dense`` is the float32 mean of the final hidden states over its own tokens (the
        prefix belongs to no text), L2-normalised, truncated to ``dim`` and normalised again;
        ``multivector`` (when asked) its tokens' projected, L2-normalised vectors; ``tokens`` its
        token count, ``content_spans`` ``(0, tokens)``, ``grids`` None. The whole sequence must fit
        the model's context (``tokenizer.max_length``), else ValueError with the token count; an
        empty text is a ValueError naming its index, a text that is not a str a TypeError.
        """
        texts = as_list(texts, "texts")
        check_task(task, self.tasks)
        dim = check_dim(dim, self.dims)
        prompt = prompt_for(task, prompt_name)
        check_texts(texts)
        if not texts:
            return EncodeResult(dense=np.zeros((0, dim), np.float32), multivector=[] if multivector else None)
        import torch

        chunks = LateChunks.build(self.tokenizer, texts, PROMPT_PREFIXES[prompt])
        batch = self._prepare([chunks.sequence], [0])
        with self._lock, torch.inference_mode():
            self.network.use_task(task)
            hidden = final_hidden(self.network, self.preprocessor, batch, device=self.device, dtype=self.dtype,
                                  packed=self.packed, image_token_id=self.tokenizer.image_token_id)  # fmt: skip
            return chunks.pool(self.network, hidden, dim=dim, multivector=multivector)

    # -- internals ---------------------------------------------------------------------------

    def _encode(
        self,
        seqs: list[ModelInput],
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
        merge = self.pixels.merge_size
        result = EncodeResult(
            dense=np.zeros((n, dim), dtype=np.float32) if dense else None,
            multivector=[np.empty((0, self.multivector_dim), np.float32)] * n if multivector else None,
            tokens=[len(s.ids) for s in seqs],
            content_spans=[s.content_span for s in seqs],
            grids=[s.grid.merged(merge) if s.grid is not None else None for s in seqs],
        )
        if n == 0:
            return result
        import torch
        from tqdm.auto import tqdm

        plan = plan_packed if self.packed and self._plan is plan_batches else self._plan
        batches = plan(result.tokens, self.max_batch_tokens, batch_size)
        ahead = PREFETCH_BATCHES if self.preprocess_workers > 0 else 0  # batches prepared while the device runs
        inputs = ReadAhead((self._prepare(seqs, b) for b in batches), ahead, name="visdoc-prefetch")
        progress = tqdm(total=n, unit="item", disable=not show_progress)
        # preparation starts before the lock: a call waiting for another's passes has its first batches ready
        with inputs as prepared, progress as bar, self._lock, torch.inference_mode():
            self.network.use_task(task)
            for batch in prepared:
                d, mv = self._forward(batch, dim=dim, dense=dense, multivector=multivector)
                for row, index in enumerate(batch.indices):
                    if result.dense is not None:
                        result.dense[index] = d[row]  # type: ignore[index]
                    if result.multivector is not None:
                        result.multivector[index] = mv[row]  # type: ignore[index]
                bar.update(len(batch.indices))
        return result

    def _forward(self, batch: Batch, *, dim: int, dense: bool, multivector: bool) -> tuple[Any, Any]:
        """One forward pass and its pooling (the seam benchmarks time or replace with a stand-in device)."""
        return run_batch(self.network, self.preprocessor, batch, device=self.device, dtype=self.dtype,
                         packed=self.packed, image_token_id=self.tokenizer.image_token_id, dim=dim, dense=dense,
                         multivector=multivector)  # fmt: skip

    def _prepare(self, seqs: list[ModelInput], indices: list[int]) -> Batch:
        """Host-side inputs of one batch (see :class:`~visdoc.encoder.batches.BatchPreparer`)."""
        return self._batches.prepare(seqs, indices, packed=self.packed, pin=self.device.type == "cuda",
                                     workers=self.preprocess_workers)  # fmt: skip
