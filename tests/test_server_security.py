"""Who a keyless server answers: the search page only to loopback peers that name a loopback host,
and no key-less start on another interface without ``--allow-no-key``. Lone surrogates get a 4xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import FIXTURE, page_data_routes

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

REMOTE_PEERS = ["203.0.113.5", "10.0.0.2", "172.17.0.1", "::ffff:203.0.113.5", "2001:db8::1", "testclient", ""]
LOOPBACK_PEERS = ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"]
NON_LOOPBACK_BINDS = ["0.0.0.0", "::", "192.168.1.20", "2001:db8::1", "search.example.org", "localhost.example", ""]
LOOPBACK_BINDS = ["127.0.0.1", "127.0.1.1", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"]


@pytest.fixture(scope="module")
def keyless(tiny_fp32, tmp_path_factory):
    """The search page alone, with no API key, over an empty collection ``docs``."""
    from visdoc.server import UISettings, create_ui_app
    from visdoc.store import CollectionSpec, open_store

    root = tmp_path_factory.mktemp("keyless")
    with open_store("docs", CollectionSpec(dim=32, model=tiny_fp32.name), data_dir=root / "data"):
        pass
    app = create_ui_app(tiny_fp32, UISettings(data_dir=root / "data", collection="docs", work_dir=root / "work"))
    yield app
    app.state.search_page.close()


def status(app, peer: tuple[str, int] | None, host: str, method: str = "GET", path: str = "/ui/api/config",
           headers: dict[str, str] | None = None, **kwargs) -> int:  # fmt: skip
    """The status ``app`` answers a request from ``peer`` (the ASGI ``client``) with ``Host: host``."""
    if peer is None:
        return asyncio.run(_raw_status(app, method, path, host))

    async def send() -> int:
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.request(method, path, headers={"Host": host, **(headers or {})}, **kwargs)
            return response.status_code

    return asyncio.run(send())


async def _raw_status(app, method: str, path: str, host: str) -> int:
    """A hand-made scope with no client information (``scope["client"]`` is None)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", host.encode())], "client": None, "server": ("127.0.0.1", 8080)}  # fmt: skip
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_asgi_transport_default_peer_is_loopback_and_testclient_is_not(keyless):
    assert httpx.ASGITransport(app=keyless).client[0] == "127.0.0.1"
    assert TestClient(keyless).get("/ui/api/config", headers={"Host": "localhost"}).status_code == 403


@pytest.mark.parametrize("peer", REMOTE_PEERS)
def test_a_remote_peer_is_refused_even_when_it_sends_host_localhost(keyless, peer):
    for host in ("localhost", "localhost:8080", "127.0.0.1", "[::1]:8080"):
        assert status(keyless, (peer, 1234), host) == 403, host
    assert status(keyless, (peer, 1234), "localhost", path="/ui/") == 200  # the page itself holds no data


def test_every_api_and_file_route_refuses_a_remote_peer(keyless):
    routes = page_data_routes(keyless)
    assert len(routes) == 11
    for method, url in routes:
        code = status(keyless, ("203.0.113.5", 1234), "localhost", method, url,
                      params={"q": "x", "filename": "a.pdf"}, json={"query": "x"})  # fmt: skip
        assert code == 403, (method, url)


def test_a_request_without_client_information_is_refused(keyless):
    assert status(keyless, None, "localhost") == 403
    assert status(keyless, None, "localhost", path="/files/docs/" + "0" * 32 + "/a.pdf") == 403


@pytest.mark.parametrize("peer", LOOPBACK_PEERS)
def test_a_loopback_peer_naming_a_loopback_host_is_served(keyless, peer):
    for host in ("localhost", "localhost:8080", "127.0.0.1:8080", "[::1]"):
        assert status(keyless, (peer, 1234), host) == 200, host
    assert status(keyless, (peer, 1234), "localhost", path="/ui/api/collections") == 200


@pytest.mark.parametrize("peer", LOOPBACK_PEERS)
def test_a_loopback_peer_naming_a_foreign_host_is_refused(keyless, peer):
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.nip.io", "testserver", ""):
        assert status(keyless, (peer, 1234), host) == 403, host


def test_with_a_key_a_remote_peer_is_served_with_the_key(tiny_fp32, tmp_path):
    from visdoc.server import UISettings, create_ui_app

    app = create_ui_app(tiny_fp32, UISettings(data_dir=tmp_path / "data", work_dir=tmp_path / "work"), api_key="k")
    try:
        assert status(app, ("203.0.113.5", 1234), "search.example.org") == 401
        assert status(app, ("203.0.113.5", 1234), "search.example.org", headers={"Authorization": "Bearer k"}) == 200
    finally:
        app.state.search_page.close()


# -- starting without a key ---------------------------------------------------------------------


