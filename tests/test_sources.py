"""Sources within memory bounds: texts chunked as a stream (the same chunks as cutting the whole
text at once), text encodings detected and binary files refused, images measured before they are
decoded and turned upright by their EXIF orientation."""

from __future__ import annotations

import codecs
import io
import random
import sys
import tracemalloc

import pytest
from PIL import Image, ImageFile

from conftest import FIXTURE
from visdoc.errors import ImageLoadError, SourceError
from visdoc.images import image_size, load_rgb
from visdoc.ingest.plan import Document, identify
from visdoc.ingest.stages import produce, tasks
from visdoc.sources import SourceFile, read_text
from visdoc.sources.text import text_chunks, token_spans

WORDS = ["alpha", "beta,", "gamma.", "don't", "café", "e\u0301t\u00e9", "日本語の文章、", "テスト。", "123", "4.5%",
         "  ", "\n", "\n\n", "\t", "x\u200d", "🙂", "$$", "--", "naïve", "Straße", "\r\n", "Ünïcödé"]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    from visdoc.checkpoint import read_config
    from visdoc.tokenization import PromptTokenizer

    checkpoint = read_config(FIXTURE)
    return PromptTokenizer.from_config(checkpoint.config, checkpoint.path / "tokenizer.json", max_length=sys.maxsize)


def mixed_text(seed: int, words: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) + rng.choice(["", " ", " ", "\n"]) for _ in range(words))


