"""LangChain integration of visdoc: jina-embeddings-v4 embeddings, a late-interaction vector
store on Qdrant, a retriever and a PDF page loader. Importing it does not import torch."""

from .document_loaders import VisdocPDFLoader
from .embeddings import JinaV4Embeddings
from .modes import RetrievalMode
from .retrievers import VisdocRetriever
from .vectorstores import VisdocVectorStore

__all__ = ["JinaV4Embeddings", "RetrievalMode", "VisdocPDFLoader", "VisdocRetriever", "VisdocVectorStore"]
