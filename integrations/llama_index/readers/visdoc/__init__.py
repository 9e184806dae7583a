"""LlamaIndex reader: PDF pages as ``ImageDocument``s (page image + page text), via visdoc."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import ImageDocument

__all__ = ["VisdocPDFReader"]


class VisdocPDFReader(BaseReader):
    """One ``ImageDocument`` per PDF page.

    ``text`` is the page's text layer; the metadata carries ``source``, ``page`` (0-based),
    ``total_pages``, ``page_label`` and ``image_path`` (``file.pdf#page=N``), which visdoc
    stores render at the model's resolution. With ``include_image=True`` (the default) the
    rendered page is attached as a base64 PNG ``image``, so multimodal LLMs can read it too.
    """

    def __init__(self, include_image: bool = True) -> None:
        self.include_image = include_image

    def load_data(self, file: str | Path, extra_info: dict[str, Any] | None = None) -> list[ImageDocument]:
        from visdoc.documents import load_page_image
        from visdoc.points import IMAGE_PATH
        from visdoc.sources import page_texts

        documents = []
        for text, metadata in page_texts(file):
            image = None
            if self.include_image:
                buffer = io.BytesIO()
                load_page_image(metadata[IMAGE_PATH]).save(buffer, format="PNG")
                image = base64.b64encode(buffer.getvalue()).decode()
            documents.append(ImageDocument(text=text, image=image, metadata=metadata | (extra_info or {})))
        return documents
