"""Lexical (BM25), hybrid and MMR search on both backends: the embedded engine (also through its
engine process) and qdrant-client's local mode, whose request is the one a Qdrant server gets."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

from visdoc import lexical
from visdoc.points import TEXT
from visdoc.store import (
    SPEC_FILE,
    CollectionSpec,
    Fusion,
    PageFilter,
    PagePoint,
    QueryVectors,
    open_store,
    point_id,
)

DIM = 32
PAGES = {  # text of the pages that matter; the others get filler
    "inv42": "Invoice INV-2025-0042 for electricity, due in March.",
    "inv43": "Reminder: invoice INV-2025-0043 is overdue.",
    "part": "Spare part ZX-4471-Q shipped to the warehouse in Rotterdam.",
    "name": "Signed by Siobhán Ní Bhriain, head of procurement.",
    "cyrillic": "Счёт за электроэнергию за март",
    "cjk": "東京都庁の会議資料と予算案",
    "greek": "Τιμολόγιο ηλεκτρικού ρεύματος",
    "arabic": "فَاتُورَة الكهرباء لشهر مارس",
    "ligature": "The ﬁle reference is ＲＥＦ－７７１.",
    "empty": "",
    "punctuation": "... --- !!! ???",
}
QUERIES = {  # typed as users type them
    "inv-2025-0042": "inv42",
    "INV 2025 0042": "inv42",
    "inv 2025 0043": "inv43",
    "zx 4471 q": "part",
    "ZX-4471-Q warehouse": "part",
    "siobhan bhriain": "name",
    "счет электроэнергию": "cyrillic",
    "東京": "cjk",
    "予算": "cjk",
    "τιμολογιο": "greek",
    "فاتورة": "arabic",
    "file ref 771": "ligature",
}
FILLER = "quarterly report summary of the meeting with minutes and agenda items for the team".split()


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def page(name: str, text: str, rng: np.random.Generator, doc: str = "docA", number: int = 0) -> PagePoint:
    return PagePoint(
        point_id(doc, number),
        unit(rng.normal(size=DIM)),
        unit(rng.normal(size=(12, 128))),
        {"document_id": doc, "source": f"/data/{doc}.pdf", "page": number, "kind": "page_image", TEXT: text,
         "name": name},
    )  # fmt: skip


def corpus(seed: int = 0, fillers: int = 30) -> list[PagePoint]:
    """The named pages (document docA) and filler pages (docB): vectors are noise, as with the tiny model."""
    rng = np.random.default_rng(seed)
    points = [page(name, text, rng, "docA", i) for i, (name, text) in enumerate(PAGES.items())]
    for i in range(fillers):
        text = " ".join(rng.choice(FILLER, 20))
        points.append(page(f"filler{i}", text, rng, "docB", i))
    return points


def random_query(text: str | None, seed: int = 1) -> QueryVectors:
    rng = np.random.default_rng(seed)
    return QueryVectors(unit(rng.normal(size=DIM)), unit(rng.normal(size=(6, 128))), text)


def names(hits) -> list[str]:
    return [h.payload["name"] for h in hits]


class Backend:
    """Opens (and reopens) a collection on one backend."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.client = None
        self.opened = []
        if kind == "server-local":
            from qdrant_client import QdrantClient

            self.client = QdrantClient(":memory:")

    def open(self, spec: CollectionSpec | None = None):
        if self.kind == "server-local":
            store = open_store("pages", spec, client=self.client)
        else:
            store = open_store("pages", spec, data_dir=self.tmp_path)
            if self.kind == "edge-engine-process":  # every call forwarded to the engine's child process
                block = store.engine_process()
                block.__enter__()
                store._test_block = block
        self.opened.append(store)
        return store

    def close(self, store) -> None:
        block = getattr(store, "_test_block", None)
        if block is not None:
            block.__exit__(None, None, None)
            store._test_block = None
        store.close()

    def close_all(self) -> None:
        for store in self.opened:
            if not getattr(store, "_closed", False):
                self.close(store)


@pytest.fixture(params=["edge", "edge-engine-process", "server-local"])
def backend(request, tmp_path):
    b = Backend(request.param, tmp_path)
    yield b
    b.close_all()


@pytest.fixture
def store(backend):
    s = backend.open(CollectionSpec(dim=DIM, model="test-model"))
    s.upsert(corpus())
    return s


# -- ranking ----------------------------------------------------------------------------------


