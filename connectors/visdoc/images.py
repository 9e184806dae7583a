"""Read user image inputs (PIL images, paths, page references, bytes), naming bad ones by index and source.

A page reference ``file.pdf#page=N`` (1-based) renders that PDF page at the model's resolution;
``scan.tiff#page=N`` picks a frame of a multi-page image.

Memory: an image is measured from its header before any pixel is decoded. One over
``max_decoded_pixels`` (default :data:`DEFAULT_MAX_DECODED_PIXELS`, or the environment's
``VISDOC_MAX_DECODED_PIXELS``) is refused with an :class:`ImageLoadError`, except a JPEG, which
is decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``) when that fits. EXIF orientation is applied
(as ``PIL.ImageOps.exif_transpose`` does), so a phone photo is embedded the way it is seen.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Union

from .errors import ImageLoadError

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union["Image.Image", str, os.PathLike, bytes, bytearray, memoryview]
MAX_DECODED_PIXELS_ENV = "VISDOC_MAX_DECODED_PIXELS"
DEFAULT_MAX_DECODED_PIXELS = 64_000_000  # far above any page (a Letter page at 600 dpi is 34 Mpx)
DEFAULT_PAGE_PIXELS = 602_112  # the real model's pixel budget: what a PDF page is rendered within for a reader
_ORIENTATION = 0x0112  # the EXIF tag
_SWAPS = (5, 6, 7, 8)  # orientations that turn the image by 90 degrees


def max_decoded_pixels() -> int:
    """The most pixels one image may decode to: ``$VISDOC_MAX_DECODED_PIXELS`` or the default."""
    value = os.environ.get(MAX_DECODED_PIXELS_ENV, "").strip().replace("_", "")
    if not value:
        return DEFAULT_MAX_DECODED_PIXELS
    try:
        limit = int(float(value)) if value.lower().count("e") == 1 else int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(f"${MAX_DECODED_PIXELS_ENV}={os.environ[MAX_DECODED_PIXELS_ENV]!r}: use a positive number "
                         "of pixels, e.g. 64000000")  # fmt: skip
    return limit


def describe(item: object) -> str:
    """A short human name for an image input, used in error messages."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"{len(item)} bytes"
    return type(item).__name__


def image_size(item: ImageInput, index: int) -> tuple[int, int]:
    """(width, height) as the image is seen (EXIF orientation applied), from the header only;
    files are closed again at once."""
    with _opened(item, index) as image:
        width, height = image.size
        return (height, width) if _orientation(image) in _SWAPS else (width, height)


def load_rgb(item: ImageInput, index: int, limit: int | None = None) -> Image.Image:
    """Decode fully (at most ``limit`` pixels, default :func:`max_decoded_pixels`), turn upright
    and convert to RGB (alpha is dropped, as the reference does)."""
    with _opened(item, index) as image:
        return _decoded(image, index, describe(item), limit)


def load_frame(image: Image.Image, frame: int, source: str, limit: int | None = None) -> Image.Image:
    """Frame ``frame`` of an opened image file as :func:`load_rgb` decodes an image; ``source``
    names it in the :class:`ImageLoadError` (a ``ValueError``) or ``EOFError`` it may raise."""
    image.seek(frame)
    return _decoded(image, frame, source, limit)


def _decoded(image: Image.Image, index: int, source: str, limit: int | None) -> Image.Image:
    from PIL import Image, ImageOps

    orientation = _orientation(image)  # read before decoding, as image_size does
    _bound(image, index, source, limit or max_decoded_pixels())
    try:
        image.load()
        rgb = image.copy() if image.mode == "RGB" else image.convert("RGB")
        if orientation != 1:
            ImageOps.exif_transpose(rgb, in_place=True)  # also drops the tag: never turned twice
        return rgb
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(index, source, _reason(exc)) from exc


def _bound(image: Image.Image, index: int, source: str, limit: int) -> None:
    """Refuse an image over ``limit`` pixels before it is decoded; a JPEG is decoded smaller instead
    when 1/2, 1/4 or 1/8 of its size fits."""
    width, height = image.size
    if width * height <= limit:
        return
    if getattr(image, "format", None) == "JPEG":  # draft() does nothing once decoded
        for scale in (2, 4, 8):
            size = (-(-width // scale), -(-height // scale))
            if size[0] * size[1] <= limit:
                image.draft("RGB", size)
                if image.size[0] * image.size[1] <= limit:
                    return
                break
    raise ImageLoadError(
        index, source, f"{width}x{height} pixels is over the limit of {limit} decoded pixels per image "
        "(max_decoded_pixels; VISDOC_MAX_DECODED_PIXELS)",
    )  # fmt: skip


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: upright), read without decoding: a PNG's EXIF may follow its
    pixels, and is then not looked for; PIL turns a TIFF upright itself (its size too)."""
    kind = getattr(image, "format", None)
    if kind == "TIFF" or (kind == "PNG" and "exif" not in image.info):
        return 1
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # damaged EXIF: the pixels are still usable
        return 1
    return value if value in range(1, 9) else 1


@contextlib.contextmanager
def _opened(item: ImageInput, index: int) -> Iterator[Image.Image]:
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        yield item
        return
    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ImageLoadError(index, describe(item), "expected a PIL image, a path or bytes")
    if isinstance(item, (str, os.PathLike)) and "#page=" in str(item) and not os.path.exists(item):
        try:  # a page reference: file.pdf#page=N, scan.tiff#page=N
            yield load_page_reference(str(item))
        except Exception as exc:
            raise ImageLoadError(index, describe(item), _reason(exc)) from exc
        return
    source = item if isinstance(item, (str, os.PathLike)) else io.BytesIO(bytes(item))
    try:
        image = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(index, describe(item), f"refused as a possible decompression bomb: {exc}") from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageLoadError(index, describe(item), _reason(exc)) from exc
    with image:
        yield image


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_page_reference(reference: str, *, max_pixels: int = DEFAULT_PAGE_PIXELS) -> Image.Image:
    """The RGB image behind a page reference (``path`` or ``path#page=N``, 1-based): a PDF page is
    rendered within ``max_pixels`` as ingestion renders it, an image frame is decoded as
    :func:`load_frame` does (bounded before decoding, upright)."""
    from PIL import Image

    from .errors import SourceError
    from .sources.pdf import render_pages

    path, _, fragment = reference.partition("#page=")
    page = int(fragment) - 1 if fragment else 0
    if path.lower().endswith(".pdf"):
        [rendered] = render_pages(path, [page], (28, 28 * 28, max_pixels))
        if rendered.error:
            raise SourceError(f"{reference}: {rendered.error}")
        return rendered.image()
    with Image.open(path) as image:
        return load_frame(image, page, reference)
