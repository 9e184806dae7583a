"""Page images: rendered from the verified source file at the model's pixel budget (or a thumbnail's),
and cached as WebP under the work dir."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..points import PAGE, PAGE_IMAGE, kind_of
from .files import SourceFiles
from .stores import Stores
from .validation import UIError, check_point_id

if TYPE_CHECKING:
    from ..encoder import Encoder

IMAGE_SIZES = {"thumb": 96_000, "page": None}  # pixel budget; None: the model's own (the heatmap's grid)


class PageImages:
    """Renders stored pages (one at a time: PyMuPDF is not thread-safe) and caches their images."""

    def __init__(self, model: Encoder, stores: Stores, files: SourceFiles, work_dir: Path) -> None:
        self.model = model
        self.stores = stores
        self.files = files
        self.cache_dir = work_dir / "cache"
        self._render_lock = threading.Lock()

    def page_image(self, name: str, point_id: str, size: str) -> Path:
        """A cached WebP of page ``point_id`` (``thumb`` or ``page``), rendered on first use."""
        if size not in IMAGE_SIZES:
            raise UIError(400, f"size must be one of {sorted(IMAGE_SIZES)}")
        point_id = check_point_id(point_id)
        store = self.stores.open(name)
        cached = self.cache_dir / name / f"{point_id}-{size}.webp"
        if cached.is_file():  # a point id stands for fixed content (document hash, page)
            return cached
        records = store.retrieve([point_id])
        if not records or kind_of(records[0].payload) != PAGE_IMAGE:
            raise UIError(404, "no such page image")
        image = self.render(records[0].payload, IMAGE_SIZES[size])
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.part")
        image.save(partial, format="WEBP", quality=80 if size == "thumb" else 88, method=4)
        os.replace(partial, cached)
        return cached

    def render(self, payload: dict[str, Any], max_pixels: int | None) -> Any:
        """A stored page as a PIL image: PDF pages rendered (within ``max_pixels``, default the
        model's budget), image frames read and scaled down to it."""
        from PIL import Image

        from ..images import load_frame

        path = self.files.verified(payload)
        pixels = self.model.pixels
        budget = max_pixels or pixels.max_pixels
        page = int(payload.get(PAGE, 0) or 0)
        if path.suffix.lower() == ".pdf":
            from ..sources.pdf import render_pages

            with self._render_lock:
                [rendered] = render_pages(str(path), [page], (pixels.factor, pixels.min_pixels, budget))
            if rendered.error:
                raise UIError(404, f"cannot render the page: {rendered.error}")
            return rendered.image()
        try:
            with Image.open(path) as image:
                frame = load_frame(image, page, path.name)  # bounded before decoding, upright
        except (OSError, ValueError, EOFError) as exc:
            raise UIError(404, f"cannot read the page image: {exc}") from None
        if frame.width * frame.height > budget:
            scale = (budget / (frame.width * frame.height)) ** 0.5
            frame = frame.resize((max(1, int(frame.width * scale)), max(1, int(frame.height * scale))), Image.LANCZOS)
        return frame
