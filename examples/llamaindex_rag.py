"""RAG over PDF page images with LlamaIndex: MultiModalVectorStoreIndex + query engine.

    python examples/llamaindex_rag.py [PDF ...] --question "Which quarter had the highest revenue?"

Each PDF page becomes an ``ImageDocument`` (page image + text, from ``VisdocPDFReader``); the
page images go to a visdoc image store (late interaction with jina-embeddings-v4), the texts to
a visdoc text store. The query engine retrieves pages and hands them to a multimodal LLM: by
default ``llama-index-llms-openai``'s ``OpenAI`` (needs OPENAI_API_KEY); ``--mock-llm`` uses
LlamaIndex's offline ``MockLLM``. The embedding model is ``$VISDOC_MODEL``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llama_index.core import StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.embeddings.visdoc import JinaV4Embedding
from llama_index.readers.visdoc import VisdocPDFReader
from llama_index.vector_stores.visdoc import VisdocVectorStore

HERE = Path(__file__).parent


def build_index(pdfs: list[str], data_dir: str) -> tuple[MultiModalVectorStoreIndex, list[VisdocVectorStore]]:
    """Index the PDFs' pages, or reopen the index persisted in ``data_dir``."""
    embed = JinaV4Embedding()
    text_store = VisdocVectorStore(collection="llamaindex-text", data_dir=data_dir)
    image_store = VisdocVectorStore(collection="llamaindex-pages", data_dir=data_dir)
    stores = [text_store, image_store]
    if image_store.client.count():
        index = MultiModalVectorStoreIndex.from_vector_store(
            vector_store=text_store, image_vector_store=image_store, embed_model=embed, image_embed_model=embed
        )
        return index, stores
    pages = [page for pdf in pdfs for page in VisdocPDFReader().load_data(pdf)]
    context = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    index = MultiModalVectorStoreIndex.from_documents(
        pages, storage_context=context, embed_model=embed, image_embed_model=embed
    )
    return index, stores


def llm(mock: bool):  # noqa: ANN201 - any LlamaIndex LLM
    if mock:
        from llama_index.core.llms import MockLLM

        return MockLLM(max_tokens=16)
    from llama_index.llms.openai import OpenAI  # pip install llama-index-llms-openai

    return OpenAI(model="gpt-4o-mini")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pdfs", nargs="*", default=[str(HERE / "data" / "annual-report.pdf")])
    parser.add_argument("--question", default="Which quarter had the highest revenue?")
    parser.add_argument("--data-dir", default="visdoc_data")
    parser.add_argument("--mock-llm", action="store_true", help="offline stand-in LLM")
    args = parser.parse_args()

    index, stores = build_index(args.pdfs, args.data_dir)
    engine = index.as_query_engine(llm=llm(args.mock_llm), similarity_top_k=2, image_similarity_top_k=2)
    response = engine.query(args.question)
    print(f"Q: {args.question}\nA: {response}\nSources:")
    for hit in response.metadata["image_nodes"]:
        print(f"  {hit.node.metadata['source']} page {hit.node.metadata['page_label']}  score {hit.score:.3f}")
    for store in stores:
        store.close()


if __name__ == "__main__":
    main()
