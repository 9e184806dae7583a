"""Stored pages back as pixels: a page reference (``path`` or ``path#page=N``, 1-based, as a point's
``metadata.image_path`` holds it) turned into an image for a vision-language model."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from .images import DEFAULT_PAGE_PIXELS, load_page_reference

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_PIXELS = DEFAULT_PAGE_PIXELS


def load_page_image(reference: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The RGB image behind a page reference (PDF pages are rendered within ``max_pixels``)."""
    return load_page_reference(reference, max_pixels=max_pixels)


def page_data_uri(reference: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """A ``data:image/png;base64,...`` URI of a page, the form chat models accept for images."""
    buffer = io.BytesIO()
    load_page_image(reference, max_pixels=max_pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