@pytest.fixture
def uvicorn_runs(monkeypatch) -> list[dict]:
    """``uvicorn.run`` recording its calls instead of serving."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    return calls


@pytest.mark.parametrize("host", NON_LOOPBACK_BINDS)
def test_serve_refuses_a_non_loopback_bind_without_a_key(tiny_fp32, uvicorn_runs, host):
    from visdoc.errors import VisdocError
    from visdoc.server import serve

    with pytest.raises(VisdocError) as refused:
        serve(tiny_fp32, host=host, port=8123)
    message = str(refused.value)
    assert repr(host) in message and "--api-key" in message and "$VISDOC_API_KEY" in message
    assert "--allow-no-key" in message
    assert uvicorn_runs == []


@pytest.mark.parametrize("ui_only", [False, True])
def test_serve_starts_on_0000_with_a_key_or_the_explicit_flag(tiny_fp32, uvicorn_runs, tmp_path, ui_only):
    from visdoc.server import UISettings, serve

    ui = UISettings(data_dir=tmp_path / "data", work_dir=tmp_path / "work")
    serve(tiny_fp32, host="0.0.0.0", port=8123, ui_only=ui_only, ui=ui, api_key="k")
    serve(tiny_fp32, host="0.0.0.0", port=8123, ui_only=ui_only, ui=ui, allow_no_key=True)
    assert [(c["host"], c["port"]) for c in uvicorn_runs] == [("0.0.0.0", 8123)] * 2
    for call in uvicorn_runs:
        call["app"].state.search_page.close()


@pytest.mark.parametrize("host", LOOPBACK_BINDS)
def test_serve_starts_on_loopback_without_a_key(tiny_fp32, uvicorn_runs, host):
    from visdoc.server import serve

    serve(tiny_fp32, host=host, port=8123)
    assert [c["host"] for c in uvicorn_runs] == [host]


@pytest.mark.parametrize("command", ["serve", "ui"])
def test_cli_refuses_0000_without_a_key_before_loading_the_model(command, uvicorn_runs, monkeypatch, tmp_path,
                                                                   capsys):  # fmt: skip
    from visdoc.cli import main

    monkeypatch.delenv("VISDOC_API_KEY", raising=False)
    monkeypatch.setattr("visdoc.cli.commands._load_model", lambda *a: pytest.fail("loaded the model"))
    monkeypatch.setattr("visdoc.cli.commands._local_model", lambda *a: pytest.fail("loaded the model"))
    argv = [command, "--host", "0.0.0.0", "--model", str(FIXTURE), "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "'0.0.0.0'" in error and "--api-key" in error and "--allow-no-key" in error
    assert uvicorn_runs == []


@pytest.mark.parametrize("command", ["serve", "ui"])
def test_cli_starts_on_0000_with_allow_no_key_or_a_key(command, uvicorn_runs, monkeypatch, tmp_path):
    from visdoc.cli import main

    monkeypatch.delenv("VISDOC_API_KEY", raising=False)
    argv = [command, "--host", "0.0.0.0", "--model", str(FIXTURE), "--data-dir", str(tmp_path)]
    assert main([*argv, "--allow-no-key"]) == 0
    monkeypatch.setenv("VISDOC_API_KEY", "from-the-environment")
    assert main(argv) == 0
    assert [c["host"] for c in uvicorn_runs] == ["0.0.0.0"] * 2
    for call in uvicorn_runs:
        call["app"].state.search_page.close()


def test_loopback_address_rules():
    from visdoc.server.validation import is_loopback_address, is_loopback_host

    for peer in LOOPBACK_PEERS:
        assert is_loopback_address(peer), peer
    for peer in [*REMOTE_PEERS, None, "localhost", "[::1]", "::ffff:10.0.0.1", "0.0.0.0"]:
        assert not is_loopback_address(peer), peer
    for host in LOOPBACK_BINDS:
        assert is_loopback_host(host), host
    for host in NON_LOOPBACK_BINDS:
        assert not is_loopback_host(host), host


# -- lone surrogates ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tiny_fp32):
    from visdoc.server import create_app

    with TestClient(create_app(tiny_fp32), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "index"),
    [(b'{"input": "\\ud800"}', 0), (b'{"input": ["fine", "a\\udfffb"]}', 1),
     (b'{"input": [{"text": "ok"}, {"text": "x\\ud83d"}], "task": "retrieval.query"}', 1)],
)  # fmt: skip
def test_a_lone_surrogate_in_an_embedding_input_is_a_400_naming_the_input(api, body, index):
    response = api.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"input {index}:") and "surrogate" in detail
    paired = api.post("/v1/embeddings", content=b'{"input": "\\ud83d\\ude00"}')  # a valid pair is one character
    assert paired.status_code == 200


@pytest.mark.parametrize(
    ("body", "name"),
    [(b'{"query": "\\ud800"}', "query"), (b'{"query": "revenue \\udc00 by quarter", "k": 3}', "query"),
     (b'{"query": "' + b"\\ud800" * 2001 + b'"}', "query"), (b'{"query": "x", "k": "\\ud800"}', "k"),
     (b'{"query": "x", "documents": "\\ud800"}', "documents")],
)  # fmt: skip
def test_a_lone_surrogate_in_a_page_search_is_a_422_naming_the_parameter(keyless, body, name):
    client = TestClient(keyless, client=("127.0.0.1", 1234), raise_server_exceptions=False)
    response = client.post("/ui/api/collections/docs/search", content=body,
                           headers={"Host": "localhost", "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(name) and "surrogate" in detail, detail
    fine = client.post("/ui/api/collections/docs/search", json={"query": "revenue"}, headers={"Host": "localhost"})
    assert fine.status_code == 200
    unknown = client.post("/ui/api/collections/docs/search", content=b'{"query": "x", "documents": ["\\ud800"]}',
                          headers={"Host": "localhost", "Content-Type": "application/json"})  # fmt: skip
    assert unknown.status_code == 404  # checked as a document id, like any malformed one


def test_the_page_checks_its_query_parameters_for_lone_surrogates():
    from visdoc.server.validation import UIError, check_text

    assert check_text("caf\u00e9 \U0001f600", "q") == "caf\u00e9 \U0001f600"
    with pytest.raises(UIError) as refused:
        check_text("ab\udc80", "q")
    assert refused.value.status == 422 and str(refused.value).startswith("q ")
    assert "U+DC80" in str(refused.value) and "character 2" in str(refused.value)


@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"])
def test_a_request_relayed_by_a_local_proxy_is_refused_without_a_key(keyless, header):
    assert status(keyless, ("127.0.0.1", 1234), "localhost") == 200
    assert status(keyless, ("127.0.0.1", 1234), "localhost", headers={header: "203.0.113.5"}) == 403
