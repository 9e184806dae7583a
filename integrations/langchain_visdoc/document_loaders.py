"""A LangChain loader that yields one Document per PDF page, with page-image references."""

from __future__ import annotations

import os
from collections.abc import Iterator

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from visdoc.documents import image_reference


class VisdocPDFLoader(BaseLoader):
    """PDF pages as Documents: ``page_content`` is the page text; metadata follows LangChain's
    PDF conventions (``source``, ``page`` 0-based, ``total_pages``, ``page_label``) plus
    ``image_path`` (``file.pdf#page=N``) that :class:`VisdocVectorStore` embeds as an image and
    :func:`visdoc.documents.load_page_image` renders for a vision-language model."""

    def __init__(self, file_path: str | os.PathLike) -> None:
        self.file_path = str(file_path)

    def lazy_load(self) -> Iterator[Document]:
        import pymupdf

        from visdoc.sources import SourceError, pdf_info

        pdf_info(self.file_path)  # clear errors for corrupt, encrypted and empty files
        try:
            doc = pymupdf.open(self.file_path)
        except Exception as exc:  # pragma: no cover - pdf_info has opened it already
            raise SourceError(f"cannot open PDF: {exc}") from None
        with doc:
            title = (doc.metadata or {}).get("title") or ""
            for number in range(doc.page_count):
                page = doc.load_page(number)
                metadata = {
                    "source": self.file_path,
                    "page": number,
                    "total_pages": doc.page_count,
                    "page_label": page.get_label() or str(number + 1),
                    "image_path": image_reference(self.file_path, number, doc.page_count),
                }
                if title:
                    metadata["title"] = title
                yield Document(page_content=page.get_text("text"), metadata=metadata)