def test_lexical_and_hybrid_put_the_exact_match_first_where_rerank_does_not(store):
    rerank_first = 0
    for i, (text, target) in enumerate(QUERIES.items()):
        query = random_query(text, seed=i)
        assert names(store.search(query, k=5, mode="lexical"))[0] == target, text
        if target not in ("inv42", "inv43"):  # a near-miss code is in the text list too: see below
            assert names(store.search(query, k=5, mode="hybrid"))[0] == target, text
            assert target in names(store.search(query, k=5, mode="hybrid", fusion=Fusion("dbsf"))), text
        rerank_first += names(store.search(query, k=5))[0] == target
    assert rerank_first <= 2  # the vectors carry no signal: rerank finds these by chance only


def test_a_near_miss_code_ranks_below_the_exact_one(store):
    hits = names(store.search(random_query("inv 2025 0042"), k=5, mode="lexical"))
    assert hits[:2] == ["inv42", "inv43"]  # shares inv and 2025 only
    for seed in range(5):  # RRF: the near miss wins where the vectors (noise here) also rank it first
        assert "inv42" in names(store.search(random_query("inv 2025 0042", seed), k=5, mode="hybrid"))[:2]


def test_lexical_scores_are_bm25_with_idf_and_only_matching_pages_come_back(store):
    hits = store.search(random_query("zx 4471 q"), k=10, mode="lexical")
    assert names(hits) == ["part"] and hits[0].score > 0
    assert store.search(random_query("nothing-like-this-anywhere"), k=10, mode="lexical") == []


def test_hybrid_fills_up_with_the_vector_side_and_respects_k(store):
    hits = store.search(random_query("zx 4471 q"), k=7, mode="hybrid")
    assert len(hits) == 7 and names(hits)[0] == "part"
    assert len({h.id for h in hits}) == 7
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_mmr_returns_fewer_near_duplicates_than_rerank(backend):
    rng = np.random.default_rng(3)
    original = page("dup0", "the same page", rng, "docA", 0)
    copies = [
        PagePoint(point_id("docA", i), original.dense, original.multivector, {**original.payload, "name": f"dup{i}"})
        for i in range(1, 4)
    ]  # four identical pages
    others = [page(f"other{i}", "other", rng, "docB", i) for i in range(30)]
    store = backend.open(CollectionSpec(dim=DIM))
    store.upsert([original, *copies, *others])
    noise = unit(rng.normal(size=(6, 128)))
    query = QueryVectors(original.dense, unit(original.multivector[:6] + 0.5 * noise), "the same page")
    dups = lambda hits: sum(n.startswith("dup") for n in names(hits))  # noqa: E731
    rerank = store.search(query, k=5)
    assert dups(rerank) == 4
    mmr = store.search(query, k=5, mode="mmr", mmr_lambda=0.5)
    assert len(mmr) == 5 and dups(mmr) <= 2 and names(mmr)[0].startswith("dup")
    # MaxSim picks the candidates (here all 34 pages), MMR orders them by the dense vector: with lambda 1 that is
    # the dense ranking of the candidates (identical copies tie: compare sets)
    relevance_only = store.search(query, k=5, mode="mmr", mmr_lambda=1.0)
    dense = store.search(query, k=5, mode="dense")
    assert {h.id for h in relevance_only} == {h.id for h in dense} and names(relevance_only)[4] == names(dense)[4]
    assert [round(h.score, 5) for h in relevance_only] == [round(h.score, 5) for h in dense]  # scores: dense cosine
    few = store.search(query, k=3, mode="mmr", mmr_lambda=1.0, mmr_candidates=4, prefetch=4, pooled_prefetch=0)
    assert {h.id for h in few} <= {h.id for h in store.search(query, k=4, prefetch=4, pooled_prefetch=0)}
    assert dups(store.search(query, k=5, mode="mmr", mmr_lambda=0.0)) == 1
    assert len(store.search(query, k=5, mode="mmr", mmr_candidates=3)) == 3  # MMR picks among 3 only
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="mmr_lambda must be between 0 and 1"):
            store.search(query, mode="mmr", mmr_lambda=bad)


# -- filters, image queries, bad input ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["rerank", "dense", "multivector", "lexical", "hybrid", "mmr"])
def test_filters_apply_in_every_mode(store, mode):
    query = random_query("zx 4471 q quarterly report")
    only_b = store.search(query, k=50, mode=mode, where=PageFilter(document_ids=("docB",)))
    assert only_b and all(h.payload["document_id"] == "docB" for h in only_b)
    assert "part" not in names(only_b)
    pages = store.search(query, k=50, mode=mode, where=PageFilter(document_ids=("docA",), page_from=2, page_to=2))
    assert names(pages) == ["part"]


def test_an_image_query_runs_hybrid_without_its_lexical_stage_and_is_refused_lexical(store):
    query = random_query(None)
    assert [h.id for h in store.search(query, k=5, mode="hybrid")] == [h.id for h in store.search(query, k=5)]
    with pytest.raises(ValueError, match="image query has none"):
        store.search(query, mode="lexical")


