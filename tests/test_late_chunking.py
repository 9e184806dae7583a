"""Late chunking: consecutive texts embedded from one forward pass over their concatenation."""

from __future__ import annotations

import numpy as np
import pytest

from visdoc import UnsupportedDimError

TEXTS = [
    "invoices and receipts",
    "a much longer passage about the quarterly report, with the totals of every region and many more words " * 2,
    "7 items were returned",  # starts with a digit: the prompt's trailing space stays a token of its own
]
PREFIXES = {"query": "Query: ", "passage": "Passage: "}


def content_ids(model, text: str, prefix: str) -> tuple[list[int], int]:
    """The ids ``encode_texts`` gives ``prefix + text`` and how many of them belong to the prompt:
    those it shares with the ids of the prompt alone (a first word absorbs the prompt's space)."""
    full = model.tokenizer.texts([text], prefix)[0]
    alone = model.tokenizer.texts([""], prefix)[0]
    shared = 0
    while shared < min(len(full), len(alone)) and full[shared] == alone[shared]:
        shared += 1
    return full, shared


def direct(model, texts: list[str], *, task: str, prefix: str, dim: int | None):
    """Dense and token vectors of late chunking computed straight from the network, and the spans."""
    import torch
    import torch.nn.functional as F

    first, head = content_ids(model, texts[0], prefix)
    sequence, spans = first[:head], []
    for text in texts:
        full, shared = content_ids(model, text, prefix)
        spans.append((len(sequence), len(sequence) + len(full) - shared))
        sequence += full[shared:]
    with torch.inference_mode():
        model.network.use_task(task)
        hidden = model.network.model(input_ids=torch.tensor([sequence]), use_cache=False).last_hidden_state[0]
        pooled = torch.stack([hidden[a:b].float().mean(0) for a, b in spans])
        dense = F.normalize(F.normalize(pooled, dim=-1)[:, : dim or pooled.shape[1]], dim=-1).numpy()
        tokens = [F.normalize(model.network.multi_vector_projector(hidden[a:b]).float(), dim=-1).numpy()
                  for a, b in spans]  # fmt: skip
    return dense, tokens, spans, len(sequence)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("fixture", ["tiny_fp32", "tiny_varlen_fp32"])
@pytest.mark.parametrize(("task", "prompt_name", "prefix"), [
    ("retrieval", "passage", "Passage: "),
    ("text-matching", "passage", "Query: "),  # symmetric: the query prompt whatever the prompt name
])  # fmt: skip
def test_late_chunks_match_a_direct_computation(request, fixture, task, prompt_name, prefix):
    model = request.getfixturevalue(fixture)
    for dim in (None, model.dims[0]):
        got = model.encode_late_chunks(TEXTS, task=task, prompt_name=prompt_name, dim=dim, multivector=True)
        dense, tokens, spans, _ = direct(model, TEXTS, task=task, prefix=prefix, dim=dim)
        assert got.dense.shape == (len(TEXTS), dim or model.dims[-1]) and got.dense.dtype == np.float32
        assert np.all(cosines(got.dense, dense) >= 0.99999)
        np.testing.assert_allclose(np.linalg.norm(got.dense, axis=1), 1, atol=1e-5)
        assert got.tokens == [b - a for a, b in spans] and len(set(got.tokens)) == 3
        assert got.content_spans == [(0, n) for n in got.tokens] and got.grids == [None] * 3
        for mine, theirs in zip(got.multivector, tokens, strict=True):
            assert mine.shape == theirs.shape == (len(theirs), model.multivector_dim)
            assert np.all(cosines(mine, theirs) >= 0.99999)


def test_context_flows_from_the_texts_before(tiny_fp32):
    late = tiny_fp32.encode_late_chunks(TEXTS).dense
    alone = tiny_fp32.encode_texts(TEXTS, prompt_name="passage").dense
    for i in (1, 2):
        assert cosines(late[i], alone[i]) < 0.999  # the texts before it changed its vector
    reordered = tiny_fp32.encode_late_chunks([TEXTS[2], TEXTS[0]]).dense
    assert cosines(reordered[1], late[0]) < 0.999


def test_a_single_text_pools_its_content_tokens_only(tiny_fp32):
    for text in (TEXTS[0], TEXTS[2]):
        full, head = content_ids(tiny_fp32, text, "Passage: ")
        late = tiny_fp32.encode_late_chunks([text], multivector=True)
        regular = tiny_fp32.encode_texts([text], prompt_name="passage", multivector=True)
        assert late.tokens == [len(full) - head] and regular.tokens == [len(full)]  # the very same sequence
        np.testing.assert_allclose(late.multivector[0], regular.multivector[0][head:], atol=1e-5)
        dense, _, spans, _ = direct(tiny_fp32, [text], task="retrieval", prefix="Passage: ", dim=None)
        assert spans == [(head, len(full))] and cosines(late.dense[0], dense[0]) >= 0.99999
        assert cosines(late.dense[0], regular.dense[0]) < 0.9999  # the prompt's tokens are not pooled


def test_one_forward_pass_for_all_texts(tiny_fp32):
    calls = []
    hook = tiny_fp32.network.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        tiny_fp32.encode_late_chunks(TEXTS, multivector=True)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_a_sequence_over_the_context_is_refused_with_its_token_count(tiny_fp32):
    *_, total = direct(tiny_fp32, TEXTS, task="retrieval", prefix="Passage: ", dim=None)
    limit = tiny_fp32.tokenizer.max_length
    try:
        tiny_fp32.tokenizer.max_length = total
        assert len(tiny_fp32.encode_late_chunks(TEXTS)) == 3  # exactly at the limit fits
        tiny_fp32.tokenizer.max_length = total - 1
        with pytest.raises(ValueError, match=f"needs {total} tokens .* limit of {total - 1}"):
            tiny_fp32.encode_late_chunks(TEXTS)
        with pytest.raises(ValueError, match=f"limit of {total - 1}"):
            tiny_fp32.encode_late_chunks(["word " * total])  # one text alone over the limit
    finally:
        tiny_fp32.tokenizer.max_length = limit


def test_bad_inputs_raise_clear_errors(tiny_fp32):
    with pytest.raises(ValueError, match="text 1 is empty"):
        tiny_fp32.encode_late_chunks(["a text", "", "another"])
    with pytest.raises(TypeError, match="text 2 is a int"):
        tiny_fp32.encode_late_chunks(["a text", "another", 3])
    with pytest.raises(TypeError, match="list of inputs"):
        tiny_fp32.encode_late_chunks("a text")
    with pytest.raises(UnsupportedDimError, match="48"):
        tiny_fp32.encode_late_chunks(["a text"], dim=48)
    empty = tiny_fp32.encode_late_chunks([], multivector=True)
    assert empty.dense.shape == (0, tiny_fp32.dims[-1]) and empty.multivector == [] and len(empty) == 0
