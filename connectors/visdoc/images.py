"""Turn user image inputs (PIL images, paths, bytes) into RGB PIL images, naming bad ones."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
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


def open_image(item: ImageInput, index: int) -> Image.Image:
    """Open one input lazily (header only for files and bytes); errors name ``index``."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return item
    try:
        if isinstance(item, (str, os.PathLike)):
            return Image.open(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return Image.open(io.BytesIO(bytes(item)))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageLoadError(index, describe(item), _reason(exc)) from exc
    raise ImageLoadError(index, describe(item), "expected a PIL image, a path or bytes")


def open_images(items: Sequence[ImageInput]) -> list[Image.Image]:
    """Open every input (header only), so bad inputs fail before any model work starts."""
    return [open_image(item, i) for i, item in enumerate(items)]


def to_rgb(image: Image.Image, index: int, source: str) -> Image.Image:
    """Decode fully and convert to RGB (alpha is dropped, as the reference does)."""
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageLoadError(index, source, _reason(exc)) from exc


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