def test_stop_words_and_punctuation_give_no_lexical_hits(store):
    for text in ("the of and", "?!... ---", ""):
        query = random_query(text)
        assert store.search(query, mode="lexical") == []
        assert [h.id for h in store.search(query, k=5, mode="hybrid")] == [h.id for h in store.search(query, k=5)]


def test_a_query_with_too_many_terms_is_refused_clearly(store):
    words = " ".join(f"term{i}" for i in range(lexical.MAX_QUERY_TERMS + 1))
    for mode in ("lexical", "hybrid"):
        with pytest.raises(ValueError, match=f"257 distinct terms.*at most {lexical.MAX_QUERY_TERMS}"):
            store.search(random_query(words), mode=mode)
    fine = " ".join(f"term{i}" for i in range(lexical.MAX_QUERY_TERMS))
    assert store.search(random_query(fine), mode="lexical") == []


def test_pages_without_usable_text_and_a_1_mb_page_are_stored_and_searched(store):
    rng = np.random.default_rng(9)
    big = ("lorem ipsum dolor sit amet consectetur " * 26_000)[:1_000_000] + " needle QX-9000-Z"
    store.upsert([page("big", big, rng, "docC", 0)])
    assert names(store.search(random_query("qx 9000 z"), k=3, mode="lexical")) == ["big"]
    for name in ("empty", "punctuation"):  # stored without a lexical vector; still found by the vectors
        target = next(r for r in store.iter_records() if r.payload["name"] == name)
        hits = store.search(random_query(None), k=50, where=PageFilter(ids=(target.id,)))
        assert names(hits) == [name]
        assert store.search(random_query("the"), k=50, mode="lexical", where=PageFilter(ids=(target.id,))) == []


# -- collections made before lexical vectors existed -----------------------------------------


def test_an_old_collection_answers_every_mode_then_add_lexical_finds_the_codes(backend, caplog):
    store = backend.open(CollectionSpec(dim=DIM, lexical=False))
    points = corpus()
    store.upsert(points)
    query = random_query("zx 4471 q", seed=5)
    with caplog.at_level(logging.WARNING, logger="visdoc.store"):
        for mode in ("rerank", "dense", "multivector", "mmr"):
            assert store.search(query, k=5, mode=mode)
        assert [h.id for h in store.search(query, k=5, mode="hybrid")] == [h.id for h in store.search(query, k=5)]
        assert store.search(query, k=5, mode="lexical") == []
    warnings = [r.getMessage() for r in caplog.records if "no lexical vectors" in r.getMessage()]
    assert len(warnings) == 1 and "add_lexical()" in warnings[0] and "visdoc reindex-text" in warnings[0]

    with_text = sum(1 for p in points if lexical.document_vector(p.payload[TEXT])[0])
    assert store.add_lexical() == with_text == len(points) - 2  # the empty and punctuation-only pages have none
    assert store.spec.lexical
    assert names(store.search(query, k=5, mode="lexical"))[0] == "part"
    assert names(store.search(query, k=5, mode="hybrid"))[0] == "part"
    rng = np.random.default_rng(4)
    store.upsert([page("new0", "new page KL-1", rng, "docD", 0), page("new1", "new page KL-2", rng, "docD", 1)])
    assert names(store.search(random_query("kl 2"), k=1, mode="lexical")) == ["new1"]  # new pages get their vector
    backend.close(store)

    reopened = backend.open()
    assert reopened.spec.lexical
    assert names(reopened.search(query, k=5, mode="lexical"))[0] == "part"
    assert names(reopened.search(random_query("東京"), k=5, mode="hybrid"))[0] == "cjk"
    assert reopened.add_lexical() == with_text + 2  # again: recomputed, no harm


def test_a_spec_written_before_lexical_vectors_reads_as_without_them(tmp_path):
    store = open_store("old", CollectionSpec(dim=DIM, lexical=False), data_dir=tmp_path)
    store.close()
    spec_file = tmp_path / "old" / SPEC_FILE
    data = json.loads(spec_file.read_text())
    del data["lexical"]  # as the code before this change wrote it
    spec_file.write_text(json.dumps(data))
    assert CollectionSpec.from_json(data).lexical is False
    with open_store("old", data_dir=tmp_path) as reopened:
        assert reopened.spec.lexical is False
        assert reopened.search(random_query("anything"), mode="lexical") == []
    assert CollectionSpec(dim=DIM).lexical is True  # new collections have them


def test_a_server_collection_without_visdoc_metadata_reads_its_lexical_vector():
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
    client.create_collection(
        "bare",
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                        "multi": models.VectorParams(size=128, distance=models.Distance.COSINE,
                                                     multivector_config=multi)},
    )  # fmt: skip
    assert open_store("bare", client=client).spec.lexical is False


