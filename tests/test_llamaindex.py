"""LlamaIndex integration: batching, async, equality with the core, indexes with persistence."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import Document, TextNode
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.embeddings.visdoc import JinaV4Embedding
from llama_index.readers.visdoc import VisdocPDFReader
from llama_index.vector_stores.visdoc import VisdocVectorStore

from conftest import FIXTURE
from visdoc.documents import load_page_image

SAMPLES = FIXTURE.parents[2] / "examples" / "data"
PDF = SAMPLES / "annual-report.pdf"
TEXTS = [f"note {i}: " + "revenue and logistics " * (i % 4 + 1) for i in range(10)]


@pytest.fixture(scope="module")
def embed(tiny_fp32) -> JinaV4Embedding:
    return JinaV4Embedding(tiny_fp32)


def count_forward_passes(model):
    calls = []
    handle = model.network.model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_text_and_image_batches_run_one_forward_pass_per_batch(embed):
    calls, handle = count_forward_passes(embed.model)
    try:
        embed.embed_batch_size = 4
        vectors = embed.get_text_embedding_batch(TEXTS)
        assert len(vectors) == 10 and len(calls) == 3  # ceil(10 / 4), not 10
        calls.clear()
        # batches of equal-sized images (mixed sizes may be split further to avoid padding)
        images = [str(SAMPLES / "sample-page.png")] * 4 + [str(FIXTURE / "inputs" / "gray150.png")] * 2
        embed.embed_batch_size = 2
        assert len(embed.get_image_embedding_batch(images)) == 6 and len(calls) == 3
    finally:
        embed.embed_batch_size = 32
        handle.remove()


def test_vectors_equal_the_core_output(embed, tiny_fp32):
    np.testing.assert_allclose(embed.get_text_embedding_batch(TEXTS[:3]),
                               tiny_fp32.encode_texts(TEXTS[:3], prompt_name="passage").dense, atol=1e-6)  # fmt: skip
    query = tiny_fp32.encode_texts(["revenue"], prompt_name="query").dense[0]
    np.testing.assert_allclose(embed.get_query_embedding("revenue"), query, atol=1e-6)
    image = str(SAMPLES / "sample-page.png")
    np.testing.assert_allclose(embed.get_image_embedding(image), tiny_fp32.encode_images([image]).dense[0], atol=1e-6)


async def ticks_while(awaitable):  # noqa: ANN001, ANN201
    """Run ``awaitable`` and count how often a 1 ms ticker got to run meanwhile (0: the loop was blocked)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await awaitable
    task.cancel()
    return result, ticks


def slowed(monkeypatch, cls, name: str) -> None:
    """Make ``cls.name`` take at least 50 ms, so a blocked event loop would visibly miss ticks."""
    original = getattr(cls, name)

    def slow(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        time.sleep(0.05)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, slow)


async def test_async_paths_match_sync_and_leave_the_event_loop_free(embed, monkeypatch):
    slowed(monkeypatch, JinaV4Embedding, "_get_text_embeddings")
    vectors, ticks = await ticks_while(embed.aget_text_embedding_batch(TEXTS))
    assert ticks > 5  # the loop kept running while the model worked
    image = await embed.aget_image_embedding(str(SAMPLES / "sample-page.png"))
    query = await embed.aget_query_embedding("revenue")
    np.testing.assert_allclose(vectors, embed.get_text_embedding_batch(TEXTS), atol=1e-6)
    np.testing.assert_allclose(query, embed.get_query_embedding("revenue"), atol=1e-6)
    assert len(image) == len(query)


def test_vector_store_index_persists_and_reloads(embed, tiny_fp32, tmp_path):
    nodes = [  # the metadata stays out of the embedded text, so a node's own text is its best match
        TextNode(
            text=t, id_=f"n{i}", metadata={"group": ["even", "odd"][i % 2]}, excluded_embed_metadata_keys=["group"]
        )
        for i, t in enumerate(TEXTS)
    ]
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path, task="text-matching")
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)
    found = index.as_retriever(similarity_top_k=3).retrieve(TEXTS[5])
    assert found[0].node.node_id == "n5" and found[0].node.metadata == {"group": "odd"}
    answer = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(TEXTS[2])
    assert answer.source_nodes[0].node.node_id == "n2"
    store.close()

    reopened = VisdocVectorStore(tiny_fp32, data_dir=tmp_path, task="text-matching")
    index = VectorStoreIndex.from_vector_store(reopened, embed_model=embed)
    filters = MetadataFilters(filters=[MetadataFilter(key="group", value="even")])
    evens = index.as_retriever(similarity_top_k=10, filters=filters).retrieve(TEXTS[5])
    assert sorted(n.node.node_id for n in evens) == ["n0", "n2", "n4", "n6", "n8"]
    either = MetadataFilters(filters=[MetadataFilter(key="group", value=["odd"], operator=FilterOperator.IN)])
    assert len(index.as_retriever(similarity_top_k=10, filters=either).retrieve("x")) == 5
    with pytest.raises(ValueError, match="EQ and IN"):
        bad = MetadataFilters(filters=[MetadataFilter(key="group", value="a", operator=FilterOperator.GT)])
        index.as_retriever(filters=bad).retrieve("x")
    reopened.close()


