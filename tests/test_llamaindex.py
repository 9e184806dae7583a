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
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
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


# -- what the store refuses, what restricts it -----------------------------------------------------


@pytest.fixture(autouse=True)
def _settings():
    """Every test starts with no ``Settings.embed_model`` (a store sets it then) and leaves it as it was."""
    from llama_index.core import Settings

    saved, Settings._embed_model = Settings._embed_model, None
    yield
    Settings._embed_model = saved


@pytest.fixture
def text_store(tiny_fp32, tmp_path):
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path, task="text-matching")
    store.add([TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)])
    yield store
    store.close()


OTHER_MODES = [mode for mode in VectorStoreQueryMode if mode != VectorStoreQueryMode.DEFAULT]


@pytest.mark.parametrize("mode", OTHER_MODES, ids=[m.value for m in OTHER_MODES])
def test_query_modes_other_than_default_are_refused(text_store, mode):
    with pytest.raises(ValueError, match=rf"vector_store_query_mode='{mode.value}'.*supported mode is 'default'"):
        text_store.query(VectorStoreQuery(query_str="revenue", mode=mode))
    index = VectorStoreIndex.from_vector_store(text_store)
    with pytest.raises(ValueError, match=mode.value):
        index.as_retriever(vector_store_query_mode=mode).retrieve("revenue")
    assert len(index.as_retriever(similarity_top_k=3).retrieve("revenue")) == 3  # the retriever's defaults pass


UNIMPLEMENTED = {"alpha": 0.5, "mmr_threshold": 0.2, "sparse_top_k": 3, "hybrid_top_k": 3, "output_fields": ["text"],
                 "embedding_field": "dense"}  # fmt: skip


@pytest.mark.parametrize("name", UNIMPLEMENTED)
def test_query_fields_that_are_not_implemented_are_refused_by_name(text_store, name):
    with pytest.raises(ValueError, match=f"VectorStoreQuery.{name}"):
        text_store.query(VectorStoreQuery(query_str="revenue", **{name: UNIMPLEMENTED[name]}))


def test_a_query_vector_alone_and_unknown_options_are_refused(text_store):
    with pytest.raises(ValueError, match="query_embedding without a query string"):
        text_store.query(VectorStoreQuery(query_embedding=[0.1] * 64, similarity_top_k=2))
    with pytest.raises(ValueError, match="pass a query string"):
        text_store.query(VectorStoreQuery(similarity_top_k=2))
    with pytest.raises(TypeError, match="mmr_prefetch_factor"):
        text_store.query(VectorStoreQuery(query_str="revenue"), mmr_prefetch_factor=4)
    result = text_store.query(VectorStoreQuery(query_str=TEXTS[4], similarity_top_k=2), prefetch=50)
    assert result.ids[0] == "n4"


def test_node_ids_restrict_the_search_and_an_empty_list_does_not(text_store):
    asked = ["n1", "n3", "n8"]
    result = text_store.query(VectorStoreQuery(query_str=TEXTS[5], similarity_top_k=10, node_ids=asked))
    assert sorted(result.ids) == asked
    both = text_store.query(VectorStoreQuery(query_str="x", similarity_top_k=10, node_ids=asked, doc_ids=["none"]))
    assert both.ids == []
    assert len(text_store.query(VectorStoreQuery(query_str=TEXTS[5], similarity_top_k=10, node_ids=[])).ids) == 10


# -- one forward pass per node ---------------------------------------------------------------------


