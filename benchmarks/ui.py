"""Search page latency on 1,000 stored pages: server time for the page, the first results and a thumbnail.

Builds an embedded collection of ``--pages`` pages (default 1,000) from 100 generated PDFs of
Letter pages, with synthetic vectors of the exact shapes the tiny checkpoint gives such a page
(780 tokens of 128-d, a 24 x 32 patch grid, a 64-d dense vector; random unit vectors, which cost
the store what real ones do). Then starts ``visdoc ui`` on a loopback port with a key, as in
production, and replays what a browser does on its first visit: the page and its two assets, the
config, session, collection and document listings, one search (which embeds the query with the
tiny model), the thumbnail of the first hit (rendered from the PDF, then cached) and its match
heatmap. Each
request's server time is read from its ``Server-Timing`` header; the first visit after the
server started (cold: store opened, first query embedded, thumbnail rendered) and the median of
``--repeat`` further visits (warm, other queries) are shown.

    python benchmarks/ui.py [--pages 1000] [--repeat 20]

Target (issue 8): page load and first results under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from server import launch  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "jina-v4-tiny"
KEY = "bench-key"
PAGES_PER_PDF = 10
GRID = (32, 24)  # rows, cols of merged tokens of a Letter page rendered for the model: 672 x 896 px
HEAD, TAIL = 5, 7  # template tokens around the image tokens
DENSE_DIM = 64
WORDS = ("revenue quarter growth margin invoice shipping warehouse forecast chart table region customer "
         "contract audit staff capacity fleet fuel budget outlook").split()  # fmt: skip


def build(data_dir: Path, docs: Path, pages: int) -> float:
    """Write the PDFs and store their pages with synthetic vectors; returns seconds taken."""
    import pymupdf

    from visdoc.store import CollectionSpec, PagePoint, open_store, point_id

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    n_tokens = HEAD + GRID[0] * GRID[1] + TAIL
    spec = CollectionSpec(dim=DENSE_DIM, model=str(MODEL))
    with open_store("bench", spec, data_dir=data_dir) as store:
        for d in range((pages + PAGES_PER_PDF - 1) // PAGES_PER_PDF):
            n = min(PAGES_PER_PDF, pages - d * PAGES_PER_PDF)
            path = docs / f"report-{d:03d}.pdf"
            texts = [" ".join(rng.choice(WORDS, size=60)) for _ in range(n)]
            pdf = pymupdf.open()
            for i, text in enumerate(texts):
                page = pdf.new_page(width=612, height=792)
                page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), f"Report {d}, page {i + 1}\n\n{text}", fontsize=14)
            pdf.save(path)
            pdf.close()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            points = []
            for i, text in enumerate(texts):
                tokens = rng.standard_normal((n_tokens, 128)).astype(np.float32)
                tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
                dense = rng.standard_normal(DENSE_DIM).astype(np.float32)
                payload = {"document_id": digest[:32], "source": str(path), "file_name": path.name, "title": "",
                           "page": i, "page_label": str(i + 1), "total_pages": n, "text": text,
                           "content_hash": digest, "kind": "page_image", "model": str(MODEL), "task": "retrieval",
                           "dim": DENSE_DIM}  # fmt: skip
                points.append(PagePoint(point_id(digest[:32], i), dense / np.linalg.norm(dense), tokens, payload,
                                        content_span=(HEAD, n_tokens - TAIL), grid=GRID))  # fmt: skip
            store.upsert(points)
        store.optimize()
        assert store.count() == pages
    return time.perf_counter() - start


def server_ms(response: httpx.Response) -> float:
    response.raise_for_status()
    return float(response.headers["server-timing"].split("dur=")[1])


def visit(client: httpx.Client, query: str) -> dict[str, float]:
    """What the page requests on a first visit with a query in its address, in order."""
    times = {"GET /ui": server_ms(client.get("/ui/"))}
    times["assets"] = server_ms(client.get("/ui/static/app.js")) + server_ms(client.get("/ui/static/style.css"))
    times["config+session"] = server_ms(client.get("/ui/api/config")) + server_ms(client.post("/ui/api/session"))
    times["collections"] = server_ms(client.get("/ui/api/collections"))
    times["documents"] = server_ms(client.get("/ui/api/collections/bench/documents"))
    response = client.post("/ui/api/collections/bench/search", json={"query": query, "k": 24})
    times["search"] = server_ms(response)
    times["page load + first results"] = sum(times.values())
    top = response.json()["results"][0]
    thumb = client.get(top["thumb_url"])
    times["thumbnail"] = server_ms(thumb)
    assert thumb.headers["content-type"] == "image/webp"
    times["heatmap (on opening a hit)"] = server_ms(client.get(top["heatmap_url"], params={"q": query}))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visdoc-ui-bench-"))
    (work / "docs").mkdir()
    seconds = build(work / "data", work / "docs", args.pages)
    print(f"{args.pages} pages in {args.pages // PAGES_PER_PDF} PDFs stored in {seconds:.1f} s")
    proc, url = launch("ui", "--model", str(MODEL), "--api-key", KEY, "--data-dir", str(work / "data"),
                       "--collection", "bench")  # fmt: skip
    rng = np.random.default_rng(1)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            cold = visit(client, "revenue by quarter")
            warm = [visit(client, " ".join(rng.choice(WORDS, size=4))) for _ in range(args.repeat)]
            cached = statistics.median(server_ms(client.get(client.post(
                "/ui/api/collections/bench/search", json={"query": "fleet fuel"}).json()["results"][0]["thumb_url"]))
                for _ in range(args.repeat))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"server time (ms), visdoc ui with the tiny checkpoint, {args.pages} pages; warm: median of {args.repeat}")
    print(f"{'request':<28} {'cold':>8} {'warm':>8}")
    for name in cold:
        print(f"{name:<28} {cold[name]:8.1f} {statistics.median(v[name] for v in warm):8.1f}")
    print(f"{'thumbnail (cached)':<28} {'':>8} {cached:8.1f}")


if __name__ == "__main__":
    main()
