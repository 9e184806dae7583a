"""The embedding server speaks OpenAI's and Jina's embeddings APIs: tried with the real client
libraries (``openai``, LlamaIndex's ``JinaEmbedding``, LangChain's ``OpenAIEmbeddings``) and with
plain Jina-shape requests, against ``visdoc serve`` on loopback with the tiny checkpoint."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import pytest
from test_server import KEY, SAMPLES, b64, start_server

from conftest import FIXTURE

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

NAME = FIXTURE.name  # the short model name: the checkpoint folder's
QUERY, PASSAGE = f"{NAME}:retrieval.query", f"{NAME}:retrieval.passage"
TEXTS = ["Which quarter had the highest revenue?", "Invoices and receipts of the year"]
LONG = "é" * 40000  # two tokens a character: 80,003 tokens with the prompt, over the 32,768 of the context
PAGE = SAMPLES / "sample-page.png"


@pytest.fixture(scope="module")
def url():
    proc, address = start_server("--api-key", KEY)
    yield address
    proc.terminate()
    proc.wait(10)


def embed(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def refusal(response: httpx.Response, status: int = 400) -> dict:
    """The error of an answer, checked to be OpenAI's shape with Jina's ``detail`` beside it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["detail"] == body["error"]["message"]
    return body["error"]


# -- the openai SDK -----------------------------------------------------------------------------


def test_openai_sdk_embeds_with_the_task_its_model_id_names(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    default = client.embeddings.create(model=QUERY, input=TEXTS)  # the SDK asks for base64 and decodes it
    assert default.model == QUERY and default.usage.total_tokens > 0
    as_float = client.embeddings.create(model=QUERY, input=TEXTS, encoding_format="float")
    query = vectors(embed(url, input=TEXTS, task="retrieval.query"))
    np.testing.assert_allclose([d.embedding for d in default.data], query, atol=1e-6)
    np.testing.assert_allclose([d.embedding for d in as_float.data], query, atol=1e-6)
    passage = client.embeddings.create(model=PASSAGE, input=TEXTS, encoding_format="float")
    np.testing.assert_allclose([d.embedding for d in passage.data], vectors(embed(url, input=TEXTS)), atol=1e-6)
    assert np.abs(np.array([d.embedding for d in passage.data]) - query).max() > 1e-3  # the prompt differs
    short = client.embeddings.create(model=QUERY, input=TEXTS[0], dimensions=32)
    assert len(short.data[0].embedding) == 32
    np.testing.assert_allclose(short.data[0].embedding, vectors(embed(url, input=TEXTS[0], task="retrieval.query",
                                                                      dimensions=32))[0], atol=1e-6)  # fmt: skip
    unnamed = client.embeddings.create(model=NAME, input=TEXTS, user="someone")  # no task anywhere: passages
    assert unnamed.model == PASSAGE
    np.testing.assert_allclose([d.embedding for d in unnamed.data], vectors(embed(url, input=TEXTS)), atol=1e-6)


def test_openai_sdk_errors_say_why(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match=r"dimensions=48 is not supported; use one of \[16, 32, 64\]"):
        client.embeddings.create(model=QUERY, input="x", dimensions=48)
    with pytest.raises(openai.BadRequestError, match="token ids") as token_ids:
        client.embeddings.create(model=QUERY, input=[[1, 2, 3]])
    assert token_ids.value.param == "input" and "check_embedding_ctx_length=False" in str(token_ids.value)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=QUERY, input=[1, 2, 3])
    with pytest.raises(openai.NotFoundError, match="text-embedding-3-small' does not exist") as unknown:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert unknown.value.code == "model_not_found" and QUERY in str(unknown.value)
    with pytest.raises(openai.BadRequestError, match="contradicts model") as both:
        client.embeddings.create(model=QUERY, input="x", extra_body={"task": "retrieval.passage"})
    assert both.value.param == "task" and "retrieval.passage" in str(both.value)
    with pytest.raises(openai.AuthenticationError, match="wrong API key"):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()


