"""Compression options: each round-trips through both backends; token pooling keeps its promises."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient

from visdoc.pooling import pool_tokens
from visdoc.store import CollectionSpec, PagePoint, QueryVectors, open_store, point_id

OPTIONS = {
    "float32": CollectionSpec(dim=32, multivector_datatype="float32"),
    "float16": CollectionSpec(dim=32),
    "scalar int8": CollectionSpec(dim=32, quantization="scalar"),
    "binary": CollectionSpec(dim=32, quantization="binary"),
    "token pooling x3": CollectionSpec(dim=32, token_pool_factor=3),
    "row/column prefetch": CollectionSpec(dim=32, rowcol=True, pool_size=0),
}
HEAD, TAIL = 5, 3  # template tokens before and after the content, never pooled


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def pages(n: int = 12) -> list[PagePoint]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        topics = unit(rng.normal(size=(4, 128)))
        tokens = unit(topics[rng.integers(0, 4, size=60)] + 0.3 * rng.normal(size=(60, 128)) / np.sqrt(128) * 4)
        span, grid = (HEAD, 60 - TAIL), (4, 13)  # 52 content tokens as 4 rows of 13 patches
        out.append(PagePoint(point_id("doc", i), unit(rng.normal(size=32)), tokens, {"page": i}, span, grid))
    return out


@pytest.mark.filterwarnings("ignore:Local mode performs exact")  # quantized search params, unused in local mode
@pytest.mark.parametrize("backend", ["edge", "server-local"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_each_option_round_trips(tmp_path, backend, option):
    spec = OPTIONS[option]
    if backend == "edge":
        store = open_store("c", spec, data_dir=tmp_path)
    else:
        store = open_store("c", spec, client=QdrantClient(":memory:"))
    points = pages()
    store.upsert(points)
    assert store.spec == spec and store.count() == len(points)
    [record] = store.retrieve([points[4].id], with_vectors=True)
    if spec.token_pool_factor > 1:
        assert len(record.multivector) == HEAD + 18 + TAIL  # 52 content tokens -> ceil(52 / 3)
        np.testing.assert_allclose(record.multivector[:HEAD], points[4].multivector[:HEAD], atol=2e-3)
    else:
        np.testing.assert_allclose(record.multivector, points[4].multivector, atol=2e-3)
    query = QueryVectors(points[7].dense, points[7].multivector[10:30])
    assert store.search(query, k=1)[0].id == points[7].id
    store.close()


def test_pooling_cuts_content_tokens_by_the_factor_and_keeps_template_tokens():
    rng = np.random.default_rng(1)
    tokens = unit(rng.normal(size=(790, 128)))
    for factor in (2, 3, 4):
        pooled = pool_tokens(tokens, factor, (14, 782))
        content = len(pooled) - 14 - 8
        assert abs(content - 768 / factor) <= 1
        np.testing.assert_array_equal(pooled[:14], tokens[:14])
        np.testing.assert_array_equal(pooled[-8:], tokens[-8:])
        np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(pool_tokens(tokens, 1), tokens)


def test_row_column_means_follow_the_patch_grid():
    from visdoc.store.base import row_column_means

    tokens = np.zeros((2 + 6 + 1, 128), np.float32)
    tokens[2:8, 0] = [1, 1, 1, 0, 0, 0]  # row 0 points along axis 0
    tokens[2:8, 1] = [0, 0, 0, 1, 1, 1]  # row 1 along axis 1
    means = row_column_means(tokens, (2, 3), (2, 8))
    assert means.shape == (5, 128)  # 2 rows + 3 columns
    np.testing.assert_allclose(means[0, :2], [1, 0], atol=1e-6)
    np.testing.assert_allclose(means[1, :2], [0, 1], atol=1e-6)
    np.testing.assert_allclose(means[2, :2], [2**-0.5, 2**-0.5], atol=1e-6)


def test_queries_are_never_pooled(tmp_path):
    store = open_store("c", OPTIONS["token pooling x3"], data_dir=tmp_path)
    store.upsert(pages())
    seen = []
    original = store._search
    store._search = lambda plan: seen.append(len(plan.multivector)) or original(plan)
    query = unit(np.random.default_rng(2).normal(size=(24, 128)))
    store.search(QueryVectors(unit(np.ones(32)), query), k=3)
    assert seen == [24]
    store.close()


def test_page_content_spans_come_from_the_prompt_layout(tiny_fp32):
    tokenizer = tiny_fp32.tokenizer
    ids, start, end = tokenizer.image(40)
    assert tokenizer.content_span("page_image", len(ids)) == (start + 1, end - 1)
    prefix = len(tokenizer.texts([""], "Passage: ")[0])
    assert tokenizer.content_span("text_chunk", 30) == (prefix, 30)


def test_a_first_word_that_takes_the_prompts_space_is_content(tiny_fp32):
    """``"Passage: hello"`` tokenizes as Passage, ``:``, `` hello``: the word is content, so token
    pooling may merge it, and the late-chunked span of a single text starts at the same token."""
    tokenizer = tiny_fp32.tokenizer
    # the prompt's part of each sequence: the space goes to the word when the tokenizer merges them
    for text, prompt_part in (("hello world", "Passage:"), ("2024 revenue", "Passage: "), (" spaced", "Passage: ")):
        ids = tokenizer.texts([text], "Passage: ")[0]
        start, end = tokenizer.content_span("text_chunk", len(ids), "passage", ids)
        assert tokenizer._tok.decode(ids[:start]) == prompt_part and end == len(ids)
        result = tiny_fp32.encode_texts([text], prompt_name="passage", multivector=True)
        assert result.content_spans[0] == (start, end)
        late = tiny_fp32.encode_late_chunks([text], prompt_name="passage", multivector=True)
        assert late.tokens[0] == end - start  # the same tokens are the text's own


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="quantization='scalar'"):
        CollectionSpec(dim=32, multivector_datatype="uint8")
    with pytest.raises(ValueError, match="token_pool_factor"):
        CollectionSpec(dim=32, token_pool_factor=0)
