"""The embedding server as a subprocess on loopback, and the remote backend that uses it."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from conftest import FIXTURE

SAMPLES = FIXTURE.parents[2] / "examples" / "data"
KEY = "test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "visdoc", "serve", "--model", str(FIXTURE), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read())
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("--api-key", KEY)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def strict_server():
    proc, url = start_server("--max-items", "4", "--max-text-chars", "50", "--max-image-pixels", "10000",
                             "--max-body-mb", "1", "--max-queue", "3")  # fmt: skip
    yield url
    proc.terminate()
    proc.wait(10)


def post(url: str, body, *, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/embeddings", json=body, headers=headers, timeout=60, **kwargs)


def b64(path) -> str:
    return base64.b64encode(open(path, "rb").read()).decode()


def test_responses_equal_in_process_encoding(server, tiny_fp32):
    texts = ["Which quarter had the highest revenue?", "Invoices and receipts"]
    body = {"model": FIXTURE.name, "input": texts, "task": "retrieval.query", "return_multivector": True}
    data = post(server, body).json()["data"]
    local = tiny_fp32.encode_texts(texts, prompt_name="query", multivector=True)
    np.testing.assert_allclose([d["embedding"] for d in data], local.dense, atol=1e-5)
    np.testing.assert_allclose(data[1]["embeddings"], local.multivector[1], atol=1e-5)
    image = SAMPLES / "sample-page.png"
    inputs = [{"text": texts[0]}, {"image": f"data:image/png;base64,{b64(image)}"}]
    body = {"input": inputs, "task": "retrieval.passage", "dimensions": 32, "embedding_type": "base64"}
    mixed = post(server, body).json()
    assert [d["index"] for d in mixed["data"]] == [0, 1]
    image_vector = np.frombuffer(base64.b64decode(mixed["data"][1]["embedding"]), "<f4")
    np.testing.assert_allclose(image_vector, tiny_fp32.encode_images([image], dim=32).dense[0], atol=1e-5)


def test_openai_request_shape(server, tiny_fp32):
    reply = post(server, {"model": FIXTURE.name, "input": "hello", "encoding_format": "float"}).json()
    assert (
        reply["object"] == "list" and reply["data"][0]["object"] == "embedding" and reply["usage"]["total_tokens"] > 0
    )
    passage = tiny_fp32.encode_texts(["hello"], prompt_name="passage").dense[0]  # no task: passages
    np.testing.assert_allclose(reply["data"][0]["embedding"], passage, atol=1e-5)


def test_authentication(server):
    assert post(server, {"input": "x"}, key=None).status_code == 401
    assert post(server, {"input": "x"}, key="wrong").status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200  # health needs no key


def test_limits_and_malformed_requests_get_clear_4xx(strict_server):
    def status(body=None, **kwargs) -> tuple[int, str]:
        response = post(strict_server, body, key=None, **kwargs)
        return response.status_code, response.json()["detail"]

    assert status({"input": ["a"] * 5}) == (413, "5 inputs in one request; the limit is 4")
    code, detail = status({"input": "x" * 51})
    assert code == 413 and "51 characters" in detail
    big = SAMPLES / "sample-page.png"  # 850 x 1100 px
    code, detail = status({"input": [{"image": b64(big)}]})
    assert code == 413 and "850x1100 pixels" in detail
    response = httpx.post(f"{strict_server}/v1/embeddings", content=b"{" + b" " * (2 << 20) + b"}")
    assert response.status_code == 413
    response = httpx.post(f"{strict_server}/v1/embeddings", content=b'{"input": [')
    assert response.status_code == 400 and "malformed JSON" in response.json()["detail"]
    code, detail = status({"input": [{"image": "not base64!"}]})
    assert code == 400 and "input 0" in detail and "base64" in detail
    code, detail = status({"input": [{"image": "https://example.com/page.png"}]})
    assert code == 400 and "not fetched" in detail
    assert status({"input": "x", "task": "summarise"})[0] == 400
    assert status({"input": "x", "dimensions": 48})[0] == 400
    code, detail = status({"input": [{"image": base64.b64encode(b"garbage").decode()}]})
    assert code == 400 and "input 0" in detail


def test_a_bad_image_fails_only_its_own_request(server):
    good = {"input": [{"image": b64(FIXTURE / "inputs" / "gray150.png")}], "task": "retrieval.passage"}
    truncated = base64.b64encode((SAMPLES / "sample-page.png").read_bytes()[:3000]).decode()
    bad = {"input": ["text", "more text", {"image": truncated}]}
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda body: post(server, body), [good] * 6 + [bad]))
    assert [r.status_code for r in replies[:6]] == [200] * 6
    assert replies[6].status_code == 400 and replies[6].json()["detail"].startswith("input 2:")
    strip = base64.b64encode(_png(1, 400)).decode()  # aspect ratio 400: refused by the resize rules
    reply = post(server, {"input": [{"text": "x"}, {"image": strip}]})
    assert reply.status_code == 400 and reply.json()["detail"].startswith("input 1:")


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_more_malformed_requests_get_400_not_500(strict_server):
    def send(content: bytes) -> httpx.Response:
        return httpx.post(f"{strict_server}/v1/embeddings", content=content, timeout=30)

    assert send(b'{"input": "caf\xe9"}').status_code == 400  # not UTF-8
    assert send(b"[" * 100_000 + b"]" * 100_000).status_code in (400, 413)  # absurd nesting
    for body in ({"input": "x", "task": ["retrieval.query"]}, {"input": "x", "embedding_type": {"a": 1}},
                 {"input": "x", "max_pixels": 10**9}):  # fmt: skip
        assert post(strict_server, body, key=None).status_code == 400


def test_a_lone_surrogate_in_a_text_is_a_400_naming_its_input_not_a_500(strict_server):
    def send(content: bytes) -> httpx.Response:  # JSON's \ud800 escape: valid JSON, not valid Unicode text
        return httpx.post(f"{strict_server}/v1/embeddings", content=content, timeout=30)

    for content, index in ((b'{"input": "\\ud800"}', 0), (b'{"input": ["ok", {"text": "a\\udc00b"}]}', 1)):
        response = send(content)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"input {index}:") and "lone surrogate" in detail
    assert send(b'{"input": "\\ud83d\\ude00"}').status_code == 200  # a pair is one valid character


def test_a_keyless_server_refuses_to_start_on_all_interfaces():
    env = {k: v for k, v in os.environ.items() if k != "VISDOC_API_KEY"}
    cmd = [sys.executable, "-m", "visdoc", "serve", "--model", str(FIXTURE), "--host", "0.0.0.0",
           "--port", str(free_port())]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)  # refused before loading
    assert done.returncode == 2
    assert "'0.0.0.0'" in done.stderr and "--api-key" in done.stderr and "--allow-no-key" in done.stderr


def test_chunked_bodies_are_cut_off_at_the_limit(strict_server):
    def chunks():
        yield b'{"input": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(f"{strict_server}/v1/embeddings", content=chunks(), timeout=30)
    assert response.status_code == 413 and "over 1048576 bytes" in response.json()["detail"]


def test_backpressure_answers_429(strict_server):
    response = post(strict_server, {"input": ["a", "b", "c", "d"]}, key=None)  # 4 waiting inputs > queue of 3
    assert response.status_code == 429 and "retry later" in response.json()["detail"]


def batch_counts(url: str) -> tuple[float, float]:
    """(forward-pass groups so far, of which with a single input) from /metrics."""
    metrics = httpx.get(f"{url}/metrics").text
    count = float(re.search(r"^visdoc_batch_size_count (\S+)", metrics, re.M).group(1))
    singles = float(re.search(r'^visdoc_batch_size_bucket\{le="1.0"\} (\S+)', metrics, re.M).group(1))
    return count, singles


def test_64_concurrent_clients_are_batched(server):
    texts = [f"client {i} asks about revenue" for i in range(64)]
    count_before, singles_before = batch_counts(server)
    with ThreadPoolExecutor(max_workers=64) as pool:
        replies = list(pool.map(lambda t: post(server, {"input": t, "task": "retrieval.query"}), texts))
    assert all(r.status_code == 200 for r in replies)
    count, singles = batch_counts(server)
    passes, single_passes = count - count_before, singles - singles_before
    assert passes < 64 and passes > single_passes  # one-text requests shared forward passes
    metrics = httpx.get(f"{server}/metrics").text
    assert "visdoc_queue_depth" in metrics and "visdoc_request_seconds_count" in metrics


def test_remote_backend_matches_local_and_serves_the_frameworks(server, tiny_fp32):
    from llama_index.embeddings.visdoc import JinaV4Embedding

    from langchain_visdoc import JinaV4Embeddings
    from visdoc import JinaV4

    remote = JinaV4.remote(server, api_key=KEY)
    assert remote.dims == tiny_fp32.dims and remote.pixels == tiny_fp32.pixels
    texts = ["short", "a longer text " * 20]
    got = remote.encode_texts(texts, task="code", prompt_name="passage", multivector=True)
    want = tiny_fp32.encode_texts(texts, task="code", prompt_name="passage", multivector=True)
    np.testing.assert_allclose(got.dense, want.dense, atol=1e-5)
    assert [m.shape for m in got.multivector] == [m.shape for m in want.multivector]
    pdf_page = f"{SAMPLES / 'annual-report.pdf'}#page=2"
    np.testing.assert_allclose(remote.encode_images([pdf_page]).dense, tiny_fp32.encode_images([pdf_page]).dense,
                               atol=1e-5)  # fmt: skip
    langchain = JinaV4Embeddings(base_url=server, api_key=KEY)
    query = tiny_fp32.encode_texts(["revenue"], prompt_name="query").dense[0]
    np.testing.assert_allclose(langchain.embed_query("revenue"), query, atol=1e-5)
    llama = JinaV4Embedding(base_url=server, api_key=KEY)
    np.testing.assert_allclose(llama.get_text_embedding_batch(texts),
                               tiny_fp32.encode_texts(texts, prompt_name="passage").dense, atol=1e-5)  # fmt: skip
    with pytest.raises(Exception, match="401"):
        JinaV4.remote(server, api_key="wrong")


def test_cli_ingest_and_search_through_the_server(server, tmp_path):
    env = os.environ | {"VISDOC_EMBEDDING_URL": server, "VISDOC_API_KEY": KEY}
    cmd = [sys.executable, "-m", "visdoc", "ingest", str(SAMPLES), "--data-dir", str(tmp_path), "--workers", "0"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 pages/chunks embedded" in result.stdout and "loading" not in result.stderr  # no local model
    cmd = [sys.executable, "-m", "visdoc", "search", "revenue", "--data-dir", str(tmp_path), "--json"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and '"rank": 4' in result.stdout


def test_framework_stores_work_through_the_server(server, tmp_path):
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.visdoc import VisdocVectorStore as LlamaStore

    from langchain_visdoc import JinaV4Embeddings, VisdocVectorStore

    store = VisdocVectorStore(JinaV4Embeddings(base_url=server, api_key=KEY, task="text-matching"),
                              data_dir=tmp_path / "lc")  # fmt: skip
    store.add_texts(["quarterly revenue", "printer cartridge"], ids=["a", "b"])
    assert store.similarity_search("printer cartridge", k=1)[0].id == "b"
    store.close()
    llama = LlamaStore(embedding_url=server, embedding_api_key=KEY, data_dir=tmp_path / "li", task="text-matching")
    llama.add([TextNode(text="quarterly revenue", id_="r"), TextNode(text="printer cartridge", id_="p")])
    assert llama.query(VectorStoreQuery(query_str="quarterly revenue", similarity_top_k=1)).ids == ["r"]
    llama.close()


def test_limit_answers_carry_the_openai_error_shape_too(strict_server):
    """413 and 429 in OpenAI's error shape, with Jina's ``detail`` beside it (more in test_server_clients.py)."""
    openai = pytest.importorskip("openai")
    too_big = httpx.post(f"{strict_server}/v1/embeddings", content=b"{" + b" " * (2 << 20) + b"}")
    busy = post(strict_server, {"input": ["a", "b", "c", "d"]}, key=None)
    for response, status, kind in ((too_big, 413, "invalid_request_error"), (busy, 429, "rate_limit_error")):
        body = response.json()
        assert response.status_code == status and body["error"]["message"] == body["detail"], body
        assert body["error"]["type"] == kind
    client = openai.OpenAI(base_url=f"{strict_server}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError, match="server busy: .*; retry later"):
        client.embeddings.create(model=FIXTURE.name, input=["a", "b", "c", "d"])
