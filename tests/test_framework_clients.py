"""visdoc's embedding classes inside the frameworks' own Qdrant stores (langchain-qdrant and
llama-index-vector-stores-qdrant on an in-memory ``QdrantClient``), offline with the tiny checkpoint.

Each search is checked against visdoc's own dense vectors: the expected ranking is the cosine of
the query-prompt vector with the passage-prompt vectors, computed here directly."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from langchain_visdoc import JinaV4Embeddings

TEXTS = [
    "invoices and receipts from suppliers",
    "quarterly revenue grew in the third quarter",
    "the organisation chart of the company",
    "printer cartridges and office supplies",
    "travel expenses for the sales team",
    "annual report of Northwind Traders",
]
QUERIES = ["revenue by quarter", "office printer", "company structure"]


def ranking(model, query: str, k: int) -> tuple[list[int], np.ndarray]:  # noqa: ANN001 - a visdoc encoder
    """Indices of the ``k`` texts nearest ``query`` by visdoc's dense cosine, and their cosines."""
    passages = model.encode_texts(TEXTS, prompt_name="passage").dense
    vector = model.encode_texts([query], prompt_name="query").dense[0]
    cosine = passages @ vector / np.linalg.norm(passages, axis=1) / np.linalg.norm(vector)
    order = np.argsort(-cosine)[:k]
    return [int(i) for i in order], cosine[order]


# -- LangChain: langchain_qdrant.QdrantVectorStore -------------------------------------------------


@pytest.fixture
def lc_store(tiny_fp32):
    from langchain_qdrant import QdrantVectorStore

    embeddings = JinaV4Embeddings(tiny_fp32)
    client = QdrantClient(location=":memory:")
    size = len(embeddings.embed_query("size"))
    client.create_collection("docs", vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))
    yield QdrantVectorStore(client=client, collection_name="docs", embedding=embeddings)
    client.close()


def test_langchain_qdrant_ranks_by_visdoc_dense_cosine(lc_store, tiny_fp32):
    ids = lc_store.add_texts(TEXTS, ids=[str(uuid.uuid5(uuid.NAMESPACE_URL, t)) for t in TEXTS])
    assert len(ids) == len(TEXTS)
    for query in QUERIES:
        order, cosines = ranking(tiny_fp32, query, 3)
        found = lc_store.similarity_search_with_score(query, k=3)
        assert [doc.page_content for doc, _ in found] == [TEXTS[i] for i in order]
        np.testing.assert_allclose([score for _, score in found], cosines, atol=1e-5)
    assert lc_store.similarity_search(QUERIES[1], k=1)[0].page_content == TEXTS[ranking(tiny_fp32, QUERIES[1], 1)[0][0]]


def test_langchain_qdrant_stores_passages_and_searches_with_queries(lc_store, tiny_fp32):
    embeddings = lc_store.embeddings
    text = TEXTS[3]
    passage, query = embeddings.embed_documents([text])[0], embeddings.embed_query(text)
    assert not np.allclose(passage, query, atol=1e-3)  # two prompts: the same text gives two vectors
    [doc_id] = lc_store.add_texts([text])
    [record] = lc_store.client.retrieve("docs", [doc_id], with_vectors=True)
    np.testing.assert_allclose(record.vector, tiny_fp32.encode_texts([text], prompt_name="passage").dense[0], atol=1e-6)
    [(_, score)] = lc_store.similarity_search_with_score(text, k=1)
    np.testing.assert_allclose(score, np.dot(passage, query), atol=1e-5)  # the query prompt searched the passage


def test_langchain_qdrant_from_texts(tiny_fp32):
    from langchain_qdrant import QdrantVectorStore

    store = QdrantVectorStore.from_texts(TEXTS, JinaV4Embeddings(tiny_fp32), location=":memory:", collection_name="t")
    order, _ = ranking(tiny_fp32, QUERIES[0], 2)
    assert [d.page_content for d in store.similarity_search(QUERIES[0], k=2)] == [TEXTS[i] for i in order]
    store.client.close()


async def test_langchain_qdrant_async(lc_store, tiny_fp32):
    await lc_store.aadd_texts(TEXTS)
    for query in QUERIES:
        order, _ = ranking(tiny_fp32, query, 2)
        assert [d.page_content for d in await lc_store.asimilarity_search(query, k=2)] == [TEXTS[i] for i in order]


# -- LlamaIndex: llama_index.vector_stores.qdrant.QdrantVectorStore --------------------------------


def documents():  # noqa: ANN201
    from llama_index.core.schema import Document

    return [Document(text=t, id_=f"d{i}") for i, t in enumerate(TEXTS)]


def test_llama_qdrant_index_retrieves_by_visdoc_dense_cosine(tiny_fp32):
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.embeddings.visdoc import JinaV4Embedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    client = QdrantClient(location=":memory:")
    store = QdrantVectorStore(collection_name="nodes", client=client)
    context = StorageContext.from_defaults(vector_store=store)
    embed = JinaV4Embedding(tiny_fp32)
    index = VectorStoreIndex.from_documents(documents(), storage_context=context, embed_model=embed)
    for query in QUERIES:
        order, cosines = ranking(tiny_fp32, query, 3)
        hits = index.as_retriever(similarity_top_k=3).retrieve(query)
        assert [h.node.ref_doc_id for h in hits] == [f"d{i}" for i in order]
        np.testing.assert_allclose([h.score for h in hits], cosines, atol=1e-5)
    client.close()


def test_llama_qdrant_ingestion_pipeline_with_the_embedding_as_a_transformation(tiny_fp32):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.visdoc import JinaV4Embedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    embed = JinaV4Embedding(tiny_fp32)
    client = QdrantClient(location=":memory:")
    store = QdrantVectorStore(collection_name="pipeline", client=client)
    nodes = IngestionPipeline(transformations=[SentenceSplitter(), embed], vector_store=store).run(
        documents=documents()
    )
    assert len(nodes) == len(TEXTS) and client.count("pipeline").count == len(TEXTS)
    passages = tiny_fp32.encode_texts([n.get_content(metadata_mode="embed") for n in nodes], prompt_name="passage")
    np.testing.assert_allclose([n.embedding for n in nodes], passages.dense, atol=1e-6)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    order, _ = ranking(tiny_fp32, QUERIES[1], 2)
    assert [h.node.ref_doc_id for h in index.as_retriever(similarity_top_k=2).retrieve(QUERIES[1])] == [
        f"d{i}" for i in order
    ]
    client.close()


async def test_llama_qdrant_async_insert_and_retrieve(tiny_fp32):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.visdoc import JinaV4Embedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    aclient = AsyncQdrantClient(location=":memory:")
    store = QdrantVectorStore(collection_name="async", aclient=aclient)
    index = VectorStoreIndex.from_vector_store(store, embed_model=JinaV4Embedding(tiny_fp32))
    await index.ainsert_nodes(SentenceSplitter().get_nodes_from_documents(documents()))
    for query in QUERIES:
        order, cosines = ranking(tiny_fp32, query, 2)
        hits = await index.as_retriever(similarity_top_k=2).aretrieve(query)
        assert [h.node.ref_doc_id for h in hits] == [f"d{i}" for i in order]
        np.testing.assert_allclose([h.score for h in hits], cosines, atol=1e-5)
    await aclient.close()
