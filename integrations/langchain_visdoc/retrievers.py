"""A LangChain retriever over a :class:`VisdocVectorStore`."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from .vectorstores import VisdocVectorStore


class VisdocRetriever(BaseRetriever):
    """Top ``k`` pages for a query, searched as the store's ``retrieval_mode`` says (by default
    dense and pooled prefetch, then MaxSim rerank).

    ``filter`` is a dict of metadata equalities; ``k``, ``filter`` and the store's search options
    (``mode``, ``prefetch`` ...) may also be passed to ``invoke``. ``VisdocVectorStore.as_retriever()``
    gives the same results, and ``as_retriever(search_type="mmr")`` diverse ones.
    """

    vectorstore: VisdocVectorStore
    k: int = 4
    filter: dict[str, Any] | None = None

    model_config = {"arbitrary_types_allowed": True}

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = kwargs.pop("k", self.k)
        return self.vectorstore.similarity_search(query, k=k, filter=kwargs.pop("filter", self.filter), **kwargs)
