"""Text and markdown files, read as a stream and cut into overlapping chunks of tokens.

Encoding: a byte-order mark says UTF-8, UTF-16 or UTF-32; without one a file must be UTF-8, or
else what ``charset_normalizer`` (when installed) detects. Binary content (NUL bytes, many
control characters) is refused with a :class:`SourceError` naming the file.

Memory: nothing holds a whole file's text or tokens. The text is tokenized in windows of
:data:`WINDOW_CHARS` characters; each window ends at a place where the tokenizer's pre-tokenizer
must split (after a letter before a space or punctuation, or after a line break), so the tokens
and chunk boundaries are those of tokenizing the whole text at once. :func:`text_chunks` keeps
only each chunk's character span; :meth:`TextChunks.select` reads the chunk texts back lazily.
"""

from __future__ import annotations

import codecs
import itertools
import os
import re
import unicodedata
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SourceError

Mark = tuple[int, int, Any]  # (byte, character, decoder state) at which reading a file can resume

WINDOW_CHARS = 1 << 17  # characters tokenized at once (30k to 100k tokens)
READ_BYTES = 1 << 16  # bytes read and decoded at once
SAMPLE_BYTES = 1 << 20  # bytes looked at to detect a file's encoding
MAX_CONTROL_SHARE = 0.1  # more control characters than this in a piece of text: binary data
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # tab, line breaks, form feed, escape are text
MARK_BYTES = 1 << 20  # how far apart the places are where reading a file can resume
_TAIL = 16  # a window's last characters are never where the next one starts


def detect_encoding(path: Path) -> str:
    """The codec to read ``path`` with; :class:`SourceError` for binary data or an unknown encoding."""
    with path.open("rb") as file:
        head = file.read(SAMPLE_BYTES)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        raise SourceError(f"{path.name} is binary data (NUL bytes), not text (UTF-16/32 text needs a byte-order mark)")
    if _valid_utf8(path):
        return "utf-8"
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        raise SourceError(f"{path.name} is not UTF-8 text and has no byte-order mark; save it as UTF-8") from None
    best = from_bytes(head).best()
    if best is None or codecs.lookup(best.encoding).name in ("utf-8", "ascii"):
        raise SourceError(f"{path.name} is not text in any encoding found (not valid UTF-8)")
    return best.encoding


