"""What every encoder in visdoc is: the :class:`Encoder` protocol and the :class:`EncodeResult` it returns.

Front-ends (ingestion, search, the stores' framework classes, the server, the CLI) rely on this
contract only; the local model (:class:`~visdoc.encoder.local.JinaV4`) and the client of a
visdoc embedding server (:class:`~visdoc.encoder.remote.RemoteJinaV4`) implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..checkpoint import PixelBudget
    from ..images import ImageInput
    from ..tokenization import PromptTokenizer


class EncodedItem(NamedTuple):
    """One input's embeddings and the facts about its token sequence."""

    dense: np.ndarray | None
    multivector: np.ndarray | None
    tokens: int  # length of the sequence the model ran (prompt and template included)
    content_span: tuple[int, int] | None  # the content tokens: a page's image patches, a text after its prompt
    grid: tuple[int, int] | None  # (rows, cols) of an image's merged patch tokens; None for texts


@dataclass
class EncodeResult:
    """Embeddings of ``n`` inputs, in input order.

    ``dense`` is a float32 ``[n, dim]`` array of L2-normalised vectors (or None when not asked
    for); ``multivector`` holds one float32 ``[tokens_i, 128]`` array of L2-normalised token
    vectors per input (or None). Per input, ``tokens`` is the sequence length, ``content_spans``
    the ``[start, end)`` of its content tokens in the multivector (what token pooling may merge)
    and ``grids`` the ``(rows, cols)`` of an image's patch tokens (None for texts); an encoder that
    does not know them leaves the lists empty.
    """

    dense: np.ndarray | None = None
    multivector: list[np.ndarray] | None = None
    tokens: list[int] = field(default_factory=list)
    content_spans: list[tuple[int, int] | None] = field(default_factory=list)
    grids: list[tuple[int, int] | None] = field(default_factory=list)

    def __len__(self) -> int:
        if self.dense is not None:
            return len(self.dense)
        return len(self.multivector or [])

    def item(self, index: int) -> EncodedItem:
        """Input ``index``'s embeddings and sequence facts."""
        return EncodedItem(
            None if self.dense is None else self.dense[index],
            None if self.multivector is None else self.multivector[index],
            self.tokens[index] if self.tokens else 0,
            self.content_spans[index] if self.content_spans else None,
            self.grids[index] if self.grids else None,
        )


@runtime_checkable
class Encoder(Protocol):
    """The encoding contract: texts and images in, :class:`EncodeResult` out, plus the facts a
    front-end needs (sizes, tasks, the pixel budget pages are rendered for, the tokenizer that
    cuts texts into chunks and labels query tokens).

    ``device`` is where the model computes: a ``torch.device`` for a local model, None for a
    remote one (whose work happens on the server, off this machine's CPU).
    """

    name: str
    device: Any

    @property
    def dims(self) -> tuple[int, ...]:
        """Sizes the dense vector may have: the Matryoshka sizes, then the model's hidden size when
        they stop below it. The last is the full, untruncated size: what ``dim=None`` returns and
        what stores size their collections for."""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task adapters (``retrieval``, ``text-matching``, ``code``)."""

    @property
    def multivector_dim(self) -> int: ...

    @property
    def pixels(self) -> PixelBudget:
        """The image preprocessing budget (pages are rendered to fit it)."""

    @property
    def tokenizer(self) -> PromptTokenizer: ...

    def encode_texts(
        self, texts: Sequence[str], *, task: str = "retrieval", prompt_name: str = "query", dim: int | None = None,
        dense: bool = True, multivector: bool = False, batch_size: int | None = None, show_progress: bool = False,
    ) -> EncodeResult:  # fmt: skip
        """Embed texts as queries or passages (``prompt_name``); ``text-matching`` is symmetric."""

    def encode_images(
        self, images: Sequence[ImageInput], *, task: str = "retrieval", dim: int | None = None, dense: bool = True,
        multivector: bool = False, max_pixels: int | None = None, batch_size: int | None = None,
        show_progress: bool = False,
    ) -> EncodeResult:  # fmt: skip
        """Embed images (PIL images, paths, page references or bytes)."""