def test_openai_sdk_lists_and_retrieves_the_model_ids(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids == [NAME, QUERY, PASSAGE, f"{NAME}:text-matching", f"{NAME}:code.query", f"{NAME}:code.passage"]
    found = client.models.retrieve(f"{NAME}:code.query")
    assert found.id == f"{NAME}:code.query" and found.object == "model" and found.owned_by and found.created > 0
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4")
    for task in ("text-matching", "code.query", "code.passage"):  # every listed id embeds with its task
        reply = client.embeddings.create(model=f"{NAME}:{task}", input=TEXTS[0], encoding_format="float")
        np.testing.assert_allclose(reply.data[0].embedding, vectors(embed(url, input=TEXTS[0], task=task))[0],
                                   atol=1e-6)  # fmt: skip


def test_async_openai_sdk(url):
    async def scenario() -> tuple:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        reply = await client.embeddings.create(model=QUERY, input=TEXTS)
        listed = [m.id async for m in client.models.list()]
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.embeddings.create(model="jina-embeddings-v3", input="x")
        await client.close()
        return reply, listed

    reply, listed = asyncio.run(scenario())
    query = vectors(embed(url, input=TEXTS, task="retrieval.query"))
    np.testing.assert_allclose([d.embedding for d in reply.data], query, atol=1e-6)
    assert QUERY in listed


def test_langchain_openai_embeddings_with_strings(url):
    langchain_openai = pytest.importorskip("langchain_openai")
    documents = langchain_openai.OpenAIEmbeddings(model=PASSAGE, base_url=f"{url}/v1", api_key=KEY,
                                                  check_embedding_ctx_length=False)  # fmt: skip
    np.testing.assert_allclose(documents.embed_documents(TEXTS), vectors(embed(url, input=TEXTS)), atol=1e-6)
    queries = langchain_openai.OpenAIEmbeddings(model=QUERY, base_url=f"{url}/v1", api_key=KEY,
                                                check_embedding_ctx_length=False)  # fmt: skip
    query = vectors(embed(url, input=TEXTS[0], task="retrieval.query"))[0]
    np.testing.assert_allclose(queries.embed_query(TEXTS[0]), query, atol=1e-6)


# -- Jina's fields ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["embedding_type", "encoding_type"])
def test_every_embedding_type_of_a_text_and_an_image(url, name):
    inputs = [TEXTS[0], {"image": b64(PAGE)}]
    floats = vectors(embed(url, input=inputs, return_multivector=True))
    tokens = [np.array(item["embeddings"]) for item in embed(url, input=inputs, return_multivector=True).json()["data"]]
    as_base64 = embed(url, input=inputs, **{name: "base64"}).json()["data"]
    np.testing.assert_array_equal([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in as_base64], floats)
    unpack = {"ubinary": lambda v: np.array(v, np.uint8), "binary": lambda v: (np.array(v) + 128).astype(np.uint8)}
    for kind, to_uint8 in unpack.items():  # what LlamaIndex's Jina client does
        data = embed(url, input=inputs, return_multivector=True, **{name: kind}).json()["data"]
        for item, dense, matrix in zip(data, floats, tokens, strict=True):
            assert len(item["embedding"]) == len(dense) // 8
            np.testing.assert_array_equal(np.unpackbits(to_uint8(item["embedding"])), dense > 0)
            rows = np.unpackbits(to_uint8(item["embeddings"]), axis=-1)  # one packed row per token
            np.testing.assert_array_equal(rows, matrix > 0)
        low, high = (0, 255) if kind == "ubinary" else (-128, 127)
        assert all(low <= value <= high for d in data for value in d["embedding"])


def test_embedding_type_names_that_disagree_or_a_list_are_refused(url):
    error = refusal(embed(url, input="x", embedding_type="binary", encoding_type="float"))
    assert error["param"] == "encoding_type" and "embedding_type='binary'" in error["message"]
    error = refusal(embed(url, input="x", embedding_type="float", encoding_format="base64"))
    assert error["param"] == "encoding_format" and "disagree" in error["message"]
    error = refusal(embed(url, input="x", encoding_format="binary"))
    assert error["param"] == "encoding_format" and "'binary' is not supported" in error["message"]
    error = refusal(embed(url, input="x", embedding_type=["float", "binary"]))
    assert error["param"] == "embedding_type" and "as a list" in error["message"]
    same = embed(url, input="x", embedding_type="base64", encoding_format="base64")
    assert same.status_code == 200 and isinstance(same.json()["data"][0]["embedding"], str)


def test_truncate_false_refuses_an_over_long_text_and_true_cuts_its_tail(url, tiny_fp32):
    for body in ({}, {"truncate": False}):  # false is Jina's default
        error = refusal(embed(url, input=["short", LONG], **body))
        assert error["param"] == "input" and error["code"] == "context_length_exceeded"
        assert error["message"].startswith("input 1: 80003 tokens") and "32768" in error["message"]
        assert "truncate=true" in error["message"]
    cut = vectors(embed(url, input=LONG, truncate=True))
    np.testing.assert_allclose(cut[0], tiny_fp32.encode_texts([LONG], prompt_name="passage").dense[0], atol=1e-5)
    from visdoc import JinaV4

    remote = JinaV4.remote(url, api_key=KEY)  # visdoc's own client cuts as the local model does
    np.testing.assert_allclose(remote.encode_texts([LONG], prompt_name="passage").dense[0], cut[0], atol=1e-6)
    assert embed(url, input=[{"image": b64(PAGE)}], truncate=False).status_code == 200  # images are never cut


def test_normalized(url):
    plain = vectors(embed(url, input=TEXTS))
    np.testing.assert_array_equal(vectors(embed(url, input=TEXTS, normalized=True)), plain)
    np.testing.assert_allclose(np.linalg.norm(plain, axis=1), 1, atol=1e-5)
    error = refusal(embed(url, input=TEXTS, normalized=False))
    assert error["param"] == "normalized" and error["message"].startswith("normalized=false is not supported")


def test_late_chunking_equals_the_in_process_computation(url, tiny_fp32):
    chunks = ["The annual report covers 2023.", "Revenue grew in the third quarter.", "It fell in the fourth."]
    reply = embed(url, input=chunks, task="retrieval.passage", late_chunking=True, return_multivector=True)
    want = tiny_fp32.encode_late_chunks(chunks, task="retrieval", prompt_name="passage", multivector=True)
    np.testing.assert_allclose(vectors(reply), want.dense, atol=1e-5)
    for item, tokens in zip(reply.json()["data"], want.multivector, strict=True):
        np.testing.assert_allclose(item["embeddings"], tokens, atol=1e-5)
    assert reply.json()["usage"]["total_tokens"] == sum(want.tokens)
    assert np.abs(vectors(reply) - vectors(embed(url, input=chunks))).max() > 1e-3  # not the separate encoding
    query = embed(url, model=QUERY, input=chunks, late_chunking=True, dimensions=32)
    want = tiny_fp32.encode_late_chunks(chunks, prompt_name="query", dim=32)
    np.testing.assert_allclose(vectors(query), want.dense, atol=1e-5)


def test_late_chunking_requests_never_share_a_pass(url, tiny_fp32):
    from concurrent.futures import ThreadPoolExecutor

    groups = [[f"Document {i}, part one.", f"Document {i}, part two is longer."] for i in range(4)]
    bodies = [{"input": g, "late_chunking": True} for g in groups] + [{"input": g} for g in groups]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda body: embed(url, **body), bodies))
    for group, late, separate in zip(groups, replies[:4], replies[4:], strict=True):
        np.testing.assert_allclose(vectors(late), tiny_fp32.encode_late_chunks(group).dense, atol=1e-5)
        np.testing.assert_allclose(vectors(separate), tiny_fp32.encode_texts(group, prompt_name="passage").dense,
                                   atol=1e-5)  # fmt: skip


