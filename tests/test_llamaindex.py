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


SUPPORTED_MODES = {VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.HYBRID, VectorStoreQueryMode.MMR,
                   VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE}  # fmt: skip
OTHER_MODES = [mode for mode in VectorStoreQueryMode if mode not in SUPPORTED_MODES]


@pytest.mark.parametrize("mode", OTHER_MODES, ids=[m.value for m in OTHER_MODES])
def test_query_modes_visdoc_does_not_implement_are_refused(text_store, mode):
    with pytest.raises(ValueError, match=rf"vector_store_query_mode='{mode.value}'.*its modes are 'default'.*'hybrid'"
                                         r".*'mmr'.*'text_search' and 'sparse'"):  # fmt: skip
        text_store.query(VectorStoreQuery(query_str="revenue", mode=mode))
    index = VectorStoreIndex.from_vector_store(text_store)
    with pytest.raises(ValueError, match=mode.value):
        index.as_retriever(vector_store_query_mode=mode).retrieve("revenue")
    assert len(index.as_retriever(similarity_top_k=3).retrieve("revenue")) == 3  # the retriever's defaults pass


UNIMPLEMENTED = {"alpha": 0.5, "mmr_threshold": 0.2, "sparse_top_k": 3, "hybrid_top_k": 3, "output_fields": ["text"],
                 "embedding_field": "dense"}  # fmt: skip


@pytest.mark.parametrize("name", UNIMPLEMENTED)
def test_query_fields_that_do_not_apply_to_the_default_mode_are_refused_by_name(text_store, name):
    with pytest.raises(ValueError, match=f"VectorStoreQuery.{name} in mode 'default'"):
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


# -- hybrid, MMR, text search ----------------------------------------------------------------------

# an exact code in one node: the tiny checkpoint's vectors are random, so only the lexical stage finds it reliably
CODE_TEXTS = ["Quarterly revenue grew in the north region", "Invoice INV-2025-0042 for printer cartridges",
              "Organisation chart of the sales team", "Travel policy for staff abroad", "Minutes of the board meeting",
              "Purchase order for toner and paper", "Warehouse stock levels by site", "Credit note for a returned item",
              "Payment terms and late fees", "Customer list for the west region"]  # fmt: skip
CODE_QUERY = "inv 2025 0042"  # as a user types it


@pytest.fixture
def code_index(tiny_fp32, tmp_path):
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path)
    nodes = [TextNode(text=t, id_=f"c{i}") for i, t in enumerate(CODE_TEXTS)]
    store.add(nodes)
    yield VectorStoreIndex.from_vector_store(store)
    store.close()


@pytest.mark.parametrize("mode", ["text_search", "sparse"])
async def test_text_search_and_sparse_find_an_exact_code(code_index, mode):
    found = code_index.as_retriever(vector_store_query_mode=mode, similarity_top_k=5).retrieve(CODE_QUERY)
    assert [n.node.node_id for n in found] == ["c1"]  # no other node holds a term of the query
    assert found[0].score > 0
    afound = await code_index.as_retriever(vector_store_query_mode=mode).aretrieve(CODE_QUERY)
    assert [n.node.node_id for n in afound] == ["c1"]
    store = code_index.vector_store
    assert store.query(VectorStoreQuery(query_str="the of and", mode=mode)).ids == []  # only stop words
    by_sparse_top_k = store.query(VectorStoreQuery(query_str="invoice region", mode=mode, sparse_top_k=2))
    assert len(by_sparse_top_k.ids) == 2 and set(by_sparse_top_k.ids) <= {"c0", "c1", "c9"}  # invoice, region


async def test_hybrid_through_the_retriever_finds_an_exact_code_at_rank_1(code_index):
    retriever = code_index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5, similarity_top_k=4)
    found = retriever.retrieve(CODE_QUERY)
    assert found[0].node.node_id == "c1" and len(found) == 4
    assert [n.node.node_id for n in await retriever.aretrieve(CODE_QUERY)] == [n.node.node_id for n in found]
    for alpha in (None, 0.0, 0.3):  # up to equal weights: the text list's only hit comes first
        top = code_index.as_retriever(vector_store_query_mode="hybrid", alpha=alpha).retrieve(CODE_QUERY)
        assert top[0].node.node_id == "c1", alpha
    fused = code_index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=4, hybrid_top_k=2,
                                    sparse_top_k=5).retrieve(CODE_QUERY)  # fmt: skip
    assert [n.node.node_id for n in fused][:1] == ["c1"] and len(fused) == 2  # hybrid_top_k: the fused list's size