def reference_spans(offsets: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """The chunking as it was: all token offsets of the whole text at once."""
    spans, start = [], 0
    while start < len(offsets):
        end = min(start + size, len(offsets))
        spans.append((offsets[start][0], offsets[end - 1][1]))
        if end == len(offsets):
            break
        start = end - overlap
    return spans


# -- text chunking as a stream ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_windowed_tokens_are_those_of_the_whole_text(tokenizer, seed):
    text = mixed_text(seed, 2500)
    pieces = [text[i : i + 97] for i in range(0, len(text), 97)]
    whole = tokenizer.offsets(text)
    for window in (300, 2000):  # many windows, cut wherever the text allows
        assert list(token_spans(pieces, tokenizer, window)) == whole


@pytest.mark.parametrize(("size", "overlap"), [(64, 16), (7, 0), (5, 4), (512, 64)])
def test_streamed_chunks_equal_the_whole_text_chunks(tokenizer, tmp_path, size, overlap):
    text = mixed_text(size, 3000)
    path = tmp_path / "notes.md"
    path.write_text(text, encoding="utf-8", newline="")
    chunks = text_chunks(path, tokenizer, size, overlap)
    expected = [text[a:b] for a, b in reference_spans(tokenizer.offsets(text), size, overlap)]
    assert len(chunks) == len(expected) > 0
    assert [t for _, t in chunks.select(range(len(chunks)))] == expected
    some = list(range(len(chunks)))[1::3]
    assert [t for _, t in chunks.select(some)] == [expected[i] for i in some]  # read lazily, any subset


def test_chunks_of_a_large_text_are_read_from_their_place(tokenizer, tmp_path, monkeypatch):
    import visdoc.sources.text as text_module

    monkeypatch.setattr(text_module, "MARK_BYTES", 1 << 17)  # several places to resume reading at
    text = mixed_text(7, 60_000)
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8", newline="")
    chunks = text_chunks(path, tokenizer, 128, 16)
    assert len(chunks.marks) > 2
    spans = reference_spans(tokenizer.offsets(text), 128, 16)
    tail = list(range(len(spans) - 5, len(spans)))
    assert [t for _, t in chunks.select(tail)] == [text[a:b] for a, b in (spans[i] for i in tail)]


def test_chunking_a_5_mb_text_holds_neither_its_tokens_nor_its_chunks(tokenizer, tmp_path):
    text = ("The cold-chain logistics segment opened new routes in the third quarter. " * 70_000)[: 5 << 20]
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    del text
    tracemalloc.start()
    try:
        doc = identify(SourceFile(path, "text"), tokenizer)
        _, planning = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert isinstance(doc, Document), doc
        doc.missing = list(range(doc.total))
        work = tasks([doc])  # as an ingestion takes them: a few hundred chunks at a time
        produced = sum(len(unit.content) for item in work for unit in produce(*item, (28, 784, 602112)))
        _, producing = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert doc.total > 2000 and produced > 5 << 20  # over a million tokens
    # all token offsets as a list take over 100 bytes a token; the text alone is 5 MB
    assert planning < 24 << 20 and producing < 8 << 20, (planning, producing)


# -- encodings and binary files --------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_text_with_a_byte_order_mark_is_read_in_its_encoding(tmp_path, encoding):
    text = "Grüße aus Köln – 日本語のテキスト 🙂\n" * 300
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    assert read_text(path) == text


def test_text_in_a_legacy_encoding_is_detected(tmp_path):
    pytest.importorskip("charset_normalizer")
    text = "Le café de la gare était fermé ; nous avons marché jusqu'à l'hôtel près du théâtre.\n" * 40
    path = tmp_path / "lettre.txt"
    path.write_bytes(text.encode("cp1252"))
    assert read_text(path) == text


def test_binary_named_txt_is_refused_naming_the_file(tmp_path, tokenizer):
    noise = tmp_path / "noise.txt"
    noise.write_bytes(random.Random(0).randbytes(200_000))
    controls = tmp_path / "controls.md"
    controls.write_bytes(bytes(range(1, 9)) * 4000 + b"some text")
    for path in (noise, controls):
        with pytest.raises(SourceError, match=path.name):
            read_text(path)
        problem = identify(SourceFile(path, "text"), tokenizer)
        assert not isinstance(problem, Document) and path.name in problem.message and "binary" in problem.message


def test_blank_text_is_still_refused(tmp_path, tokenizer):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n")
    problem = identify(SourceFile(path, "text"), tokenizer)
    assert not isinstance(problem, Document) and "empty" in problem.message


# -- images ----------------------------------------------------------------------------------


@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if any image file's pixels are decoded."""

    def load(self):  # noqa: ANN001, ANN202
        raise AssertionError(f"decoded {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def _saved(image: Image.Image, path, **options):  # noqa: ANN001, ANN202
    image.save(path, **options)
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, never_decoded):
    huge = _saved(Image.new("1", (12000, 12000)), tmp_path / "huge.png")  # 144 Mpx in ~20 kB
    with pytest.raises(ImageLoadError) as refused:
        load_rgb(str(huge), 3)
    message = str(refused.value)
    assert "huge.png" in message and "12000x12000" in message and "64000000" in message and refused.value.index == 3
    with pytest.raises(ImageLoadError, match="12000x12000"):
        load_rgb(huge.read_bytes(), 0, limit=10_000_000)


def test_ingesting_an_image_over_the_limit_is_that_files_problem(tmp_path, never_decoded):
    huge = _saved(Image.new("1", (12000, 12000)), tmp_path / "scan.png")
    doc = Document(SourceFile(huge, "image"), "0" * 32, "0" * 64, 1, [0])
    [problem] = produce(doc, [0], (28, 784, 602112))
    assert problem.path == str(huge) and "12000x12000" in problem.message and "decoded pixels" in problem.message


def test_a_decompression_bomb_is_an_image_load_error_naming_the_item(tmp_path):
    bomb = _saved(Image.new("1", (20000, 10000)), tmp_path / "bomb.png")  # over PIL's own limit
    with pytest.raises(ImageLoadError, match="bomb.png.*decompression bomb"):
        load_rgb(str(bomb), 0, limit=10**9)


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size(tmp_path):
    photo = _saved(Image.new("L", (2000, 1600), 128), tmp_path / "photo.jpg", quality=80)
    image = load_rgb(str(photo), 0, limit=1_000_000)
    assert image.size == (1000, 800) and image.mode == "RGB"
    assert load_rgb(str(photo), 0).size == (2000, 1600)  # within the limit: untouched


def test_exif_orientation_turns_the_image_upright(tmp_path):
    picture = Image.new("RGB", (40, 20), (255, 0, 0))
    picture.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    path = _saved(picture, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    upright = load_rgb(str(path), 0)
    assert upright.size == (20, 40) and image_size(str(path), 0) == (20, 40)
    red, blue = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60  # the right half went down
    assert load_rgb(upright, 0).size == (20, 40)  # not turned twice
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    assert load_rgb(buffer.getvalue(), 0).size == (40, 20)  # no orientation: as it is


@pytest.mark.parametrize(("kind", "mode"), [("JPEG", "L"), ("PNG", "RGBA"), ("TIFF", "RGB"), ("WEBP", "RGB")])
def test_the_size_from_the_header_is_the_size_decoded_whatever_the_format(kind, mode):
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    Image.new(mode, (30, 10)).save(buffer, format=kind, exif=exif.tobytes())
    data = buffer.getvalue()
    assert image_size(data, 0) == load_rgb(data, 0).size == load_rgb(load_rgb(data, 0), 0).size == (10, 30)


def test_the_pixel_limit_setting_is_read_or_refused_never_ignored(monkeypatch):
    from visdoc.images import max_decoded_pixels

    for value, limit in (("100_000_000", 100_000_000), ("1e8", 100_000_000), (" 5000 ", 5000), ("", 64_000_000)):
        monkeypatch.setenv("VISDOC_MAX_DECODED_PIXELS", value)
        assert max_decoded_pixels() == limit, value
    for value in ("lots", "-5", "0"):
        monkeypatch.setenv("VISDOC_MAX_DECODED_PIXELS", value)
        with pytest.raises(ValueError, match="VISDOC_MAX_DECODED_PIXELS"):
            max_decoded_pixels()