def test_late_chunking_refusals(url):
    error = refusal(embed(url, input=["text", {"image": b64(PAGE)}], late_chunking=True))
    assert error["param"] == "late_chunking" and "input 1 is an image" in error["message"]
    error = refusal(embed(url, input=["é" * 9000, "é" * 9000], late_chunking=True, truncate=True))
    assert "36003 tokens" in error["message"] and "32768" in error["message"]  # together over the context


def test_unknown_and_undocumented_fields_are_refused_by_name(url):
    error = refusal(embed(url, input="x", input_type="query", normalize=True))
    assert error["param"] == "input_type" and error["code"] == "unknown_parameter"
    assert error["message"].startswith("unknown fields 'input_type', 'normalize'")
    error = refusal(embed(url, input={"pdf": "https://example.com/a.pdf"}))
    assert "'pdf' inputs are not supported" in error["message"]
    error = refusal(embed(url, input=[{"text": "x", "lang": "en"}]))
    assert "keys ['lang', 'text']" in error["message"]
    for field, value in (("truncate", "yes"), ("late_chunking", 1), ("return_multivector", "true")):
        error = refusal(embed(url, input="x", **{field: value}))
        assert error["param"] == field and "true or false" in error["message"]
    error = refusal(embed(url, input="x", model=QUERY, task="code.query"))
    assert error["param"] == "task" and QUERY in error["message"] and "code.query" in error["message"]
    error = refusal(embed(url, input="x", model="jina-embeddings-v3"), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    np.testing.assert_array_equal(vectors(embed(url, input=TEXTS, user="u-1")), vectors(embed(url, input=TEXTS)))


def test_the_checkpoint_s_own_name_and_no_model_are_accepted(url):
    info = httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["name"] == str(FIXTURE)  # what visdoc's remote client reads; it sends no model
    plain = vectors(embed(url, input=TEXTS))
    np.testing.assert_array_equal(vectors(embed(url, input=TEXTS, model=info["name"])), plain)
    tagged = embed(url, input=TEXTS, model=f"{info['name']}:retrieval.query")
    np.testing.assert_array_equal(vectors(tagged), vectors(embed(url, input=TEXTS, task="retrieval.query")))
    assert tagged.json()["model"] == QUERY


def test_every_v1_error_has_the_openai_shape(url):
    headers = {"Authorization": f"Bearer {KEY}"}
    error = refusal(httpx.post(f"{url}/v1/embeddings", json={"input": "x"}), 401)
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    assert refusal(httpx.get(f"{url}/v1/nothing", headers=headers), 404)["code"] == "not_found"
    assert refusal(httpx.get(f"{url}/v1/embeddings", headers=headers), 405)["code"] == "method_not_allowed"
    error = refusal(embed(url, input=["a"] * 513), 413)
    assert error["param"] == "input" and error["message"] == "513 inputs in one request; the limit is 512"
    error = refusal(httpx.post(f"{url}/v1/embeddings", content=b'{"input": [', headers=headers))
    assert error["message"].startswith("malformed JSON")


# -- LlamaIndex's Jina client -------------------------------------------------------------------


def jina_embedding(url: str, **options):
    """LlamaIndex's ``JinaEmbedding`` pointed at ``url``: its caller has no base URL argument, so the
    URL it posts to is set on it (``_api.api_url``)."""
    from llama_index.embeddings.jinaai import JinaEmbedding

    embedding = JinaEmbedding(api_key=KEY, **options)
    embedding._api.api_url = f"{url}/v1/embeddings"
    return embedding


def test_llama_index_jina_embedding(url, tiny_fp32):
    pytest.importorskip("llama_index.embeddings.jinaai")
    documents = jina_embedding(url, model=NAME)
    np.testing.assert_allclose(documents.get_text_embedding_batch(TEXTS), vectors(embed(url, input=TEXTS)), atol=1e-6)
    queries = jina_embedding(url, model=NAME, task="retrieval.query")
    query = vectors(embed(url, input=TEXTS[0], task="retrieval.query"))[0]
    np.testing.assert_allclose(queries.get_query_embedding(TEXTS[0]), query, atol=1e-6)
    by_id = jina_embedding(url, model=QUERY)  # the task in the model id
    np.testing.assert_allclose(by_id.get_query_embedding(TEXTS[0]), query, atol=1e-6)
    image = vectors(embed(url, input=[{"image": b64(PAGE)}]))[0]
    np.testing.assert_allclose(documents.get_image_embedding(str(PAGE)), image, atol=1e-6)  # sent as {"bytes": ...}
    np.testing.assert_allclose(image, tiny_fp32.encode_images([PAGE]).dense[0], atol=1e-5)
    for kind in ("ubinary", "binary"):
        bits = jina_embedding(url, model=QUERY, encoding_queries=kind).get_query_embedding(TEXTS[0])
        np.testing.assert_array_equal(bits, (query > 0).astype(int))
    late = jina_embedding(url, model=NAME, late_chunking=True).get_text_embedding_batch(TEXTS)
    np.testing.assert_allclose(late, tiny_fp32.encode_late_chunks(TEXTS).dense, atol=1e-5)
    with pytest.raises(RuntimeError, match="does not exist"):  # it raises the answer's "detail"
        jina_embedding(url).get_query_embedding("x")  # its default model, jina-embeddings-v3


# -- in process: errors no client request reaches -----------------------------------------------


def test_validation_errors_and_crashes_under_v1_have_the_openai_shape(tiny_fp32):
    from fastapi.testclient import TestClient

    from visdoc.server.app import create_app

    class Broken:
        """The tiny model with a tokenizer that fails: the request handler crashes."""

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(tiny_fp32, name)

        @property
        def tokenizer(self):  # noqa: ANN201
            raise RuntimeError("boom")

    app = create_app(Broken())

    @app.get("/v1/probe")
    async def probe(n: int) -> dict:
        return {"n": n}

    with TestClient(app, raise_server_exceptions=False) as client:
        invalid = client.get("/v1/probe", params={"n": "many"})
        error = refusal(invalid, 422)
        assert error["param"] == "n" and error["message"].startswith("n: ")
        crash = refusal(client.post("/v1/embeddings", json={"input": "x"}), 500)
        assert crash["type"] == "server_error" and "RuntimeError" in crash["message"]
        assert client.get("/elsewhere").json() == {"detail": "Not Found"}  # outside /v1/: FastAPI's own answer


def test_late_chunking_through_a_remote_encoder_is_refused(url):
    from fastapi.testclient import TestClient

    from visdoc import JinaV4
    from visdoc.server.app import create_app

    with TestClient(create_app(JinaV4.remote(url, api_key=KEY))) as client:
        error = refusal(client.post("/v1/embeddings", json={"input": ["a", "b"], "late_chunking": True}))
        assert error["param"] == "late_chunking" and "RemoteJinaV4" in error["message"]
        assert client.post("/v1/embeddings", json={"input": ["a", "b"]}).status_code == 200