def encoded(monkeypatch, model) -> list[tuple[str, str]]:  # noqa: ANN001 - a visdoc encoder
    """Every input ``model`` encodes from now on: ``(prompt or "image", text or the image's identity)``."""
    import hashlib

    seen: list[tuple[str, str]] = []
    texts, images = model.encode_texts, model.encode_images

    def identity(image) -> str:  # noqa: ANN001
        return hashlib.sha256(image).hexdigest() if isinstance(image, bytes) else str(image)

    def encode_texts(items, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.extend((kwargs.get("prompt_name", "query"), t) for t in items)
        return texts(items, **kwargs)

    def encode_images(items, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.extend(("image", identity(i)) for i in items)
        return images(items, **kwargs)

    monkeypatch.setattr(model, "encode_texts", encode_texts)
    monkeypatch.setattr(model, "encode_images", encode_images)
    return seen


def same_store_contents(store, baseline) -> None:  # noqa: ANN001
    """``store`` holds what ``baseline`` (which encoded every node itself) holds, vectors included."""
    ids = sorted(r.id for r in baseline.client.iter_records())
    assert sorted(r.id for r in store.client.iter_records()) == ids
    records = store.client.retrieve(ids, with_vectors=True)
    for ours, theirs in zip(records, baseline.client.retrieve(ids, with_vectors=True), strict=True):
        np.testing.assert_allclose(ours.dense, theirs.dense, atol=1e-6)
        np.testing.assert_allclose(ours.multivector, theirs.multivector, atol=2e-3)  # float16 storage


def store_alone(nodes, model, tmp_path, **kwargs) -> VisdocVectorStore:  # noqa: ANN001
    """A store that encoded ``nodes`` itself (copies without an embedding)."""
    store = VisdocVectorStore(model, data_dir=tmp_path / "baseline", **kwargs)
    store.add([n.model_copy(update={"embedding": None}) for n in nodes])
    return store


def test_vector_store_index_encodes_each_node_once(embed, tiny_fp32, tmp_path, monkeypatch):
    docs = [Document(text=t, id_=f"doc{i}") for i, t in enumerate(TEXTS)]
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    seen = encoded(monkeypatch, tiny_fp32)
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)  # fmt: skip
    nodes = store.get_nodes()
    assert sorted(seen) == sorted(("passage", n.get_content(metadata_mode="embed")) for n in nodes)  # once each
    baseline = store_alone(nodes, tiny_fp32, tmp_path)
    same_store_contents(store, baseline)
    for query in ("revenue", TEXTS[7]):
        ours = index.as_retriever(similarity_top_k=4).retrieve(query)
        theirs = baseline.query(VectorStoreQuery(query_str=query, similarity_top_k=4))
        assert [h.node.node_id for h in ours] == theirs.ids
        np.testing.assert_allclose([h.score for h in ours], theirs.similarities, atol=1e-4)
    store.close()
    baseline.close()


async def test_async_index_and_ingestion_pipeline_encode_each_node_once(embed, tiny_fp32, tmp_path, monkeypatch):
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path, collection="pipeline")
    seen = encoded(monkeypatch, tiny_fp32)
    docs = [Document(text=t, id_=f"doc{i}") for i, t in enumerate(TEXTS)]
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(), embed], vector_store=store)
    nodes = await pipeline.arun(documents=docs)
    assert sorted(seen) == sorted(("passage", n.get_content(metadata_mode="embed")) for n in nodes)
    seen.clear()
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    more = [TextNode(text=f"async note {i}", id_=f"a{i}") for i in range(3)]
    await index.ainsert_nodes(more)
    assert sorted(seen) == sorted(("passage", n.text) for n in more)
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("async note 2")
    assert store.client.count() == len(TEXTS) + 3 and len(hits) == 1
    store.close()


def test_multimodal_index_over_pdf_pages_encodes_each_text_and_page_once(embed, tiny_fp32, tmp_path, monkeypatch):
    import base64
    import hashlib

    pages = VisdocPDFReader().load_data(PDF)
    text_store = VisdocVectorStore(tiny_fp32, collection="text", data_dir=tmp_path)
    image_store = VisdocVectorStore(tiny_fp32, collection="pages", data_dir=tmp_path)
    seen = encoded(monkeypatch, tiny_fp32)
    context = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    index = MultiModalVectorStoreIndex.from_documents(pages, storage_context=context, embed_model=embed,
                                                      image_embed_model=embed)  # fmt: skip
    images = sorted(("image", hashlib.sha256(base64.b64decode(p.image)).hexdigest()) for p in pages)
    texts = sorted(("passage", n.get_content(metadata_mode="embed")) for n in text_store.get_nodes())
    assert sorted(seen) == sorted(images + texts)  # each page's text once, each page image once
    for store, name in ((text_store, "text"), (image_store, "pages")):
        baseline = store_alone(store.get_nodes(), tiny_fp32, tmp_path, collection=name)
        same_store_contents(store, baseline)
        baseline.close()
    hits = index.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("revenue by quarter")
    alone = store_alone(image_store.get_nodes(), tiny_fp32, tmp_path, collection="alone")
    expected = alone.query(VectorStoreQuery(query_str="revenue by quarter", similarity_top_k=2))
    assert [h.node.node_id for h in hits] == expected.ids
    np.testing.assert_allclose([h.score for h in hits], expected.similarities, atol=1e-4)
    for store in (text_store, image_store, alone):
        store.close()


