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
