"""The search page end to end in a real headless browser: Playwright driving Debian's chromium.

``visdoc serve`` runs on a loopback port with the tiny checkpoint and a key, over a store holding
the sample documents. Playwright never downloads a browser here: it launches /usr/bin/chromium
(scripts/test.sh installs it when it is missing and apt-get is available as root). Without it the
tests fail, except for non-root users, who cannot install it: they are skipped with the reason.

``VISDOC_UPDATE_SCREENSHOT=1`` also writes the screenshots to docs/images/ (shown in README.md);
they always go to the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from conftest import FIXTURE

ROOT = FIXTURE.parents[2]
SAMPLES = ROOT / "examples" / "data"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
KEY = "browser-secret"
QUERY = "revenue by quarter"


def _need(what: str, missing: bool) -> None:
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.skip(f"{what} is missing and this user is not root to install it (apt-get install -y chromium)")
    pytest.fail(f"{what} is missing: run scripts/test.sh, which installs it, or apt-get install -y chromium")


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM, not os.path.exists(CHROMIUM))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("the playwright package (dev extra)", True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_fp32):
    """``visdoc serve`` with its search page over a collection of the sample documents."""
    from test_server import free_port

    from visdoc.ingest import Ingestor
    from visdoc.store import CollectionSpec, open_store

    root = tmp_path_factory.mktemp("browser")
    docs = root / "docs"
    docs.mkdir()
    for name in ("annual-report.pdf", "sample-page.png"):
        shutil.copy(SAMPLES / name, docs / name)
    with open_store("docs", CollectionSpec(dim=64, model=tiny_fp32.name), data_dir=root / "data") as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([docs])
    port = free_port()
    cmd = [sys.executable, "-m", "visdoc", "serve", "--model", str(FIXTURE), "--port", str(port),
           "--api-key", KEY, "--data-dir", str(root / "data"), "--collection", "docs"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.stderr.read()}")
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"/ui/?key={KEY}")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield page
    context.close()
    assert not errors, errors


def save_screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("VISDOC_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "images" / name))


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression (Playwright's wait_for_function evaluates strings, which the page's CSP forbids)."""
    deadline = time.time() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def search(page, query: str) -> None:
    page.fill("#query", query)
    page.press("#query", "Enter")
    page.wait_for_selector(".card", timeout=30_000)


def test_search_shows_cards_and_a_page_with_its_match_heatmap(page, tmp_path):
    assert "key=" not in page.url  # taken into sessionStorage, out of the address bar
    search(page, QUERY)
    cards = page.locator(".card")
    assert cards.count() == 4  # 3 report pages and the page image
    files = cards.locator(".meta .file").all_text_contents()
    assert sorted(set(files)) == ["annual-report.pdf", "sample-page.png"]
    scores = [float(s) for s in cards.locator(".meta .score").all_text_contents()]
    assert scores == sorted(scores, reverse=True)
    assert all(p.startswith("p. ") for p in cards.locator(".meta .page").all_text_contents())
    wait_until(page, "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    report = cards.filter(has_text="annual-report.pdf")
    assert all(len(s.strip()) > 20 for s in report.locator(".snippet").all_text_contents())  # text layer
    save_screenshot(page, tmp_path, "ui-results.png")

    report.first.click()
    page.wait_for_selector("#viewer:not([hidden])")
    wait_until(page, "document.getElementById('page-image').naturalWidth > 0")
    page.wait_for_selector("#heatmap[data-token='-1']", timeout=30_000)
    painted = page.evaluate(
        """() => {
            const c = document.getElementById('heatmap');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return {n, width: c.width, height: c.height};
        }"""
    )
    assert painted["n"] > 0 and painted["width"] * painted["height"] > 100
    link = page.locator("#viewer-file")
    href = link.get_attribute("href")
    assert href.startswith("/files/docs/") and "#page=" in href and "Open the PDF at page" in link.text_content()
    pdf = page.request.get(href.split("#")[0])  # the session cookie authorises it, no header
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    page.locator("#tokens .token").nth(3).hover()  # one query token's own map
    page.wait_for_selector("#heatmap[data-token='2']")
    page.mouse.move(5, 5)
    page.wait_for_selector("#heatmap[data-token='-1']")
    save_screenshot(page, tmp_path, "ui-heatmap.png")
    page.keyboard.press("Escape")
    assert page.locator("#viewer").is_hidden()


def test_uploading_a_pdf_makes_its_pages_searchable(page, tmp_path):
    from test_ui_api import make_pdf

    pdf = tmp_path / "fleet-report.pdf"
    make_pdf(pdf, ["Fleet maintenance schedule", "Fuel costs per vehicle", "Driver rota"])
    page.set_input_files("#file-input", str(pdf))  # the input the drop zone also feeds
    page.wait_for_selector(".job[data-state='done']", timeout=120_000)
    assert "3 pages added" in page.locator(".job .state").first.text_content()
    option = page.locator("#document option", has_text="fleet-report.pdf")
    assert option.count() == 1
    page.select_option("#document", value=option.get_attribute("value"))
    search(page, "fuel costs")
    wait_until(page, "document.querySelectorAll('.card').length === 3")
    assert set(page.locator(".card .meta .file").all_text_contents()) == {"fleet-report.pdf"}


def test_unauthorised_requests_and_path_traversal_are_refused(page, server):
    assert httpx.get(f"{server}/ui/api/config").status_code == 401
    assert httpx.get(f"{server}/ui/").status_code == 200  # the page itself loads
    status = page.evaluate("fetch('/ui/api/collections').then(r => r.status)")  # no header from the page
    assert status == 401
    headers = {"Authorization": f"Bearer {KEY}"}
    for path in ("/ui/api/collections/docs/pages/..%2F..%2F..%2F..%2Fetc%2Fpasswd/image",
                 "/ui/api/collections/docs/pages/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image?size=page",
                 "/files/docs/..%2F..%2Fetc%2Fpasswd", "/files/docs/../../etc/passwd"):  # fmt: skip
        response = httpx.get(server + path, headers=headers)
        assert response.status_code in (403, 404), path
        assert page.request.get(path).status in (403, 404)  # with the session cookie too


def test_images_load_again_after_the_session_cookie_is_lost(page):
    page.context.clear_cookies()  # expired, or the server restarted
    search(page, QUERY)
    wait_until(page, "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    assert all("&retry=" in src for src in page.locator(".card img").evaluate_all("l => l.map(i => i.src)"))


def test_the_mode_switch_searches_in_that_mode_and_marks_the_matching_words(page):
    page.select_option("#mode", "lexical")
    search(page, "cold-chain logistics")
    wait_until(page, "document.querySelectorAll('.card').length === 1")  # the one page holding the words
    marks = page.locator(".card .snippet mark").all_text_contents()
    assert {"cold", "chain", "logistics"} <= {m.lower() for m in marks}
    assert "mode=lexical" in page.url
    page.goto("/ui/?q=cold-chain+logistics&mode=hybrid")  # a shared link keeps the mode
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.locator("#mode").input_value() == "hybrid"
    wait_until(page, "document.querySelectorAll('.card').length > 1")  # every page (others' uploads included)
    assert "logistics" in page.locator(".card").first.locator(".snippet mark").all_text_contents()
    page.select_option("#mode", "rerank")  # changing the mode searches again
    wait_until(page, "!location.search.includes('mode=') && document.querySelectorAll('.card').length > 1")
