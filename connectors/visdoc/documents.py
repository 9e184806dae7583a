"""How framework documents map onto visdoc points, and how to get a stored page's image back.

Every point's payload carries ``text`` (page text or chunk) and ``metadata`` (what a framework
document's metadata should be); points added through a framework also carry their external id
(``doc_id``), which may be any string, while the Qdrant point id is a UUID derived from it.
Page images are referenced as ``path`` (image files) or ``path#page=N`` (1-based PDF or TIFF
pages); :func:`load_page_image` turns a reference back into pixels for a vision-language model.
"""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .store import Hit, Record

TEXT = "text"
METADATA = "metadata"
DOC_ID = "doc_id"
_NAMESPACE = uuid.UUID("0c6f1b1e-3f57-4a8e-9a55-2d7f5b0b7c3d")
DEFAULT_MAX_PIXELS = 602112


def point_id_for(doc_id: str) -> str:
    """The Qdrant point id of an externally named document (any string maps to one UUID)."""
    return str(uuid.uuid5(_NAMESPACE, str(doc_id)))


def image_reference(source: str | Path, page: int, total_pages: int = 1) -> str:
    """``path`` for a single image, ``path#page=N`` (1-based) for a page of a PDF or a TIFF."""
    source = str(source)
    return f"{source}#page={page + 1}" if source.lower().endswith(".pdf") or total_pages > 1 else source


def framework_payload(doc_id: str, text: str, metadata: dict[str, Any], kind: str) -> dict[str, Any]:
    """Payload of a document added through a framework (its metadata kept as given)."""
    return {DOC_ID: doc_id, TEXT: text, METADATA: dict(metadata), "kind": kind}


def unpack(point: Hit | Record) -> tuple[str, str, dict[str, Any]]:
    """(external id, text, metadata) of a stored point, without visdoc's internal keys."""
    payload = point.payload
    return str(payload.get(DOC_ID, point.id)), str(payload.get(TEXT, "")), dict(payload.get(METADATA, {}))


def metadata_filter(conditions: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Equality conditions on metadata keys (a list value means any of them), as store fields."""
    return tuple((f"{METADATA}.{key}", value) for key, value in (conditions or {}).items())


def page_grid(model: Any, image: Any, max_pixels: int | None = None) -> tuple[int, int]:
    """(rows, cols) of the language-model tokens a page image becomes (one per 28x28 pixels)."""
    from .images import image_size
    from .preprocess import ImagePreprocessor

    pixels = model.checkpoint.pixels
    grid = ImagePreprocessor(pixels).grid(*image_size(image, 0), max_pixels=max_pixels)
    return grid.h // pixels.merge_size, grid.w // pixels.merge_size


def load_page_image(reference: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The RGB image behind a page reference (PDF pages are rendered within ``max_pixels``)."""
    from PIL import Image

    path, _, fragment = reference.partition("#page=")
    page = int(fragment) - 1 if fragment else 0
    if path.lower().endswith(".pdf"):
        from .sources import SourceError, render_pages

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