def test_delete_by_ref_doc_id(embed, tiny_fp32, tmp_path):
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    docs = [Document(text="alpha " * 5, id_="doc-a"), Document(text="beta " * 5, id_="doc-b")]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)  # fmt: skip
    assert store.client.count() == 2
    index.delete_ref_doc("doc-a")
    assert store.client.count() == 1
    assert [n.ref_doc_id for n in store.get_nodes()] == ["doc-b"]
    store.close()


def test_multimodal_index_over_pdf_pages_persists_and_reloads(embed, tiny_fp32, tmp_path):
    pages = VisdocPDFReader().load_data(PDF)
    assert [p.metadata["page"] for p in pages] == [0, 1, 2] and pages[0].image
    assert "Financial highlights" in pages[1].text and pages[1].metadata["image_path"] == f"{PDF}#page=2"

    def stores():
        text = VisdocVectorStore(tiny_fp32, collection="text", data_dir=tmp_path)
        image = VisdocVectorStore(tiny_fp32, collection="pages", data_dir=tmp_path)
        return text, image

    text_store, image_store = stores()
    context = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    index = MultiModalVectorStoreIndex.from_documents(pages, storage_context=context, embed_model=embed,
                                                      image_embed_model=embed)  # fmt: skip
    assert image_store.client.count() == 3
    [node] = [r for r in image_store.client.iter_records() if r.payload["ref_doc_id"] == pages[2].doc_id]
    [record] = image_store.client.retrieve([node.id], with_vectors=True)
    core = tiny_fp32.encode_images([load_page_image(f"{PDF}#page=3")]).dense[0]
    np.testing.assert_allclose(record.dense, core, atol=1e-5)  # embedded from the page image
    hits = index.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("revenue by quarter")
    assert len(hits) == 2 and all(h.node.metadata["source"] == str(PDF) for h in hits)
    text_store.close()
    image_store.close()

    text_store, image_store = stores()
    reloaded = MultiModalVectorStoreIndex.from_vector_store(vector_store=text_store, image_vector_store=image_store,
                                                            embed_model=embed, image_embed_model=embed)  # fmt: skip
    again = reloaded.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("revenue by quarter")
    assert [h.node.node_id for h in again] == [h.node.node_id for h in hits]
    text_store.close()
    image_store.close()


def test_imports_do_not_load_torch():
    code = (
        "import sys, llama_index.embeddings.visdoc, llama_index.vector_stores.visdoc, llama_index.readers.visdoc; "
        "print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_collections_made_by_visdoc_ingest_can_be_queried(tiny_fp32, tmp_path):
    from llama_index.core.schema import ImageNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from visdoc.ingest import Ingestor
    from visdoc.store import CollectionSpec, open_store

    with open_store("pages", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path) as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([SAMPLES])
    llama = VisdocVectorStore(tiny_fp32, collection="pages", data_dir=tmp_path)
    result = llama.query(VectorStoreQuery(query_str="revenue", similarity_top_k=4))
    assert len(result.nodes) == 4 and all(isinstance(n, ImageNode) for n in result.nodes)
    assert all(n.metadata["source"].startswith(str(SAMPLES)) and n.image for n in result.nodes)  # page images
    llama.close()


def test_delete_and_get_nodes_combine_ids_and_filters(tiny_fp32, tmp_path):
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    store.add([TextNode(text=f"t{i}", id_=f"n{i}", metadata={"g": i % 2}) for i in range(6)])
    odd = MetadataFilters(filters=[MetadataFilter(key="g", value=1)])
    assert [n.node_id for n in store.get_nodes(["n3", "n0", "n1"])] == ["n3", "n0", "n1"]
    assert sorted(n.node_id for n in store.get_nodes(["n0", "n1", "n3"], filters=odd)) == ["n1", "n3"]
    store.delete_nodes([], filters=odd)  # an empty id list deletes nothing
    store.delete_nodes(["n0", "n1"], filters=odd)  # only n1 is in both
    assert sorted(n.node_id for n in store.get_nodes()) == ["n0", "n2", "n3", "n4", "n5"]
    store.close()


async def test_store_queries_do_not_block_the_event_loop(tiny_fp32, tmp_path, monkeypatch):
    from llama_index.core.vector_stores.types import VectorStoreQuery

    slowed(monkeypatch, VisdocVectorStore, "query")
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    await store.async_add([TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)])
    result, ticks = await ticks_while(store.aquery(VectorStoreQuery(query_str=TEXTS[3], similarity_top_k=2)))
    assert ticks > 5 and len(result.nodes) == 2
    store.close()
