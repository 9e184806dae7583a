"""Prompt construction and tokenisation for text and image inputs (no special tokens added)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import CheckpointError
from .points import PAGE_IMAGE

PROMPT_PREFIXES = {"query": "Query: ", "passage": "Passage: "}
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
PAD_TOKEN = "<|endoftext|>"


class PromptTokenizer:
    """Tokenises prompted texts and builds the fixed image prompt around ``n`` image tokens."""

    @classmethod
    def from_config(
        cls, config: dict, tokenizer_json: str | Path, *, max_length: int, text: str | None = None
    ) -> PromptTokenizer:
        """The tokenizer of a checkpoint from its ``config.json`` (token ids) and ``tokenizer.json``
        (a path, or its ``text``)."""
        return cls(tokenizer_json, image_token_id=config["image_token_id"],
                   vision_start_id=config["vision_start_token_id"], vision_end_id=config["vision_end_token_id"],
                   max_length=max_length, json_text=text)  # fmt: skip

    def __init__(
        self,
        tokenizer_file: Path | str,
        *,
        image_token_id: int,
        vision_start_id: int,
        vision_end_id: int,
        max_length: int,
        json_text: str | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(json_text) if json_text is not None else Tokenizer.from_file(str(tokenizer_file))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.max_length = max_length
        pad = self._tok.token_to_id(PAD_TOKEN)
        if pad is None:
            raise CheckpointError(f"{tokenizer_file} has no {PAD_TOKEN} token")
        self.pad_id = pad
        ids = self._tok.encode(IMAGE_PROMPT, add_special_tokens=False).ids
        if ids.count(image_token_id) != 1:
            raise CheckpointError(f"{tokenizer_file}: <|image_pad|> is not token {image_token_id} as config.json says")
        split = ids.index(image_token_id)
        self._image_head, self._image_tail = ids[:split], ids[split + 1 :]
        if self._image_head[-1:] != [vision_start_id] or self._image_tail[:1] != [vision_end_id]:
            raise CheckpointError(f"{tokenizer_file}: vision start/end ids differ from config.json")
        self.image_token_id = image_token_id
        self.vision_start_id = vision_start_id
        self.vision_end_id = vision_end_id
        self._prompt_cache: dict[str, list[int]] = {}

    def texts(self, texts: Sequence[str], prefix: str) -> list[list[int]]:
        """Token ids of ``prefix + text`` for each text, truncated on the right to ``max_length``."""
        encodings = self._tok.encode_batch([prefix + t for t in texts], add_special_tokens=False)
        return [e.ids[: self.max_length] for e in encodings]

    def token_labels(self, query: str) -> list[str]:
        """The tokens of a query as the model sees it (prompt included), as text, one per token."""
        ids = self.texts([query], PROMPT_PREFIXES["query"])[0]
        return [self._tok.decode([i]) for i in ids]

    def to_json(self) -> str:
        """The tokenizer's definition (``tokenizer.json``), for a client that tokenises alike."""
        return self._tok.to_str()

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text`` (no prompt), for chunking long texts."""
        return self._tok.encode(text, add_special_tokens=False).offsets

    def content_span(
        self, kind: str, n_tokens: int, prompt_name: str = "passage", ids: Sequence[int] | None = None
    ) -> tuple[int, int]:
        """``[start, end)`` of the content tokens in an embedded sequence of ``n_tokens``: the image
        patches of a page (between ``<|vision_start|>`` and ``<|vision_end|>``) or the text after
        its prompt prefix. Token pooling merges only these; prompt and template tokens stay.

        A text's first word usually takes the prompt's trailing space (``"Passage: hello"`` is
        ``Passage``, ``:``, `` hello``): given the sequence's ``ids``, the content starts where they
        part from the prompt's own ids, so that word counts as content."""
        if kind == PAGE_IMAGE:
            head, tail = len(self._image_head), len(self._image_tail)
            return head, n_tokens - tail
        prompt = self._prompt_ids(prompt_name)
        start = len(prompt) if ids is None else next(
            (i for i, (a, b) in enumerate(zip(ids, prompt, strict=False)) if a != b), min(len(ids), len(prompt))
        )
        return min(start, n_tokens), n_tokens

    def _prompt_ids(self, prompt_name: str) -> list[int]:
        if prompt_name not in self._prompt_cache:
            self._prompt_cache[prompt_name] = self.texts([""], PROMPT_PREFIXES[prompt_name])[0]
        return self._prompt_cache[prompt_name]

    def image(self, n_image_tokens: int) -> tuple[list[int], int, int]:
        """Ids of the image prompt with ``n`` image tokens, and the pooled span [start, end).

        The pooled span runs from ``<|vision_start|>`` to ``<|vision_end|>``, both included.
        """
        ids = self._image_head + [self.image_token_id] * n_image_tokens + self._image_tail
        start = len(self._image_head) - 1
        return ids, start, len(self._image_head) + n_image_tokens + 1