def test_without_an_embed_model_the_store_encoder_is_used(tiny_fp32, tmp_path, monkeypatch, caplog):
    import importlib.util
    import logging

    from llama_index.core import Settings

    if importlib.util.find_spec("llama_index.embeddings.openai") is not None:
        pytest.skip("llama-index-embeddings-openai is installed: this checks a setup without it")
    with caplog.at_level(logging.INFO, logger="llama_index.vector_stores.visdoc"):
        store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    assert Settings.embed_model is store.embed_model and "Settings.embed_model" in caplog.text
    assert store.embed_model.model is tiny_fp32 and store.embed_model.task == store.task
    seen = encoded(monkeypatch, tiny_fp32)
    docs = [Document(text=t, id_=f"doc{i}") for i, t in enumerate(TEXTS)]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store))
    assert sorted(seen) == sorted(("passage", n.get_content(metadata_mode="embed")) for n in store.get_nodes())
    hits = index.as_retriever(similarity_top_k=2).retrieve(TEXTS[3])
    assert hits[0].node.ref_doc_id == "doc3"
    store.close()


def test_an_embed_model_the_user_set_is_kept(tiny_fp32, tmp_path):
    from llama_index.core import Settings
    from llama_index.core.embeddings import MockEmbedding

    mine = MockEmbedding(embed_dim=8)
    Settings.embed_model = mine
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    assert Settings.embed_model is mine
    store.close()


def test_a_store_naming_its_model_shares_it_with_its_embed_model(tmp_path, monkeypatch):
    from visdoc import JinaV4

    store = VisdocVectorStore(str(FIXTURE), data_dir=tmp_path)
    assert store.embed_model.model is store.model is JinaV4.shared(str(FIXTURE))
    seen = encoded(monkeypatch, store.model)
    user = JinaV4Embedding(str(FIXTURE))  # the user's own, naming the same checkpoint
    docs = [Document(text=t, id_=f"doc{i}") for i, t in enumerate(TEXTS[:4])]
    VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                    embed_model=user)  # fmt: skip
    assert len(seen) == 4
    store.close()


def test_the_encoding_memo_is_bounded_in_entries_and_bytes():
    """Encodings nobody collects (an index that never asks) cannot pile up: the oldest go first."""
    from llama_index.embeddings.visdoc.memo import Memo, text_key

    from visdoc.encoder import EncodedItem

    def item(seed: int) -> EncodedItem:
        rng = np.random.default_rng(seed)
        return EncodedItem(rng.standard_normal(16, dtype=np.float32), np.ones((100, 128), np.float32), 100, None, None)

    size = 16 * 4 + 100 * 128 * 4
    memo = Memo(max_entries=10, max_bytes=3 * size)
    items = [item(i) for i in range(5)]
    for i, encoded in enumerate(items):
        memo.put(text_key("retrieval", "passage", 16, f"text {i}"), encoded)
    assert memo.nbytes == 3 * size
    assert memo.take(text_key("retrieval", "passage", 16, "text 0"), items[0].dense.tolist()) is None  # dropped
    taken = memo.take(text_key("retrieval", "passage", 16, "text 4"), items[4].dense.tolist())
    assert taken is items[4] and memo.nbytes == 2 * size
    assert memo.take(text_key("retrieval", "passage", 16, "text 3"), items[2].dense.tolist()) is None  # not its vector
    few = Memo(max_entries=2)
    for i, encoded in enumerate(items):
        few.put(text_key("retrieval", "passage", 16, f"text {i}"), encoded)
    assert few.nbytes == 2 * size
