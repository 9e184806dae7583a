"""RAG over visually rich PDFs with LangChain: pages in, grounded answer with page citations out.

    python examples/langchain_rag.py [DOCS ...] --question "Which quarter had the highest revenue?"

PDFs (and images) are stored in a visdoc collection (page images embedded with
jina-embeddings-v4, page text kept); the retriever finds the best pages by late interaction;
the prompt gives the chat model both the page images and their text. The chat model is any
LangChain chat model: by default ``langchain-openai``'s ``ChatOpenAI`` (needs OPENAI_API_KEY);
``--fake-llm`` uses an offline stand-in. The embedding model is ``$VISDOC_MODEL``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_visdoc import JinaV4Embeddings, VisdocVectorStore
from visdoc.documents import page_data_uri

HERE = Path(__file__).parent
SYSTEM = "Answer from the document pages you are shown. Cite pages as [file p. N]. Say so if they lack the answer."


def build_messages(question: str, pages: list) -> list:
    """A system message and one user message holding the question, each page's text and image."""
    content: list[dict] = [{"type": "text", "text": f"Question: {question}"}]
    for doc in pages:
        meta = doc.metadata
        label = f"[{Path(meta['source']).name} p. {meta.get('page_label', meta.get('page', 0) + 1)}]"
        content.append({"type": "text", "text": f"{label}\n{doc.page_content.strip()}"})
        if meta.get("image_path"):
            data = page_data_uri(meta["image_path"]).split(",", 1)[1]
            content.append({"type": "image", "base64": data, "mime_type": "image/png"})
    return [SystemMessage(SYSTEM), HumanMessage(content=content)]


def answer(store: VisdocVectorStore, llm: BaseChatModel, question: str, k: int = 3) -> tuple[str, list]:
    """Retrieve ``k`` pages and ask the chat model; returns the answer and the pages used."""
    pages = store.as_retriever(search_kwargs={"k": k}).invoke(question)
    reply = llm.invoke(build_messages(question, pages))
    return str(reply.content), pages


def chat_model(fake: bool) -> BaseChatModel:
    if fake:
        from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        from langchain_core.messages import AIMessage

        return GenericFakeChatModel(messages=iter([AIMessage("(offline stand-in model) see the cited pages")]))
    from langchain_openai import ChatOpenAI  # pip install langchain-openai

    return ChatOpenAI(model="gpt-4o-mini")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("docs", nargs="*", default=[str(HERE / "data")], help="PDFs, images or folders")
    parser.add_argument("--question", default="Which quarter had the highest revenue?")
    parser.add_argument("--data-dir", default="visdoc_data", help="embedded store folder")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--fake-llm", action="store_true", help="offline stand-in chat model")
    args = parser.parse_args()

    # QDRANT_URL / VISDOC_EMBEDDING_URL switch to a Qdrant server and an embedding server (docker-compose.yml)
    embeddings = JinaV4Embeddings(
        base_url=os.environ.get("VISDOC_EMBEDDING_URL"), api_key=os.environ.get("VISDOC_API_KEY")
    )
    store = VisdocVectorStore(
        embeddings, collection="langchain-rag", data_dir=args.data_dir, url=os.environ.get("QDRANT_URL")
    )
    report = store.add_pdfs(args.docs)  # resumable: unchanged files are not embedded again
    print(report.summary())
    text, pages = answer(store, chat_model(args.fake_llm), args.question, k=args.k)
    print(f"\nQ: {args.question}\nA: {text}\nSources:")
    for doc in pages:
        print(f"  {doc.metadata['source']} page {doc.metadata['page_label']}")
    store.close()


if __name__ == "__main__":
    main()