# -- the request a Qdrant server gets --------------------------------------------------------


def test_the_server_request_shapes_of_lexical_hybrid_and_mmr():
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    calls = []
    original = client.query_points

    def spy(collection_name, **kwargs):
        calls.append(kwargs)
        return original(collection_name, **kwargs)

    client.query_points = spy
    store = open_store("c", CollectionSpec(dim=DIM), client=client)
    store.upsert(corpus())
    created = client.get_collection("c").config.params
    assert created.sparse_vectors["lexical"].modifier == models.Modifier.IDF
    where = PageFilter(document_ids=("docA",))
    query = random_query("zx 4471 q")

    store.search(query, k=3, mode="lexical", where=where)
    lex = calls[-1]
    assert lex["using"] == "lexical" and isinstance(lex["query"], models.SparseVector)
    assert lex["query"].indices == lexical.query_vector("zx 4471 q")[0] and lex["query_filter"] is not None

    store.search(query, k=3, mode="hybrid", where=where, fusion=Fusion(k=7, weights=(2.0, 1.0)), lexical_prefetch=40)
    body = models.QueryRequest(**{k: v for k, v in calls[-1].items() if k not in ("query_filter", "search_params")},
                               filter=calls[-1]["query_filter"]).model_dump(exclude_none=True)  # fmt: skip
    assert body["query"] == {"rrf": {"k": 7, "weights": [2.0, 1.0]}} and "using" not in body and body["limit"] == 3
    text_side, vector_side = body["prefetch"]
    assert text_side["using"] == "lexical" and text_side["limit"] == 40 and text_side["filter"] == body["filter"]
    assert vector_side["using"] == "multi" and vector_side["limit"] == 100 and vector_side["filter"] == body["filter"]
    assert [p["using"] for p in vector_side["prefetch"]] == ["dense", "pooled"]
    assert all(p["filter"] == body["filter"] for p in vector_side["prefetch"])

    store.search(query, k=3, mode="hybrid", fusion=Fusion())
    assert calls[-1]["query"].rrf.weights is None  # equal weights are left out: Qdrant 1.16 takes k alone
    store.search(query, k=3, mode="hybrid", fusion=Fusion("dbsf"))
    assert calls[-1]["query"] == models.FusionQuery(fusion=models.Fusion.DBSF)

    store.search(query, k=3, mode="mmr", mmr_lambda=0.7, mmr_candidates=20)
    mmr = calls[-1]
    assert mmr["using"] == "dense" and mmr["query"].mmr.candidates_limit == 20  # MMR on the dense vector
    assert mmr["query"].mmr.diversity == pytest.approx(0.3)  # diversity = 1 - lambda
    (candidates,) = mmr["prefetch"]  # over the 20 best by exact MaxSim of the dense and pooled candidates
    assert candidates.using == "multi" and candidates.limit == 20
    assert [p.using for p in candidates.prefetch] == ["dense", "pooled"]


# -- the analysis itself -----------------------------------------------------------------------


def test_codes_match_however_they_are_typed():
    same = {"INV-2025-0042", "inv-2025-0042", "INV 2025 0042", "inv/2025/0042", "ＩＮＶ－２０２５－００４２"}
    assert len({tuple(lexical.query_vector(text)[0]) for text in same}) == 1
    assert lexical.terms("ZX-4471-Q") == ["zx", "4471", "q"]


def test_terms_fold_accents_split_cjk_and_drop_stop_words():
    assert lexical.terms("Café naïve Ελληνικά ёлка فَاتُورَة") == ["cafe", "naive", "ελληνικα", "елка", "فاتورة"]
    assert lexical.terms("東京都庁の会議 2025年") == ["東京", "京都", "都庁", "庁の", "の会", "会議", "2025", "年"]
    assert lexical.terms("the ﬁle of the") == ["file"]
    assert lexical.terms("...") == [] and lexical.document_vector("") == ([], [])
    for text in ("Invoice INV-2025-0042 東京都 हिंदी पाठ Straße", "getUserName x_y"):  # the terms are the index's
        assert sorted(lexical.query_vector(" ".join(lexical.terms(text)))[0]) == sorted(lexical.query_vector(text)[0])


def test_a_1_mb_text_is_analysed_quickly():
    text = ("lorem ipsum dolor sit amet INV-2025-0042 " * 25_000)[:1_000_000]
    start = time.perf_counter()
    indices, values = lexical.document_vector(text)
    assert time.perf_counter() - start < 1.0
    assert set(lexical.query_vector("inv 2025 0042")[0]) <= set(indices) and all(v > 0 for v in values)
