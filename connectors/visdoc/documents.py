"""Stored pages back as pixels: a page reference (``path`` or ``path#page=N``, 1-based, as a point's
``metadata.image_path`` holds it) turned into an image for a vision-language model."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_PIXELS = 602112


def load_page_image(reference: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The RGB image behind a page reference (PDF pages are rendered within ``max_pixels``)."""
    from PIL import Image

    from .errors import SourceError
    from .sources.pdf import render_pages

    path, _, fragment = reference.partition("#page=")
    page = int(fragment) - 1 if fragment else 0
    if path.lower().endswith(".pdf"):
        [rendered] = render_pages(path, [page], (28, 28 * 28, max_pixels))  # the ingestion renderer
        if rendered.error:
            raise SourceError(f"{reference}: {rendered.error}")
        return rendered.image()
    with Image.open(path) as image:
        image.seek(page)
        return image.convert("RGB")


def page_data_uri(reference: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """A ``data:image/png;base64,...`` URI of a page, the form chat models accept for images."""
    buffer = io.BytesIO()
    load_page_image(reference, max_pixels=max_pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
