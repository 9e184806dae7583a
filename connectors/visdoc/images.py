"""Read user image inputs (PIL images, paths, page references, bytes), naming bad ones by index and source.

A page reference ``file.pdf#page=N`` (1-based) renders that PDF page at the model's resolution;
``scan.tiff#page=N`` picks a frame of a multi-page image.
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


def describe(item: object) -> str:
    """A short human name for an image input, used in error messages."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"{len(item)} bytes"
    return type(item).__name__


def image_size(item: ImageInput, index: int) -> tuple[int, int]:
    """(width, height) from the header only; files are closed again at once."""
    with _opened(item, index) as image:
        return image.size


def load_rgb(item: ImageInput, index: int) -> Image.Image:
    """Decode fully and convert to RGB (alpha is dropped, as the reference does)."""
    from PIL import Image

    with _opened(item, index) as image:
        try:
            image.load()
            return image.copy() if image.mode == "RGB" else image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageLoadError(index, describe(item), _reason(exc)) from exc


@contextlib.contextmanager
def _opened(item: ImageInput, index: int) -> Iterator[Image.Image]:
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        yield item
        return
    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ImageLoadError(index, describe(item), "expected a PIL image, a path or bytes")
    if isinstance(item, (str, os.PathLike)) and "#page=" in str(item) and not os.path.exists(item):
        from .documents import load_page_image  # a page reference: file.pdf#page=N, scan.tiff#page=N

        try:
            yield load_page_image(str(item))
        except Exception as exc:
            raise ImageLoadError(index, describe(item), _reason(exc)) from exc
        return
    source = item if isinstance(item, (str, os.PathLike)) else io.BytesIO(bytes(item))
    try:
        image = Image.open(source)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(index, describe(item), _reason(exc)) from exc
    with image:
        yield image


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