def test_hybrid_fields_map_to_the_store_search(code_index, monkeypatch):
    from visdoc.store import Fusion

    store = code_index.vector_store
    calls = []
    search = store.client.search
    monkeypatch.setattr(store.client, "search", lambda vectors, **kw: calls.append((vectors, kw)) or search(vectors,
                                                                                                         **kw))
    query = VectorStoreQuery(query_str=CODE_QUERY, mode="hybrid", similarity_top_k=3, alpha=0.25, sparse_top_k=7)
    store.query(query)
    vectors, options = calls[-1]
    assert vectors.text == CODE_QUERY and options["mode"] == "hybrid" and options["k"] == 3
    assert options["lexical_prefetch"] == 7
    fusion = options["fusion"]  # (1 - alpha, alpha), scaled so the larger is 1
    assert (fusion.method, fusion.k, fusion.weights) == ("rrf", Fusion().k, (1.0, pytest.approx(1 / 3)))
    store.query(VectorStoreQuery(query_str=CODE_QUERY, mode="hybrid"), fusion=Fusion("dbsf"))
    assert calls[-1][1]["fusion"].method == "dbsf" and calls[-1][1]["fusion"].weights == (1.0, 1.0)
    store.query(VectorStoreQuery(query_str=CODE_QUERY, mode="hybrid"), fusion=Fusion("rrf", k=10, weights=(2.0, 1.0)))
    assert calls[-1][1]["fusion"] == Fusion("rrf", k=10, weights=(2.0, 1.0))  # its own weights, without alpha


def test_alpha_weighs_the_lists_as_llama_index_means_it():
    from llama_index.vector_stores.visdoc.queries import alpha_weights

    assert alpha_weights(0.5) == (1.0, 1.0)  # the store's measured default
    assert alpha_weights(1.0) == (0.0, 1.0) and alpha_weights(0.0) == (1.0, 0.0)  # vectors only, text only
    assert alpha_weights(0.75) == (pytest.approx(1 / 3), 1.0)
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="alpha must be between 0"):
            alpha_weights(bad)


DUPLICATED = [t for t in CODE_TEXTS[:3] for _ in range(4)]  # four copies each of three texts


async def test_mmr_through_the_retriever_returns_fewer_duplicates(tiny_fp32, tmp_path):
    store = VisdocVectorStore(tiny_fp32, data_dir=tmp_path, task="text-matching")
    store.add([TextNode(text=t, id_=f"d{i}") for i, t in enumerate(DUPLICATED)])
    index = VectorStoreIndex.from_vector_store(store)

    def texts(found) -> list[str]:  # noqa: ANN001
        return [n.node.get_content() for n in found]

    def repeats(found) -> int:  # noqa: ANN001
        return len(found) - len(set(texts(found)))

    similar = index.as_retriever(similarity_top_k=4).retrieve(CODE_TEXTS[1])
    assert repeats(similar) == 3  # the four copies of the text asked for
    diverse = index.as_retriever(vector_store_query_mode="mmr", similarity_top_k=4,
                                 vector_store_kwargs={"mmr_threshold": 0.3}).retrieve(CODE_TEXTS[1])  # fmt: skip
    assert texts(diverse)[0] == CODE_TEXTS[1] and repeats(diverse) < repeats(similar)
    retriever = index.as_retriever(vector_store_query_mode="mmr", similarity_top_k=4,
                                   vector_store_kwargs={"mmr_threshold": 0.3})  # fmt: skip
    adiverse = await retriever.aretrieve(CODE_TEXTS[1])
    assert texts(adiverse) == texts(diverse)
    field = store.query(VectorStoreQuery(query_str=CODE_TEXTS[1], mode="mmr", similarity_top_k=4, mmr_threshold=0.3),
                        mmr_prefetch_k=12)  # fmt: skip
    assert [n.get_content() for n in field.nodes] == texts(diverse)
    relevance_only = index.as_retriever(vector_store_query_mode="mmr", similarity_top_k=4,
                                        vector_store_kwargs={"mmr_threshold": 1.0}).retrieve(CODE_TEXTS[1])  # fmt: skip
    assert repeats(relevance_only) == 3
    default = index.as_retriever(vector_store_query_mode="mmr", similarity_top_k=4).retrieve(CODE_TEXTS[1])
    assert len(default) == 4  # mmr_threshold 0.5 when not given
    store.close()


def test_mmr_options_map_to_the_store_search(text_store, monkeypatch):
    calls = []
    search = text_store.client.search
    monkeypatch.setattr(text_store.client, "search", lambda vectors, **kw: calls.append(kw) or search(vectors, **kw))
    text_store.query(VectorStoreQuery(query_str="revenue", mode="mmr", similarity_top_k=3), mmr_prefetch_factor=2.5)
    assert calls[-1]["mode"] == "mmr" and calls[-1]["mmr_lambda"] == 0.5 and calls[-1]["mmr_candidates"] == 8
    text_store.query(VectorStoreQuery(query_str="revenue", mode="mmr", mmr_threshold=0.2), mmr_prefetch_k=9)
    assert calls[-1]["mmr_lambda"] == 0.2 and calls[-1]["mmr_candidates"] == 9


MISFITS = [  # (mode, VectorStoreQuery fields, query keywords, error, message)
    ("default", {"alpha": 0.5}, {}, ValueError, r"VectorStoreQuery.alpha in mode 'default'.*applies in mode 'hybrid'"),
    ("mmr", {"alpha": 0.5}, {}, ValueError, r"VectorStoreQuery.alpha in mode 'mmr'"),
    ("hybrid", {"mmr_threshold": 0.5}, {}, ValueError, r"VectorStoreQuery.mmr_threshold in mode 'hybrid'.*'mmr'"),
    ("text_search", {"alpha": 0.5}, {}, ValueError, r"VectorStoreQuery.alpha in mode 'text_search'"),
    ("sparse", {"hybrid_top_k": 3}, {}, ValueError, r"VectorStoreQuery.hybrid_top_k in mode 'sparse'"),
    ("hybrid", {"output_fields": ["text"]}, {}, ValueError, r"output_fields .*does not implement it"),
    ("default", {}, {"mmr_threshold": 0.3}, TypeError, r"does not take \['mmr_threshold'\] in mode 'default'"),
    ("hybrid", {}, {"mmr_prefetch_k": 9}, TypeError, r"does not take \['mmr_prefetch_k'\] in mode 'hybrid'"),
    ("mmr", {}, {"fusion": None}, TypeError, r"does not take \['fusion'\] in mode 'mmr'"),
    ("hybrid", {"alpha": 1.5}, {}, ValueError, "alpha must be between 0"),
    ("hybrid", {"sparse_top_k": -1}, {}, ValueError, "sparse_top_k must be a whole number"),
    ("hybrid", {}, {"fusion": "rrf"}, TypeError, "fusion must be a visdoc.store.Fusion"),
    ("mmr", {"mmr_threshold": 2}, {}, ValueError, "mmr_threshold must be between 0"),
    ("mmr", {"mmr_threshold": 0.2}, {"mmr_threshold": 0.4}, ValueError, "mmr_threshold given twice"),
    ("mmr", {}, {"mmr_prefetch_k": 9, "mmr_prefetch_factor": 2}, ValueError, "not both"),
    ("mmr", {}, {"mmr_prefetch_factor": 0}, ValueError, "mmr_prefetch_factor must be a number above 0"),
]


@pytest.mark.parametrize(("mode", "fields", "options", "error", "message"), MISFITS,
                         ids=[f"{m[0]}-{'-'.join([*m[1], *m[2]])}" for m in MISFITS])  # fmt: skip
def test_fields_and_options_that_do_not_fit_the_mode_are_refused_by_name(text_store, mode, fields, options, error,
                                                                         message):  # fmt: skip
    with pytest.raises(error, match=message):
        text_store.query(VectorStoreQuery(query_str="revenue", mode=mode, **fields), **options)


def test_alpha_and_fusion_weights_or_dbsf_are_refused_together(text_store):
    from visdoc.store import Fusion

    query = VectorStoreQuery(query_str="revenue", mode="hybrid", alpha=0.3)
    with pytest.raises(ValueError, match="alpha or the fusion's weights, not both"):
        text_store.query(query, fusion=Fusion(weights=(2.0, 1.0)))
    with pytest.raises(ValueError, match="DBSF fusion takes no weights"):
        text_store.query(query, fusion=Fusion("dbsf"))
