"""A LangChain loader that yields one Document per PDF page, with page-image references."""

from __future__ import annotations

import os
from collections.abc import Iterator

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document


class VisdocPDFLoader(BaseLoader):
    """PDF pages as Documents, lazily: ``page_content`` is the page text; metadata follows
    LangChain's PDF conventions (``source``, ``page`` 0-based, ``total_pages``, ``page_label``)
    plus ``image_path`` (``file.pdf#page=N``) that :class:`VisdocVectorStore` embeds as an
    image and :func:`visdoc.documents.load_page_image` renders for a vision-language model.
    Corrupt, encrypted and empty PDFs raise :class:`visdoc.sources.SourceError`."""

    def __init__(self, file_path: str | os.PathLike) -> None:
        self.file_path = str(file_path)

    def lazy_load(self) -> Iterator[Document]:
        from visdoc.sources import page_texts

        for text, metadata in page_texts(self.file_path):
            yield Document(page_content=text, metadata=metadata)
