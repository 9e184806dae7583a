"""The search page's API in-process (FastAPI TestClient): auth, path checks, search, heatmaps, images, uploads."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest

from conftest import FIXTURE, page_data_routes

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

SAMPLES = FIXTURE.parents[2] / "examples" / "data"
KEY = "ui-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
UPLOAD = AUTH | {"Content-Type": "application/octet-stream"}


def make_pdf(path, lines: list[str]) -> None:
    import pymupdf

    doc = pymupdf.open()
    for text in lines:
        page = doc.new_page(width=612, height=792)
        page.insert_text((72, 100), text, fontsize=28)
    doc.save(path)
    doc.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_fp32):
    """A collection with the sample report (3 PDF pages), the sample page image and a changed file."""
    from visdoc.ingest import Ingestor
    from visdoc.points import IMAGE_GRID as GRID_FIELD
    from visdoc.store import CollectionSpec, PagePoint, open_store

    root = tmp_path_factory.mktemp("ui")
    docs = root / "docs"
    docs.mkdir()
    for name in ("annual-report.pdf", "sample-page.png"):
        shutil.copy(SAMPLES / name, docs / name)
    make_pdf(docs / "changing.pdf", ["first version"])
    spec = CollectionSpec(dim=32, model=tiny_fp32.name)
    with open_store("docs", spec, data_dir=root / "data") as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([docs])
        # a page stored before grids were recorded: the page drops its image_grid
        report = next(r for r in store.iter_records() if r.payload["file_name"] == "annual-report.pdf")
        [full] = store.retrieve([report.id], with_vectors=True)
        payload = {k: v for k, v in full.payload.items() if k != GRID_FIELD}
        store.upsert([PagePoint(full.id, full.dense, full.multivector, payload)])
        assert GRID_FIELD not in store.retrieve([full.id])[0].payload
    make_pdf(docs / "changing.pdf", ["second version"])  # changed after ingestion: never served
    return root


@pytest.fixture(scope="module")
def client(data_dir, tiny_fp32):
    from visdoc.server import UISettings, create_ui_app

    settings = UISettings(data_dir=data_dir / "data", collection="docs", max_upload_bytes=2 << 20)
    with TestClient(create_ui_app(tiny_fp32, settings, api_key=KEY)) as c:
        yield c


def hits(client, query="revenue by quarter", **body) -> list[dict]:
    response = client.post("/ui/api/collections/docs/search", json={"query": query, **body}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def first(client, file_name: str) -> dict:
    return next(h for h in hits(client, k=50) if h["file_name"] == file_name)


def test_page_and_assets_load_without_a_key_and_the_api_needs_it(client):
    page = client.get("/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from elsewhere
    assert client.get("/ui/static/app.js").status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    assert client.get("/ui/api/config").status_code == 401
    assert client.get("/ui/api/config", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/ui/api/config", headers=AUTH).json()["auth"] is True
    assert client.post("/ui/api/collections/docs/search", json={"query": "x"}).status_code == 401
    assert client.post("/ui/api/collections/docs/uploads?filename=a.pdf", content=b"%PDF").status_code == 401
    assert client.post("/ui/api/session").status_code == 401


def test_images_and_files_take_the_key_or_a_valid_session_cookie(client, tiny_fp32):
    hit = first(client, "annual-report.pdf")
    client.cookies.clear()
    assert client.get(hit["thumb_url"]).status_code == 401
    assert client.get(hit["file_url"].split("#")[0]).status_code == 401
    assert client.get(hit["thumb_url"], headers=AUTH).status_code == 200
    for forged in ("1", "99999999999.00", f"{int(time.time()) + 600}.abc", ""):
        client.cookies.set("visdoc_session", forged)
        assert client.get(hit["thumb_url"]).status_code == 401
    client.cookies.clear()
    session = client.post("/ui/api/session", headers=AUTH)
    assert session.status_code == 204
    cookie = session.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=3600" in cookie
    assert client.get(hit["thumb_url"]).status_code == 200  # the cookie now
    assert client.get("/ui/api/config").status_code == 401  # but the JSON API still wants the header
    client.cookies.clear()


def test_an_expired_session_cookie_with_a_valid_signature_is_refused(client, monkeypatch):
    from visdoc.server import ui

    hit = first(client, "annual-report.pdf")
    client.cookies.clear()
    monkeypatch.setattr(ui, "SESSION_S", -60)  # the server signs a value that expired a minute ago
    issued = client.post("/ui/api/session", headers=AUTH).headers["set-cookie"]
    monkeypatch.undo()
    value = issued.split("visdoc_session=", 1)[1].split(";", 1)[0]
    expires, _, signature = value.partition(".")
    assert int(expires) < time.time() and len(signature) == 64
    client.cookies.clear()
    client.cookies.set("visdoc_session", value)
    assert client.get(hit["thumb_url"]).status_code == 401
    client.cookies.clear()
    fresh = client.post("/ui/api/session", headers=AUTH)  # the same steps with a live expiry work
    assert fresh.status_code == 204 and client.get(hit["thumb_url"]).status_code == 200
    client.cookies.clear()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/api/collections/docs/pages/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/ui/api/collections/docs/pages/%2Fetc%2Fpasswd/image?size=page",
        "/ui/api/collections/..%2F..%2Fetc/pages/00000000-0000-0000-0000-000000000000/image",
        "/ui/api/collections/docs/pages/00000000-0000-0000-0000-000000000000/image",
        "/ui/api/collections/nope/pages/00000000-0000-0000-0000-000000000000/image",
        "/files/docs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/docs/0123456789abcdef0123456789abcdef/passwd",
        "/files/docs/..%2F..%2F..%2Fetc/passwd/passwd",
        "/files/..%2Fdata/0123456789abcdef0123456789abcdef/a.pdf",
        "/ui/static/..%2Fui.py",
        "/ui/static/ui.py",
        "/ui/../etc/passwd",
    ],
)
def test_path_traversal_and_unknown_ids_are_not_found(client, path):
    response = client.get(path, headers=AUTH)
    assert response.status_code in (403, 404), (path, response.status_code)
    assert b"root:" not in response.content


def test_malformed_ids_of_stored_pages_and_documents_are_not_found(client):
    hit = first(client, "annual-report.pdf")
    point, doc, name = hit["id"], hit["document_id"], hit["file_name"]
    pages = "/ui/api/collections/docs/pages"
    assert client.get(f"{pages}/{point}/image", headers=AUTH).status_code == 200
    assert client.get(f"{pages}/{point}/heatmap", params={"q": "x"}, headers=AUTH).status_code == 200
    assert point.upper() != point and doc.upper() != doc
    for bad in (point.upper(), point.replace("-", ""), f"{{{point}}}", f"urn:uuid:{point}", point[:-1], point + "0",
                f" {point}", f"{point}/../{point}"):  # fmt: skip
        assert client.get(f"{pages}/{quote(bad, safe='')}/image", headers=AUTH).status_code == 404, bad
        heat = client.get(f"{pages}/{quote(bad, safe='')}/heatmap", params={"q": "x"}, headers=AUTH)
        assert heat.status_code == 404, bad
    assert client.get(f"/files/docs/{doc}/{name}", headers=AUTH).status_code == 200
    for bad in (doc.upper(), doc[:-1], doc + "0", "g" + doc[1:], f"{doc[:16]}-{doc[16:]}", f"{doc[:-1]}%00"):
        assert client.get(f"/files/docs/{bad}/{name}", headers=AUTH).status_code == 404, bad


def test_ids_are_checked_before_the_store_is_opened(client):
    missing = "/ui/api/collections/nope"  # a collection that does not exist: its store is never reached
    for url in (f"{missing}/pages/not-a-uuid/heatmap?q=x", f"{missing}/pages/not-a-uuid/image"):
        response = client.get(url, headers=AUTH)
        assert response.status_code == 404 and response.json()["detail"] == "no such page", url
    response = client.get("/files/nope/not-a-document/a.pdf", headers=AUTH)
    assert response.status_code == 404 and response.json()["detail"] == "no such document"
    response = client.post(f"{missing}/search", json={"query": "x", "documents": ["../x"]}, headers=AUTH)
    assert response.status_code == 404 and response.json()["detail"] == "no such document"
    assert "does not exist" in client.post(f"{missing}/search", json={"query": "x"}, headers=AUTH).text


def test_files_are_served_only_by_their_registered_name_and_content(client, data_dir):
    hit = first(client, "annual-report.pdf")
    url = hit["file_url"]
    assert url.endswith(f"#page={hit['page'] + 1}")
    response = client.get(url.split("#")[0], headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.content == (SAMPLES / "annual-report.pdf").read_bytes()
    assert "inline" in response.headers["content-disposition"]
    other = url.split("#")[0].rsplit("/", 1)[0] + "/sample-page.png"  # right document, other name
    assert client.get(other, headers=AUTH).status_code == 404
    changed = first(client, "changing.pdf")
    assert client.get(changed["file_url"].split("#")[0], headers=AUTH).status_code == 404
    assert client.get(changed["thumb_url"], headers=AUTH).status_code == 404
    assert client.get(hit["thumb_url"].replace("size=thumb", "size=..%2Fx"), headers=AUTH).status_code == 400


def test_search_results_filters_and_collections(client):
    results = hits(client, k=50)
    assert {h["file_name"] for h in results} == {"annual-report.pdf", "sample-page.png", "changing.pdf"}
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    report = [h for h in results if h["file_name"] == "annual-report.pdf"]
    assert sorted(h["page"] for h in report) == [0, 1, 2] and all(h["snippet"] for h in report)
    assert report[0]["thumb_url"] and report[0]["image_url"] and report[0]["heatmap_url"]
    doc = report[0]["document_id"]
    assert {h["document_id"] for h in hits(client, documents=[doc])} == {doc}
    bad = client.post("/ui/api/collections/docs/search", json={"query": "x", "documents": ["../x"]}, headers=AUTH)
    assert bad.status_code == 404
    listing = client.get("/ui/api/collections/docs/documents", headers=AUTH).json()
    assert listing["truncated"] is False
    assert {d["file_name"]: d["pages"] for d in listing["documents"]} == {"annual-report.pdf": 3, "changing.pdf": 1,
                                                                           "sample-page.png": 1}  # fmt: skip
    names = [c["name"] for c in client.get("/ui/api/collections", headers=AUTH).json()]
    assert names[0] == "docs"
    missing = client.post("/ui/api/collections/none/search", json={"query": "x"}, headers=AUTH)
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]


MODES = ["rerank", "hybrid", "lexical", "mmr", "dense", "multivector"]
LOGISTICS = ("annual-report.pdf", 0)  # the one page whose text says "cold-chain logistics"


@pytest.mark.parametrize("mode", MODES)
def test_search_answers_every_mode(client, mode):
    results = hits(client, "cold-chain logistics", k=10, mode=mode)
    assert results and all(set(h) >= {"id", "score", "snippet", "snippet_parts", "thumb_url"} for h in results)
    found = [(h["file_name"], h["page"]) for h in results]
    if mode == "lexical":
        assert found == [LOGISTICS]  # no other page holds a term of the query
    elif mode == "hybrid":
        assert found[0] == LOGISTICS  # in both lists: it outranks each list's other pages
    else:
        assert LOGISTICS in found  # the vectors of the tiny checkpoint are random: anywhere
    if mode != "mmr":
        assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    report = next(h for h in results if (h["file_name"], h["page"]) == LOGISTICS)
    assert {p["text"].lower() for p in report["snippet_parts"] if p["match"]} >= {"logistics", "cold", "chain"}


def test_lexical_matches_are_marked_in_the_snippet_parts(client):
    from visdoc import lexical

    query = "Quarterly REVENUE growth"
    for hit in hits(client, query, k=10, mode="hybrid"):
        parts = hit["snippet_parts"]
        assert "".join(p["text"] for p in parts) == hit["snippet"]  # the parts are the snippet, cut up
        marked = [p["text"] for p in parts if p["match"]]
        assert all(set(lexical.terms(word)) & set(lexical.terms(query)) for word in marked)
        unmarked = " ".join(p["text"] for p in parts if not p["match"])
        assert not set(lexical.terms(unmarked)) & set(lexical.terms(query))  # every match is marked
        if hit["file_name"] == "annual-report.pdf" and hit["page"] == 1:
            assert {"Quarterly", "revenue", "growth"} <= set(marked)
    assert all(not p["match"] for h in hits(client, "the of and", k=5) for p in h["snippet_parts"])  # stop words


def test_unknown_modes_and_queries_the_lexical_stage_refuses_get_422(client):
    url, many = "/ui/api/collections/docs/search", " ".join(f"w{i}" for i in range(300))
    response = client.post(url, json={"query": "x", "mode": "sparse"}, headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mode"] and "unknown search mode 'sparse'" in error["msg"]
    assert "rerank, dense, multivector, lexical, hybrid, mmr" in error["msg"]
    for mode in ("lexical", "hybrid"):
        response = client.post(url, json={"query": many, "mode": mode}, headers=AUTH)
        assert response.status_code == 422 and "300 distinct terms" in response.json()["detail"]
    assert hits(client, "the of and", mode="lexical") == []  # only stop words: no lexical match
    assert len(hits(client, "the of and", mode="hybrid", k=3)) == 3  # hybrid runs as rerank


def test_snippets_centre_on_and_mark_words_sharing_a_lexical_term_with_the_query():
    from visdoc.server.results import snippet_parts

    def marked(text: str, query: str) -> list[str]:
        return [p["text"] for p in snippet_parts(text, query) if p["match"]]

    assert marked("Invoice INV-2025-0042, due 2025-03-01", "inv 2025 0042") == ["INV", "2025", "0042", "2025"]
    assert marked("Le CAFÉ et le cafe\u0301 crème", "cafe") == ["CAFÉ", "cafe\u0301"]  # folded, NFD included
    assert marked("ＩＮＶ-2025 ﬁle", "inv file") == ["ＩＮＶ", "ﬁle"]  # NFKC: full-width and ligatures
    assert marked("東京都庁の予算 2025年度", "東京 2025") == ["東京", "2025"]  # CJK by character pair
    assert marked("Москва и Αθήνα", "москва αθηνα") == ["Москва", "Αθήνα"]
    assert marked("the and of", "the") == [] and marked("no match here", "") == []
    text = "filler words " * 400 + "the part ZX-4471-Q ships " + "more filler " * 400
    parts = snippet_parts(text, "zx 4471 q")
    assert parts[0] == {"text": "…", "match": False} and parts[-1] == {"text": "…", "match": False}
    assert [p["text"] for p in parts if p["match"]] == ["ZX", "4471", "Q"]
    assert len("".join(p["text"] for p in parts)) <= 222
    huge = "word " * 200_000 + "INV-2025-0042"  # 1 MB of text: the window falls back to a plain find
    tail = snippet_parts(huge, "inv 2025 0042")
    assert [p["text"] for p in tail if p["match"]] == ["INV", "2025", "0042"]


def test_the_page_offers_the_modes_and_builds_marks_without_html():
    from visdoc.store import SEARCH_MODES

    static = FIXTURE.parents[2] / "connectors" / "visdoc" / "server" / "static"
    html, script = (static / "index.html").read_text(), (static / "app.js").read_text()
    import re

    offered = re.findall(r'<option value="(\w+)"', html.split('id="mode"')[1].split("</select>")[0])
    assert offered == ["rerank", "hybrid", "lexical", "mmr", "dense"] and set(offered) <= set(SEARCH_MODES)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "snippet_parts" in script


def test_documents_listing_is_capped_and_says_so(client, monkeypatch):
    from visdoc.server import listing as library

    page = client.app.state.search_page
    url = "/ui/api/collections/docs/documents"
    try:
        page.library.invalidate("docs")
        monkeypatch.setattr(library, "MAX_DOCUMENTS", 2)
        listing = client.get(url, headers=AUTH).json()
        assert listing["truncated"] is True and len(listing["documents"]) == 2
        page.library.invalidate("docs")
        monkeypatch.setattr(library, "MAX_DOCUMENTS", 1000)
        monkeypatch.setattr(library, "MAX_DOCUMENT_RECORDS", 1)  # stops reading points after the first
        listing = client.get(url, headers=AUTH).json()
        assert listing["truncated"] is True and [d["pages"] for d in listing["documents"]] == [1]
    finally:
        page.library.invalidate("docs")


def test_heatmap_matches_the_stored_tokens_and_the_displayed_image(client, tiny_fp32):
    from PIL import Image

    for hit in hits(client, k=50):
        heat = client.get(hit["heatmap_url"], params={"q": "revenue by quarter"}, headers=AUTH)
        assert heat.status_code == 200, heat.text  # the page without a stored grid gets a derived one
        heat = heat.json()
        rows, cols = heat["rows"], heat["cols"]
        overall = np.array(heat["overall"])
        per_token = np.array(heat["per_token"])
        assert overall.shape == (rows * cols,) and per_token.shape == (len(heat["tokens"]), rows * cols)
        np.testing.assert_allclose(overall, per_token.max(axis=0), atol=1e-4)
        assert heat["tokens"][0] == "Query"
        if hit["file_name"] == "changing.pdf":
            continue  # its source changed: no image
        page = Image.open(io.BytesIO(client.get(hit["image_url"], headers=AUTH).content))
        assert page.format == "WEBP"
        if hit["file_name"].endswith(".pdf"):  # rendered as for the model: 28 px per merged token
            assert page.size == (28 * cols, 28 * rows)
        else:  # the image's own aspect ratio, as the model resized it
            assert abs(page.width / page.height - cols / rows) < 0.05
        thumb = Image.open(io.BytesIO(client.get(hit["thumb_url"], headers=AUTH).content))
        assert thumb.width < page.width and thumb.width * thumb.height <= 96_000


def test_upload_runs_ingestion_in_the_background(client, tmp_path):
    pdf = tmp_path / "Quarterly notes (draft).pdf"
    make_pdf(pdf, ["Shipping volumes by region", "Warehouse capacity plan"])
    url = "/ui/api/collections/uploaded/uploads"
    response = client.post(url, params={"filename": "../../" + pdf.name}, content=pdf.read_bytes(), headers=UPLOAD)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["file_name"] == "Quarterly notes _draft_.pdf" and "path" not in job
    deadline = time.time() + 120
    while job["state"] in ("queued", "embedding") and time.time() < deadline:
        time.sleep(0.2)
        job = client.get(f"/ui/api/jobs/{job['id']}", headers=AUTH).json()
    assert job["state"] == "done" and job["done"] == job["total"] == 2 and job["pages_stored"] == 2
    results = client.post("/ui/api/collections/uploaded/search", json={"query": "warehouse"}, headers=AUTH).json()
    assert sorted(h["page"] for h in results["results"]) == [0, 1]
    assert client.get(results["results"][0]["thumb_url"], headers=AUTH).status_code == 200
    again = client.post(url, params={"filename": "copy.pdf"}, content=pdf.read_bytes(), headers=UPLOAD).json()
    while again["state"] in ("queued", "embedding"):
        time.sleep(0.2)
        again = client.get(f"/ui/api/jobs/{again['id']}", headers=AUTH).json()
    assert again["state"] == "done" and again["pages_stored"] == 0 and again["message"] == "already stored"
    assert any(j["id"] == job["id"] for j in client.get("/ui/api/jobs", headers=AUTH).json())


def test_upload_limits(client):
    url = "/ui/api/collections/uploaded/uploads"
    too_big = client.post(url, params={"filename": "big.pdf"}, content=b"%PDF" + b"0" * (2 << 20), headers=UPLOAD)
    assert too_big.status_code == 413
    assert client.post(url, params={"filename": "x.exe"}, content=b"MZ", headers=UPLOAD).status_code == 415
    assert client.post(url, params={"filename": "x.svg"}, content=b"<svg/>", headers=UPLOAD).status_code == 415
    assert client.post(url, params={"filename": "empty.pdf"}, content=b"", headers=UPLOAD).status_code == 400
    text = AUTH | {"Content-Type": "text/plain"}  # what another site could send without a CORS preflight
    assert client.post(url, params={"filename": "a.pdf"}, content=b"%PDF", headers=text).status_code == 415
    evil = UPLOAD | {"Origin": "http://evil.example"}
    assert client.post(url, params={"filename": "a.pdf"}, content=b"%PDF", headers=evil).status_code == 403
    assert client.post("/ui/api/session", headers=AUTH | {"Origin": "http://evil.example"}).status_code == 403
    same = UPLOAD | {"Origin": "http://testserver"}
    assert client.post(url, params={"filename": "x.exe"}, content=b"MZ", headers=same).status_code == 415
    bad_name = client.post("/ui/api/collections/..%2Fx/uploads", params={"filename": "a.pdf"}, content=b"%PDF",
                           headers=UPLOAD)  # fmt: skip
    assert bad_name.status_code == 404
    broken = client.post(url, params={"filename": "broken.pdf"}, content=b"not a pdf", headers=UPLOAD).json()
    while broken["state"] in ("queued", "embedding"):
        time.sleep(0.1)
        broken = client.get(f"/ui/api/jobs/{broken['id']}", headers=AUTH).json()
    assert broken["state"] == "failed" and "cannot open PDF" in broken["message"]


def test_static_assets_ship_as_package_data():
    import fnmatch
    import re

    tomllib = pytest.importorskip("tomllib")
    from visdoc.server.ui import ASSETS

    root = FIXTURE.parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = root / "connectors" / "visdoc" / "server" / "static"
    shipped = {f.name for f in static.iterdir() if any(fnmatch.fnmatch(f"static/{f.name}", p)
                                                        for p in patterns["visdoc.server"])}  # fmt: skip
    assert shipped == {f.name for f in static.iterdir()} == {"index.html", *ASSETS}
    html = (static / "index.html").read_text()
    assert set(re.findall(r'(?:src|href)="([^"]+)"', html)) == {f"/ui/static/{name}" for name in ASSETS}


def test_cli_ui_serves_the_page_alone_and_serve_can_leave_it_out(tmp_path):
    import subprocess
    import sys

    import httpx
    from test_server import free_port

    def launch(*args: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        cmd = [sys.executable, "-m", "visdoc", *args, "--model", str(FIXTURE), "--port", str(port),
               "--data-dir", str(tmp_path)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                time.sleep(0.2)
        proc.kill()
        raise RuntimeError(proc.stderr.read())

    proc, url = launch("ui")
    try:
        assert httpx.get(f"{url}/ui").status_code == 200
        config = httpx.get(f"{url}/ui/api/config").json()  # no key given: open
        assert config["collection"] == "visdoc" and config["auth"] is False
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "x"}).status_code == 404  # the page alone
    finally:
        proc.terminate()
        proc.wait(30)
    proc, url = launch("serve", "--no-ui")
    try:
        assert httpx.get(f"{url}/ui").status_code == 404
    finally:
        proc.terminate()
        proc.wait(30)


# -- without a key: loopback peers naming a loopback host only (other machines, DNS rebinding) -------

LOOPBACK = ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:8080", "LocalHost:1"]
HOSTILE = ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io:8080", "[::2]:8080",
           "localhost:", "testserver"]  # fmt: skip


@pytest.fixture(scope="module")
def open_client(data_dir, tiny_fp32, tmp_path_factory):
    """The page with no API key, called from a loopback peer (TestClient's own is ``testclient``; its
    stores are never opened by these tests)."""
    from visdoc.server import UISettings, create_ui_app

    settings = UISettings(data_dir=data_dir / "data", collection="docs", work_dir=tmp_path_factory.mktemp("open"))
    with TestClient(create_ui_app(tiny_fp32, settings), client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.mark.parametrize("host", LOOPBACK)
def test_without_a_key_loopback_hosts_reach_the_api(open_client, host):
    config = open_client.get("/ui/api/config", headers={"Host": host})
    assert config.status_code == 200 and config.json()["auth"] is False
    assert open_client.get("/ui/api/jobs", headers={"Host": host}).status_code == 200
    page = "/ui/api/collections/docs/pages/not-a-uuid/image"
    assert open_client.get(page, headers={"Host": host}).status_code == 404  # past the Host check
    assert open_client.get("/files/docs/not-a-document/a.pdf", headers={"Host": host}).status_code == 404


@pytest.mark.parametrize("host", HOSTILE)
def test_without_a_key_other_hosts_get_403_on_every_api_and_file_route(open_client, host):
    routes = page_data_routes(open_client.app)  # every route of the API and files is in the schema
    assert len(routes) == 11
    for method, url in routes:
        response = open_client.request(method, url, params={"q": "x", "filename": "a.pdf"}, json={"query": "x"},
                                       headers={"Host": host})  # fmt: skip
        assert response.status_code == 403, (method, url, response.text)
        assert "--api-key" in response.json()["detail"]
    assert open_client.get("/ui/", headers={"Host": host}).status_code == 200  # the page itself holds no data


@pytest.mark.parametrize("peer", ["203.0.113.5", "::ffff:198.51.100.7", "testclient"])
def test_without_a_key_other_machines_get_403_whatever_host_they_name(open_client, peer):
    remote = TestClient(open_client.app, client=(peer, 40000))  # no lifespan: the app is open_client's
    for host in LOOPBACK:
        for path in ("/ui/api/config", "/ui/api/jobs", "/files/docs/not-a-document/a.pdf"):
            response = remote.get(path, headers={"Host": host})
            assert response.status_code == 403, (host, path)
            assert "--api-key" in response.json()["detail"]
    assert remote.get("/ui/", headers={"Host": "localhost"}).status_code == 200


def test_with_a_key_any_host_is_served(client):
    for host in ("search.example.org", "evil.example:8080"):
        assert client.get("/ui/api/config", headers=AUTH | {"Host": host}).status_code == 200
        assert client.get("/ui/api/config", headers={"Host": host}).status_code == 401


@pytest.mark.parametrize(
    ("host", "name"),
    [("LOCALHOST:80", "localhost"), ("[::1]:8080", "::1"), ("[::1]", "::1"), ("127.0.0.1", "127.0.0.1"),
     ("a.example:x", "a.example:x"), ("[::1", "[::1"), ("", "")],
)  # fmt: skip
def test_host_name(host, name):
    from visdoc.server.ui import host_name

    assert host_name(host) == name


# -- the upload queue and shutdown -------------------------------------------------------------------


async def chunks(*parts: bytes):
    for part in parts:
        yield part


def test_a_closed_library_opens_no_store_and_closes_its_client(tmp_path, tiny_fp32):
    from visdoc.server import UISettings
    from visdoc.server.library import Library
    from visdoc.server.validation import UIError

    library = Library(tiny_fp32, UISettings(data_dir=tmp_path))
    closed = []

    class Client:
        def close(self) -> None:
            closed.append(True)

    library.stores._client = Client()
    library.close()
    assert closed == [True] and library.stores._client is None
    for call in (lambda: library.store("docs", create=True), library.stores._qdrant):
        with pytest.raises(UIError) as refused:
            call()
        assert refused.value.status == 503


def test_jobs_close_waits_for_the_running_ingestion_and_refuses_new_uploads(tmp_path, tiny_fp32):
    from visdoc.server import UISettings
    from visdoc.server.jobs import Jobs
    from visdoc.server.library import Library
    from visdoc.server.validation import UIError

    library = Library(tiny_fp32, UISettings(data_dir=tmp_path))
    jobs = Jobs(library)
    started, release, finished = threading.Event(), threading.Event(), []

    def run(job) -> None:
        started.set()
        release.wait(10)
        finished.append(job.id)
        job.state = "done"

    jobs._run = run
    job = asyncio.run(jobs.receive("docs", "a.png", chunks(b"\x89PNG", b"data"), None))
    assert started.wait(10)
    closer = threading.Thread(target=jobs.close)
    closer.start()
    time.sleep(0.3)
    assert closer.is_alive()  # close() waits for the running ingestion ...
    release.set()
    closer.join(10)
    assert not closer.is_alive() and finished == [job.id]  # ... until it is out of the store
    with pytest.raises(UIError) as refused:
        asyncio.run(jobs.receive("docs", "b.png", chunks(b"x"), None))
    assert refused.value.status == 503
    library.close()


def test_an_ingestion_stopped_by_shutdown_neither_stores_nor_optimizes(tiny_fp32, tmp_path):
    from visdoc.ingest import IngestCancelled, Ingestor
    from visdoc.server import UISettings
    from visdoc.server.jobs import Job, Jobs
    from visdoc.server.library import Library
    from visdoc.store import CollectionSpec, open_store

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(SAMPLES / "sample-page.png", folder / name)
    (folder / "b.png").write_bytes((folder / "b.png").read_bytes() + b"\0")  # other content: a second document
    calls = []
    store = open_store("docs", CollectionSpec(dim=tiny_fp32.dims[-1]), data_dir=tmp_path / "data")
    upsert, optimize = store.upsert, store.optimize
    store.upsert = lambda points: calls.append("upsert") or upsert(points)
    store.optimize = lambda: calls.append("optimize") or optimize()
    jobs = Jobs(Library(tiny_fp32, UISettings(data_dir=tmp_path / "data")))
    job = Job("j", "docs", "a.png", total=2)
    hooks = jobs.hooks(job)
    stored = hooks.on_stored

    def stop_after_first_write(n: int) -> None:
        stored(n)
        jobs._stop.set()  # the server shuts down meanwhile

    hooks.on_stored = stop_after_first_write
    with pytest.raises(IngestCancelled):
        Ingestor(tiny_fp32, store, workers=0, batch_size=1).ingest([folder], hooks=hooks)
    assert calls == ["upsert"] and job.done == 1 and store.count() == 1
    store.close()


def test_uploads_still_streaming_count_towards_the_queue_limit(tmp_path, tiny_fp32):
    from visdoc.server import UISettings
    from visdoc.server.jobs import Jobs
    from visdoc.server.library import Library
    from visdoc.server.validation import UIError

    library = Library(tiny_fp32, UISettings(data_dir=tmp_path, max_queued_jobs=1))
    jobs = Jobs(library)
    ran = threading.Event()

    def run(job) -> None:
        job.state = "done"
        ran.set()

    jobs._run = run

    async def scenario():
        gate = asyncio.Event()

        async def slow():
            yield b"\x89PNG"
            await gate.wait()
            yield b"rest"

        streaming = asyncio.create_task(jobs.receive("docs", "a.png", slow(), None))
        await asyncio.sleep(0.05)
        with pytest.raises(UIError) as busy:
            await jobs.receive("docs", "b.png", chunks(b"other"), None)
        assert busy.value.status == 429 and busy.value.args[0].startswith("1 uploads")
        gate.set()
        return await streaming

    job = asyncio.run(scenario())
    assert ran.wait(10) and jobs.get(job.id).state == "done"
    with pytest.raises(UIError):
        asyncio.run(jobs.receive("docs", "empty.png", chunks(b""), None))  # refused: no slot kept
    later = asyncio.run(jobs.receive("docs", "c.png", chunks(b"third"), None))
    assert [j["id"] for j in jobs.list()][0] == later.id and jobs._receiving == 0
    jobs.close()
    library.close()
