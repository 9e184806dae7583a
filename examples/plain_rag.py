"""RAG retrieval without a framework: visdoc alone, ready for any chat API.

    python examples/plain_rag.py [DOCS ...] --question "Which quarter had the highest revenue?"

Ingests documents into the embedded store, retrieves the best pages by late interaction, and
prints a chat request in the widely used OpenAI message format (page text + page images as
data URIs) that you can send to any compatible endpoint. ``--out FILE`` writes it as JSON.
The embedding model is ``$VISDOC_MODEL``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from visdoc import JinaV4
from visdoc.checkpoint import DEFAULT_MODEL
from visdoc.documents import page_data_uri
from visdoc.ingest import Ingestor
from visdoc.search import search
from visdoc.store import CollectionSpec, Hit, open_store

HERE = Path(__file__).parent


def chat_request(question: str, hits: list[Hit]) -> dict:
    """An OpenAI-style chat request: the question, then each page's text and image."""
    content: list[dict] = [{"type": "text", "text": f"Answer from these pages, citing them.\nQuestion: {question}"}]
    for hit in hits:
        meta = hit.payload["metadata"]
        content.append(
            {"type": "text", "text": f"[{Path(meta['source']).name} p. {meta['page_label']}]\n{hit.payload['text']}"}
        )
        if meta.get("image_path"):
            content.append({"type": "image_url", "image_url": {"url": page_data_uri(meta["image_path"])}})
    return {"messages": [{"role": "user", "content": content}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("docs", nargs="*", default=[str(HERE / "data")])
    parser.add_argument("--question", default="Which quarter had the highest revenue?")
    parser.add_argument("--data-dir", default="visdoc_data")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--out", help="write the chat request here as JSON")
    args = parser.parse_args()

    model = JinaV4.from_pretrained(os.environ.get("VISDOC_MODEL", DEFAULT_MODEL))
    spec = CollectionSpec(dim=model.dims[-1], model=model.name)
    with open_store("plain-rag", spec, data_dir=args.data_dir) as store:
        print(Ingestor(model, store).ingest(args.docs).summary())
        hits = search(model, store, args.question, k=args.k)
    request = chat_request(args.question, hits)
    for rank, hit in enumerate(hits, 1):
        print(
            f"{rank}. {hit.payload['metadata']['source']} page {hit.payload['metadata']['page_label']}  {hit.score:.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(request))
        print(f"chat request with {len(hits)} pages written to {args.out}")


if __name__ == "__main__":
    main()
