"""Late chunking: several texts embedded from one forward pass over their concatenation.

The texts run as one sequence (the prompt prefix once, then each text's tokens in order), so every
token attends to the texts before it; each text's vectors are then pooled from its own span of the
final hidden states. :meth:`~visdoc.encoder.local.JinaV4.encode_late_chunks` runs the pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .batches import ModelInput
from .contract import EncodeResult
from .forward import dense_vectors, mean_over_rows, token_vectors

if TYPE_CHECKING:
    import torch

    from ..network import Network
    from ..tokenization import PromptTokenizer


@dataclass
class LateChunks:
    """The one sequence of a late-chunking call and the ``[start, end)`` of each text in it."""

    sequence: ModelInput
    spans: list[tuple[int, int]]

    @classmethod
    def build(cls, tokenizer: PromptTokenizer, texts: Sequence[str], prefix: str) -> LateChunks:
        """Concatenate the token ids of ``prefix`` and of each text, each text's ids being exactly its
        content tokens in ``encode_texts`` (the ids of ``prefix + text`` after those that lie wholly in
        the prefix: a first word that absorbs the prefix's trailing space keeps that token). The
        prefix's ids are those of the first text's sequence, so one text gives ``encode_texts``'s
        sequence itself. Raises ValueError for an empty text or a sequence over ``max_length``."""
        if not texts:
            raise ValueError("late chunking needs at least one text")
        cut = len(prefix)
        heads: list[int] = []  # per text: how many of its tokens lie wholly in the prefix
        counts: list[int] = []  # per text: its content tokens, untruncated
        for i, text in enumerate(texts):
            if not text:
                raise ValueError(f"text {i} is empty: late chunking needs at least one token per text to pool")
            offsets = tokenizer.offsets(prefix + text)
            heads.append(sum(end <= cut for _, end in offsets))
            counts.append(len(offsets) - heads[-1])
        total = heads[0] + sum(counts)
        if total > tokenizer.max_length:
            raise ValueError(f"late chunking needs {total} tokens for these {len(texts)} texts and their prompt, over "
                             f"the model's limit of {tokenizer.max_length}: pass fewer or shorter texts")  # fmt: skip
        sequence: list[int] = []
        spans = []
        for i, (head, count, ids) in enumerate(zip(heads, counts, tokenizer.texts(texts, prefix), strict=True)):
            if len(ids) != head + count:  # truncated at max_length: the text alone is too long
                raise ValueError(f"text {i} and its prompt exceed the model's limit of {tokenizer.max_length} tokens")
            sequence += ids[:head] if i == 0 else []
            spans.append((len(sequence), len(sequence) + count))
            sequence += ids[head:]
        content = (spans[0][0], len(sequence))
        return cls(ModelInput(sequence, *content, content), spans)

    def pool(self, network: Network, hidden: torch.Tensor, *, dim: int, multivector: bool) -> EncodeResult:
        """Each text's dense vector (and token vectors) from the final hidden states of the sequence
        (``[tokens, H]``, or ``[1, tokens, H]`` from a padded batch)."""
        flat = hidden if hidden.ndim == 2 else hidden[0]
        lengths = [end - start for start, end in self.spans]
        token_rows = None
        if multivector:
            start, end = self.sequence.content_span
            token_rows = np.split(token_vectors(network, flat[start:end]), np.cumsum(lengths)[:-1])
        return EncodeResult(
            dense=dense_vectors(mean_over_rows(flat, self.spans), dim).cpu().numpy(),
            multivector=token_rows,
            tokens=lengths,
            content_spans=[(0, n) for n in lengths],
            grids=[None] * len(lengths),
        )