def iter_text(path: Path, encoding: str | None = None, marks: list[Mark] | None = None) -> Iterator[str]:
    """The file's text in pieces of at most :data:`READ_BYTES` bytes' worth; blank files, binary
    content and bytes the encoding cannot decode raise :class:`SourceError`. ``marks`` receives a
    :data:`Mark` every :data:`MARK_BYTES` to resume reading at (:meth:`TextChunks.select`)."""
    blank = True
    for number, (mark, piece) in enumerate(_pieces(path, encoding or detect_encoding(path))):
        if marks is not None and number % (MARK_BYTES // READ_BYTES) == 0:
            marks.append(mark)
        blank = blank and not piece.strip()
        yield piece
    if blank:
        raise SourceError("empty text file")


def read_text(path: Path) -> str:
    """The whole text of a file (see :func:`iter_text`); for small files only."""
    return "".join(iter_text(path))


def token_spans(pieces: Iterable[str], tokenizer: Any, window: int = WINDOW_CHARS) -> Iterator[tuple[int, int]]:
    """Character span of every token of the text ``pieces`` make, tokenized a window at a time."""
    for base, offsets in _token_windows(pieces, tokenizer, window):
        for a, b in offsets:
            yield base + a, base + b


def iter_chunk_spans(offsets: Iterable[tuple[int, int]], size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Character spans of windows of ``size`` tokens that overlap by ``overlap`` tokens, from a
    stream of token spans."""
    if not 0 <= overlap < size:
        raise ValueError("need 0 <= overlap < size")
    stream = iter(offsets)
    windows = iter(lambda: list(itertools.islice(stream, 1 << 16)), [])
    return _chunk_spans(((0, window) for window in windows), size, size - overlap)


def chunk_spans(offsets: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """:func:`iter_chunk_spans` as a list."""
    return list(iter_chunk_spans(offsets, size, overlap))


@dataclass(frozen=True)
class TextChunks:
    """The chunks of a text file as character spans (not their text): ``len()`` is their number,
    :meth:`select` reads the texts of some of them."""

    path: str
    encoding: str
    spans: array  # start, end of chunk 0, start, end of chunk 1, ...
    marks: list[Mark]  # where reading can resume, every MARK_BYTES
    stamp: tuple[int, int]  # the file's size and modification time when it was cut

    def __len__(self) -> int:
        return len(self.spans) // 2

    def select(self, indices: Iterable[int]) -> Iterator[tuple[int, str]]:
        """``(index, text)`` of the chunks at ``indices`` (ascending), reading the file once from
        the last mark before the first of them."""
        wanted = iter(indices)
        first = next(wanted, None)
        if first is None:
            return
        path = Path(self.path)
        if _stamp(path) != self.stamp:
            raise SourceError(f"{path.name} changed since it was cut into chunks; ingest it again")
        mark = max((m for m in self.marks if m[1] <= self.spans[2 * first]), key=lambda m: m[1], default=(0, 0, None))
        pieces = (piece for _, piece in _pieces(path, self.encoding, mark))
        buffer, available = "", mark[1]  # the text read so far ends at character ``available``
        for index in itertools.chain([first], wanted):
            start, end = self.spans[2 * index], self.spans[2 * index + 1]
            parts = [buffer]
            while available < end:
                piece = next(pieces, "")
                if not piece:
                    raise SourceError(f"{path.name} is shorter than when it was cut into chunks")
                if available <= start:  # all read so far comes before this chunk
                    parts = []
                parts.append(piece)
                available += len(piece)
            buffer = "".join(parts)
            base = available - len(buffer)
            yield index, buffer[start - base : end - base]
            if start - base > READ_BYTES:  # drop what no later chunk needs
                buffer = buffer[start - base :]


def text_chunks(path: Path, tokenizer: Any, size: int = 512, overlap: int = 64) -> TextChunks:
    """Cut a text file into chunks of ``size`` tokens overlapping by ``overlap`` (streaming)."""
    if not 0 <= overlap < size:
        raise ValueError("need 0 <= overlap < size")
    encoding = detect_encoding(path)
    stamp = _stamp(path)
    spans, marks = array("q"), []
    pieces = iter_text(path, encoding, marks)
    for start, end in _chunk_spans(_token_windows(pieces, tokenizer, WINDOW_CHARS), size, size - overlap):
        spans.append(start)
        spans.append(end)
    return TextChunks(str(path), encoding, spans, marks, stamp)


def _pieces(path: Path, encoding: str, mark: Mark = (0, 0, None)) -> Iterator[tuple[Mark, str]]:
    """``(mark, piece)``: the text decoded from each block from ``mark`` on, and where it starts."""
    byte, char, state = mark
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    if state is not None:
        decoder.setstate(state)
    with path.open("rb") as file:
        file.seek(byte)
        while True:
            before = (byte, char, decoder.getstate())
            block = file.read(READ_BYTES)
            try:
                piece = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                where = byte + exc.start
                raise SourceError(f"{path.name} cannot be decoded as {encoding} (byte {where}): {exc.reason}") from None
            _check_text(path, piece)
            if piece:
                yield before, piece
            if not block:
                return
            byte, char = byte + len(block), char + len(piece)


def _token_windows(pieces: Iterable[str], tokenizer: Any, window: int) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """``(base, offsets)``: the tokens of each window of the text, their spans counted from ``base``.

    A window ends where the pre-tokenizer splits whatever follows (:func:`_splits_at`), so its
    tokens are those of the whole text; failing such a place (a very long run of letters), it ends
    at the start of one of its last tokens."""
    rest, base, text, done = iter(pieces), 0, "", False
    while True:
        parts, length = [text], len(text)
        while not done and length < window:
            piece = next(rest, None)
            done = piece is None
            if piece:
                parts.append(piece)
                length += len(piece)
        text = "".join(parts)
        if done:
            yield base, tokenizer.offsets(text)
            return
        cut = next((q for q in range(len(text) - _TAIL, len(text) // 2, -1) if _splits_at(text, q)), None)
        if cut is not None:
            yield base, tokenizer.offsets(text[:cut])
        else:
            offsets = tokenizer.offsets(text)
            k = _last_token_start(offsets, len(text) - _TAIL)
            cut = offsets[k][0] if k < len(offsets) else len(text)
            del offsets[k:]
            yield base, offsets
            del offsets
        text, base = text[cut:], base + cut


def _chunk_spans(
    windows: Iterable[tuple[int, list[tuple[int, int]]]], size: int, stride: int
) -> Iterator[tuple[int, int]]:
    """Chunk spans from windows of token spans; work per window is per chunk, not per token."""
    starts: deque[int] = deque()  # character starts of the chunks not yet complete
    first, last_end, complete = 0, 0, -1  # the window's first token index; the last chunk's last token
    for base, offsets in windows:
        end = first + len(offsets)
        for i in range(-(-first // stride) * stride, end, stride):  # chunks that start in this window
            starts.append(base + offsets[i - first][0])
        k = max(0, -(-(first - size + 1) // stride))  # the first chunk that may end in this window
        for i in range(k * stride + size - 1, end, stride):
            yield starts.popleft(), base + offsets[i - first][1]
            complete = i
        if offsets:
            last_end = base + offsets[-1][1]
        first = end
        del offsets  # not alive while the next window is tokenized
    if first and complete != first - 1:  # the short last chunk
        yield starts[0], last_end


def _last_token_start(offsets: list[tuple[int, int]], limit: int) -> int:
    """The last token (index) that starts a character, after the first and by ``limit``."""
    for k in range(len(offsets) - 1, 0, -1):
        q = offsets[k][0]
        if 0 < q <= limit and offsets[k - 1][0] != q:  # tokens of one character's bytes share it
            return k
    return len(offsets)


def _splits_at(text: str, q: int) -> bool:
    """Whether GPT-2/Qwen-style pre-tokenizers split ``text`` at ``q`` whatever comes after
    ``q + 1``, and tokenize ``text[:q]`` as the start of ``text``: a letter then anything but a
    letter or mark (no NFC composition across), or a line break then a non-space."""
    before, here = text[q - 1], text[q]
    kind = unicodedata.category(here)[0]
    if before == "\n":
        return kind != "M" and not here.isspace()
    return before.isalpha() and kind not in "LM"


def _valid_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    with path.open("rb") as file:
        try:
            while block := file.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _check_text(path: Path, piece: str) -> None:
    if "\x00" in piece:
        raise SourceError(f"{path.name} is binary data (NUL characters), not text")
    if len(piece) >= 256 and len(_CONTROL.findall(piece)) > MAX_CONTROL_SHARE * len(piece):
        raise SourceError(f"{path.name} is binary data (over {MAX_CONTROL_SHARE:.0%} control characters), not text")


def _stamp(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns
