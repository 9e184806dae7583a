"""LangChain integration: the official langchain-tests suites plus visdoc-specific behaviour."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from conftest import FIXTURE
from langchain_visdoc import JinaV4Embeddings, VisdocPDFLoader, VisdocRetriever, VisdocVectorStore
from visdoc.points import point_id_for

SAMPLES = FIXTURE.parents[2] / "examples" / "data"


class TinyEmbeddings:
    """The standard suites' parameters: the tiny checkpoint."""

    @property
    def embeddings_class(self) -> type[JinaV4Embeddings]:
        return JinaV4Embeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": str(FIXTURE)}


class TestEmbeddingsUnit(TinyEmbeddings, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"VISDOC_MODEL": str(FIXTURE)}, {}, {"model_name": str(FIXTURE)}


class TestEmbeddingsIntegration(TinyEmbeddings, EmbeddingsIntegrationTests):
    pass


class TestVectorStore(VectorStoreIntegrationTests):
    """Symmetric text-matching task: identical texts score highest, as the suite expects."""

    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = VisdocVectorStore(JinaV4Embeddings(str(FIXTURE), task="text-matching"), data_dir=tmp_path)
        yield store
        store.close()


class TestRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, tmp_path):
        store = VisdocVectorStore(JinaV4Embeddings(str(FIXTURE), task="text-matching"), data_dir=tmp_path)
        store.add_texts(["invoices and receipts", "quarterly revenue chart", "organisation chart", "printer"])
        self.__class__._vectorstore = store
        yield
        store.close()

    @property
    def retriever_constructor(self) -> type[VisdocRetriever]:
        return VisdocRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"vectorstore": self._vectorstore}

    @property
    def retriever_query_example(self) -> str:
        return "revenue by quarter"


@pytest.fixture
def page_store(tmp_path):
    store = VisdocVectorStore(JinaV4Embeddings(str(FIXTURE)), data_dir=tmp_path)
    yield store
    store.close()


def test_pdf_loader_yields_pages_with_langchain_metadata():
    pdf = SAMPLES / "annual-report.pdf"
    pages = list(VisdocPDFLoader(pdf).lazy_load())
    assert [p.metadata["page"] for p in pages] == [0, 1, 2]
    title = "Northwind Traders Annual Report 2025"
    expected = {"source": str(pdf), "page": 1, "total_pages": 3, "page_label": "2", "image_path": f"{pdf}#page=2"}
    assert pages[1].metadata == expected | {"title": title}
    assert "Financial highlights" in pages[1].page_content


def test_loaded_pages_are_embedded_as_images_and_come_back_with_their_metadata(page_store):
    pdf = SAMPLES / "annual-report.pdf"
    pages = VisdocPDFLoader(pdf).load()
    ids = page_store.add_documents(pages)
    found = page_store.similarity_search("revenue by quarter", k=3)
    assert {d.id for d in found} == set(ids)
    by_id = {d.id: d for d in page_store.get_by_ids(ids)}
    assert by_id[ids[2]].metadata == pages[2].metadata and by_id[ids[2]].page_content == pages[2].page_content
    record = page_store.store.retrieve([point_id_for(ids[2])], with_vectors=True)[0]
    core = (
        page_store.embedding.model.encode_images([pdf.parent / "annual-report.pdf"], multivector=True)
        if False
        else None
    )
    assert core is None and record.payload["kind"] == "page_image"


def test_framework_vectors_equal_the_core_output(page_store):
    model = page_store.embedding.model
    texts = ["quarterly revenue", "organisation chart"]
    np.testing.assert_allclose(page_store.embedding.embed_documents(texts),
                               model.encode_texts(texts, prompt_name="passage").dense, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(page_store.embedding.embed_query(texts[0]),
                               model.encode_texts(texts[:1], prompt_name="query").dense[0], atol=1e-6)  # fmt: skip
    image = str(SAMPLES / "sample-page.png")
    np.testing.assert_allclose(page_store.embedding.embed_image(uris=[image]), model.encode_images([image]).dense,
                               atol=1e-6)  # fmt: skip
    assert page_store.embedding.embed_images([image]) == page_store.embedding.embed_image([image])
    [doc_id] = page_store.add_images([image])
    [stored] = page_store.store.retrieve([point_id_for(doc_id)], with_vectors=True)
    expected = model.encode_images([image], multivector=True)
    np.testing.assert_allclose(stored.dense, expected.dense[0], atol=1e-5)
    np.testing.assert_allclose(stored.multivector, expected.multivector[0], atol=2e-3)  # float16 storage


def test_ingested_pdfs_filters_and_relevance_scores(page_store):
    report = page_store.add_pdfs([SAMPLES], workers=0)
    assert report.pages_stored == 4 and not report.problems
    pdf = str(SAMPLES / "annual-report.pdf")
    docs = page_store.similarity_search("revenue", k=10, filter={"source": pdf})
    assert len(docs) == 3 and all(d.metadata["source"] == pdf for d in docs)
    assert all(d.metadata["image_path"].startswith(pdf + "#page=") for d in docs)
    assert set(docs[0].metadata) == {"source", "page", "total_pages", "page_label", "image_path", "title",
                                     "document_id"}  # fmt: skip
    two = page_store.similarity_search("revenue", k=10, filter={"page": [0, 2]})
    assert sorted(d.metadata["page"] for d in two) == [0, 0, 2]  # PDF pages 0 and 2, and the image (page 0)
    scored = page_store.similarity_search_with_relevance_scores("revenue", k=4)
    assert all(0 <= score <= 1 for _, score in scored)
    retriever = page_store.as_retriever(search_kwargs={"k": 2, "filter": {"source": pdf}})
    assert len(retriever.invoke("revenue")) == 2


def test_only_jina_embeddings_can_back_the_store(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.raises(TypeError, match="JinaV4Embeddings"):
        VisdocVectorStore(DeterministicFakeEmbedding(size=8), data_dir=tmp_path)


def test_models_are_shared_between_objects():
    a, b = JinaV4Embeddings(str(FIXTURE)), JinaV4Embeddings(str(FIXTURE), task="code")
    assert a.model is b.model


def test_import_does_not_load_torch():
    code = "import sys, langchain_visdoc; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_documents_keep_ids_and_metadata_exactly(tmp_path):
    store = VisdocVectorStore(JinaV4Embeddings(str(FIXTURE), task="text-matching"), data_dir=tmp_path)
    doc = Document(page_content="hello", metadata={"a": 1, "nested": {"b": [1, 2]}}, id="custom-id")
    assert store.add_documents([doc]) == ["custom-id"]
    assert store.get_by_ids(["custom-id"]) == [doc]
    store.close()


# -- langchain-qdrant's arguments ------------------------------------------------------------------

TEXTS = ["invoices and receipts", "quarterly revenue chart", "organisation chart", "printer cartridges", "travel"]


@pytest.fixture(scope="module")
def matching(tiny_fp32) -> JinaV4Embeddings:
    return JinaV4Embeddings(tiny_fp32, task="text-matching")


def test_from_texts_in_memory_as_with_langchain_qdrant(matching):
    from qdrant_client import QdrantClient

    from visdoc.store.server import ServerStore

    store = VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:", collection_name="notes")
    assert isinstance(store.store, ServerStore) and store.store.name == "notes"
    assert isinstance(store.store.client, QdrantClient) and store.store.client.init_options["location"] == ":memory:"
    assert store.similarity_search(TEXTS[3], k=1)[0].page_content == TEXTS[3]
    other = VisdocVectorStore.from_texts(TEXTS[:2], matching, location=":memory:", collection_name="notes")
    assert len(other.similarity_search(TEXTS[3], k=10)) == 2  # each in-memory store is its own
    store.close()
    other.close()


async def test_from_documents_and_afrom_texts_take_the_same_arguments(matching, tmp_path):
    docs = [Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)]
    store = VisdocVectorStore.from_documents(docs, matching, path=tmp_path, collection_name="docs", batch_size=2)
    assert (tmp_path / "docs").is_dir() and store.store.name == "docs"  # path= is the embedded store's folder
    assert store.similarity_search(TEXTS[1], k=1)[0].id == "d1"
    store.close()
    store = await VisdocVectorStore.afrom_texts(TEXTS, matching, location=":memory:", ids=["a", "b", "c", "d", "e"])
    assert (await store.asimilarity_search(TEXTS[4], k=1))[0].id == "e"
    store.close()


def test_texts_are_added_batch_size_at_a_time(matching, monkeypatch):
    calls, original = [], matching.model.encode_texts

    def encode_texts(texts, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append(len(texts))
        return original(texts, **kwargs)

    monkeypatch.setattr(matching.model, "encode_texts", encode_texts)
    store = VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:", batch_size=2)
    assert calls == [2, 2, 1]
    store.close()


def test_connection_arguments_mean_what_they_mean_in_langchain_qdrant(tmp_path, monkeypatch):
    import qdrant_client

    from langchain_visdoc.connection import connection_options

    options, client = connection_options({"location": "http://qdrant:6333", "api_key": "k", "prefer_grpc": False})
    assert options == {"collection": "langchain", "url": "http://qdrant:6333", "api_key": "k", "prefer_grpc": False}
    assert client is None
    options, client = connection_options({"path": tmp_path, "collection_name": "c", "force_recreate": False})
    assert options == {"collection": "c", "data_dir": tmp_path} and client is None
    built = []  # the QdrantClient langchain-qdrant would build (not made here: it would try to reach the host)
    monkeypatch.setattr(qdrant_client, "QdrantClient", lambda **kwargs: built.append(kwargs) or "client")
    options, client = connection_options({"host": "qdrant", "port": 7333, "https": True, "data_dir": "visdoc_data"})
    assert options == {"collection": "langchain", "client": "client"} and client == "client"  # a server wins
    assert built == [{"host": "qdrant", "port": 7333, "https": True}]
    with pytest.raises(ValueError, match="one place"):
        connection_options({"location": ":memory:", "url": "http://qdrant:6333"})
    with pytest.raises(TypeError, match="collection= or collection_name="):
        connection_options({"collection": "a", "collection_name": "b"})


REFUSED = {"force_recreate": True, "sparse_embedding": object(), "vector_name": "v", "distance": "Dot",
           "content_payload_key": "c", "metadata_payload_key": "m", "vector_params": {}, "sparse_vector_name": "s",
           "collection_create_options": {}, "validate_embeddings": False}  # fmt: skip


@pytest.mark.parametrize("name", REFUSED)
async def test_langchain_qdrant_arguments_visdoc_does_not_implement_are_refused(matching, name):
    argument = {name: REFUSED[name]}
    with pytest.raises(TypeError, match=f"does not implement langchain-qdrant's {name}="):
        VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:", **argument)
    with pytest.raises(TypeError, match=f"{name}="):
        VisdocVectorStore.from_documents([Document(page_content="x")], matching, location=":memory:", **argument)
    with pytest.raises(TypeError, match=f"{name}="):
        await VisdocVectorStore.afrom_texts(TEXTS, matching, location=":memory:", **argument)


def test_sparse_embeddings_are_refused_saying_visdoc_computes_its_lexical_vectors(matching):
    with pytest.raises(TypeError, match="computes each page's and chunk's lexical \\(BM25\\) vector itself"):
        VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:", sparse_embedding=object())


async def test_search_by_a_bare_vector_says_the_store_needs_the_query_text(matching):
    store = VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:")
    with pytest.raises(NotImplementedError, match=r"MMR\) from a bare vector.*max_marginal_relevance_search\(query\)"):
        store.max_marginal_relevance_search_by_vector([0.1] * 64, k=2)
    with pytest.raises(NotImplementedError, match="from a bare vector"):
        await store.amax_marginal_relevance_search_by_vector([0.1] * 64, k=2)
    with pytest.raises(NotImplementedError, match="use similarity_search"):
        store.similarity_search_by_vector([0.1] * 64, k=2)
    with pytest.raises(NotImplementedError, match="use similarity_search"):
        await store.asimilarity_search_by_vector([0.1] * 64, k=2)
    store.close()


# -- MMR, retrieval modes --------------------------------------------------------------------------

# an exact code in one text: the tiny checkpoint's vectors are random, so only the lexical stage finds it reliably
CODE_TEXTS = ["Quarterly revenue grew in the north region", "Invoice INV-2025-0042 for printer cartridges",
              "Organisation chart of the sales team", "Travel policy for staff abroad", "Minutes of the board meeting",
              "Purchase order for toner and paper", "Warehouse stock levels by site", "Credit note for a returned item",
              "Payment terms and late fees", "Customer list for the west region"]  # fmt: skip
CODE_QUERY = "inv 2025 0042"  # as a user types it
# near-duplicates: four copies each of three texts
DUPLICATED = [t for t in CODE_TEXTS[:3] for _ in range(4)]


def where(place: str, tmp_path) -> dict:
    return {"location": ":memory:"} if place == "memory" else {"data_dir": tmp_path}


def repeats(docs: list[Document]) -> int:
    return len(docs) - len({d.page_content for d in docs})


@pytest.mark.parametrize("place", ["embedded", "memory"])
async def test_mmr_returns_fewer_duplicates_than_similarity_search(matching, tmp_path, place):
    store = VisdocVectorStore.from_texts(DUPLICATED, matching, **where(place, tmp_path))
    similar = store.similarity_search(CODE_TEXTS[1], k=4)
    diverse = store.max_marginal_relevance_search(CODE_TEXTS[1], k=4, fetch_k=12, lambda_mult=0.3)
    assert repeats(similar) == 3  # the four copies of the text asked for
    assert diverse[0].page_content == CODE_TEXTS[1] and repeats(diverse) < repeats(similar)
    relevance_only = store.max_marginal_relevance_search(CODE_TEXTS[1], k=4, fetch_k=12, lambda_mult=1.0)
    assert {d.id for d in relevance_only} == {d.id for d in similar}
    limited = store.max_marginal_relevance_search(CODE_TEXTS[1], k=4, fetch_k=12, lambda_mult=0.3,
                                                  filter={"group": "none"})  # fmt: skip
    assert limited == []
    adiverse = await store.amax_marginal_relevance_search(CODE_TEXTS[1], k=4, fetch_k=12, lambda_mult=0.3)
    assert [d.page_content for d in adiverse] == [d.page_content for d in diverse]  # copies tie: compare texts
    store.close()


async def test_mmr_through_as_retriever(matching):
    store = VisdocVectorStore.from_texts(DUPLICATED, matching, location=":memory:")
    kwargs = {"k": 4, "fetch_k": 12, "lambda_mult": 0.3}
    found = store.as_retriever(search_type="mmr", search_kwargs=kwargs).invoke(CODE_TEXTS[1])
    assert len(found) == 4 and repeats(found) < 3
    afound = await store.as_retriever(search_type="mmr", search_kwargs=kwargs).ainvoke(CODE_TEXTS[1])
    assert [d.page_content for d in afound] == [d.page_content for d in found]
    similar = store.as_retriever(search_kwargs={"k": 4}).invoke(CODE_TEXTS[1])
    assert repeats(similar) == 3
    with pytest.raises(TypeError, match="does not take mode="):
        store.max_marginal_relevance_search("x", mode="hybrid")
    with pytest.raises(ValueError, match="mmr_lambda must be between 0 and 1"):
        store.max_marginal_relevance_search("x", lambda_mult=1.5)
    store.close()


@pytest.mark.parametrize("place", ["embedded", "memory"])
@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
def test_sparse_and_hybrid_retrieval_find_an_exact_code_at_rank_1(tiny_fp32, tmp_path, place, mode):
    store = VisdocVectorStore.from_texts(CODE_TEXTS, JinaV4Embeddings(tiny_fp32), retrieval_mode=mode,
                                         **where(place, tmp_path))  # fmt: skip
    found = store.similarity_search_with_relevance_scores(CODE_QUERY, k=3)
    assert found[0][0].page_content == CODE_TEXTS[1]
    assert all(0 <= score <= 1 for _, score in found) and found[0][1] > 0.5
    if mode == "sparse":
        assert len(found) == 1  # no other text holds a term of the query
    store.close()


def test_retrieval_mode_takes_the_enums_and_strings_and_mode_is_per_call(matching):
    from langchain_qdrant import RetrievalMode as QdrantRetrievalMode

    from langchain_visdoc import RetrievalMode

    for value in (QdrantRetrievalMode.SPARSE, RetrievalMode.SPARSE, "sparse", "SPARSE"):
        store = VisdocVectorStore(matching, location=":memory:", retrieval_mode=value)
        assert store.retrieval_mode is RetrievalMode.SPARSE
        store.close()
    with pytest.raises(ValueError, match="unknown retrieval_mode 'bm25'.*'dense'.*'sparse'.*'hybrid'"):
        VisdocVectorStore(matching, location=":memory:", retrieval_mode="bm25")
    store = VisdocVectorStore.from_texts(CODE_TEXTS, matching, location=":memory:", retrieval_mode="hybrid")
    assert [d.page_content for d in store.similarity_search(CODE_QUERY, k=5, mode="lexical")] == [CODE_TEXTS[1]]
    for mode in ("rerank", "dense", "multivector", "lexical", "hybrid", "mmr"):
        scored = store.similarity_search_with_relevance_scores(CODE_QUERY, k=4, mode=mode)
        assert scored and all(0 <= score <= 1 for _, score in scored), mode
    with pytest.raises(ValueError, match="unknown search mode 'sparse'"):
        store.similarity_search(CODE_QUERY, mode="sparse")  # visdoc's names per call; retrieval_mode's in the store
    store.close()


def test_hybrid_fusion_as_in_langchain_qdrant_and_relevance_of_every_mode(matching):
    from qdrant_client import models

    from visdoc.store import Fusion

    store = VisdocVectorStore.from_texts(CODE_TEXTS, matching, location=":memory:", retrieval_mode="hybrid")
    dbsf = models.FusionQuery(fusion=models.Fusion.DBSF)
    for fusion in ({"hybrid_fusion": dbsf}, {"fusion": Fusion("rrf", k=10, weights=(2.0, 1.0))}):
        scored = store.similarity_search_with_relevance_scores(CODE_QUERY, k=4, **fusion)
        assert scored[0][0].page_content == CODE_TEXTS[1] and all(0 <= s <= 1 for _, s in scored)
    with pytest.raises(TypeError, match="hybrid_fusion must be"):
        store.similarity_search(CODE_QUERY, hybrid_fusion="rrf")
    only_stop_words = store.similarity_search_with_relevance_scores("the of and", k=3)  # hybrid runs as rerank
    assert len(only_stop_words) == 3 and all(0 <= s <= 1 for _, s in only_stop_words)
    store.close()


def test_a_collection_made_before_lexical_vectors_answers_every_retrieval_mode(matching, tmp_path, caplog):
    from visdoc.store import CollectionSpec, open_store

    spec = CollectionSpec(dim=matching.model.dims[-1], model=matching.model.name, task=matching.task, lexical=False)
    old = open_store("old", spec, data_dir=tmp_path)
    store = VisdocVectorStore(matching, store=old, retrieval_mode="hybrid")
    store.add_texts(CODE_TEXTS)
    scored = store.similarity_search_with_relevance_scores(CODE_QUERY, k=3)  # runs as rerank: MaxSim relevance
    assert len(scored) == 3 and all(0 <= s <= 1 for _, s in scored)
    assert store.similarity_search(CODE_QUERY, k=3, mode="lexical") == []
    assert "add_lexical()" in caplog.text
    old.add_lexical()  # the text is indexed; nothing is embedded again
    assert [d.page_content for d in store.similarity_search(CODE_QUERY, k=3, mode="lexical")] == [CODE_TEXTS[1]]
    assert store.similarity_search(CODE_QUERY, k=3)[0].page_content == CODE_TEXTS[1]
    store.close()


def test_options_the_store_does_not_take_are_refused(matching):
    store = VisdocVectorStore.from_texts(TEXTS, matching, location=":memory:")
    with pytest.raises(TypeError, match="fetch_k"):
        store.similarity_search("revenue", k=2, fetch_k=10)
    with pytest.raises(TypeError, match="score_function"):
        store.add_texts(["x"], score_function="dot")
    assert len(store.similarity_search("revenue", k=2, prefetch=50)) == 2
    store.close()
