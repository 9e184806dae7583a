"""Ingestion throughput per stage on a generated PDF, then the whole pipeline, in one run.

Stages, each timed alone; render, preprocess and store on one core (torch limited to one thread),
encode with all of torch's threads, as the pipeline runs it:

* render: PyMuPDF renders a page at the model's pixel budget and extracts its text;
* preprocess: resize check, normalise and patchify (what ``encode_images`` does before the model);
* encode: the tiny fixture model (random weights; stands in for the real model's cost), or
  with ``--full`` jina-embeddings-v4's full shape with random weights (a GPU benchmark);
* store: upsert of the page's dense + multivector point into the embedded engine.

"non-model" is render + preprocess + store per page on one core; the target is >= 50 pages/s.
The next line runs ``Ingestor`` end to end with its defaults (render worker processes ahead of
the model; on a GPU two steps in flight and writes overlapping encoding); "x the encode stage's
rate" says how close the pipeline comes to keeping the model busy.

``--simulate RATE ...`` then runs ``Ingestor`` end to end against a stand-in accelerator that
encodes RATE pages/s: each forward pass sleeps for its pages' share of a second (the host's cores
and the GIL stay free, as while a GPU computes) and returns vectors of the real shapes. The model
is set up as on CUDA (packed 32k-token passes, image workers preparing batches ahead of the
device, 128-page steps, two in flight, writes overlapping encoding). "Device busy" is the share
of the run the device had work, and of the span from its first pass to its last (the steady
state, without the start-up and the final index build): what the host side of the pipeline can
feed, measured on a machine without a GPU.

``--sync-ms MS`` drives the stand-in as a GPU is driven: its host thread waits for the device every
MS ms, then needs the GIL to queue the next work, and the device idles until it gets it.

``--compare-writes`` runs each pipeline three ways: as by default (off the CPU, the store's engine
runs in a child process: ``Ingestor(write_process=None)``), with the writes in this process
(``write_process=False``), and with the writes discarded: what storing pages costs the device
("passes ... ms/page" is the forward passes' time per page).

    python benchmarks/ingest.py [--pages 200] [--simulate 20 40 55 [--sync-ms 1]] [--compare-writes]
    python benchmarks/ingest.py --full --pages 800 [--merge-adapters] [--compile]   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pymupdf
import torch
from gpu_throughput import random_model, synchronize  # benchmarks/ is on sys.path when run as a script

from visdoc import JinaV4
from visdoc.encoder.local import GPU_BATCH_TOKENS
from visdoc.images import load_rgb
from visdoc.ingest import Ingestor, default_workers
from visdoc.sources import render_pages
from visdoc.store import CollectionSpec, PagePoint, open_store, point_id

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "jina-v4-tiny"


def make_pdf(path: Path, pages: int) -> Path:
    """Letter pages with a heading, a paragraph, a table and a bar chart each."""
    doc = pymupdf.open()
    rng = np.random.default_rng(0)
    for i in range(pages):
        page = doc.new_page(width=612, height=792)
        page.insert_text((72, 80), f"Section {i + 1}: quarterly figures", fontname="hebo", fontsize=16)
        page.insert_textbox(pymupdf.Rect(72, 95, 540, 220), "Revenue and costs by region. " * 12, fontsize=10)
        for r in range(6):
            for c in range(4):
                rect = pymupdf.Rect(72 + c * 110, 240 + r * 22, 182 + c * 110, 262 + r * 22)
                page.draw_rect(rect, color=(0.5, 0.5, 0.5))
                page.insert_text((rect.x0 + 6, rect.y1 - 7), f"{rng.integers(10, 999)}", fontsize=9)
        for b in range(6):
            height = float(rng.integers(40, 200))
            page.draw_rect(pymupdf.Rect(90 + b * 70, 620 - height, 130 + b * 70, 620), fill=(0.2, 0.4, 0.7))
    doc.save(path, deflate=True)
    return path


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def timed_passes(model: JinaV4) -> list[tuple[float, float]]:
    """Records each forward pass's (start, end) from now on, in a list emptied at each call. A pass
    returns its vectors on the host, so on a GPU its end is when the device has finished it."""
    passes: list[tuple[float, float]] | None = getattr(model, "_bench_passes", None)
    if passes is not None:
        passes.clear()
        return passes
    passes = model._bench_passes = []  # type: ignore[attr-defined]
    forward = model._forward

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        passes.append((start, time.perf_counter()))
        return out

    model._forward = timed  # type: ignore[method-assign]
    return passes


def busy(passes: list[tuple[float, float]], seconds: float, pages: int) -> str:
    """The share of the run, and of the span from the first pass to the last, with a pass running,
    and the passes' time per page."""
    in_passes = sum(end - start for start, end in passes)
    span = passes[-1][1] - passes[0][0]
    per_page = 1000 * in_passes / pages
    return (f"device busy {in_passes / seconds:.0%} of the run, {in_passes / span:.0%} from its first pass to "
            f"its last, which ran {span:.1f} of {seconds:.1f} s; passes {per_page:.2f} ms/page")  # fmt: skip


def simulated_accelerator(pages_per_s: float, sync_ms: float = 0.0) -> JinaV4:
    """The tiny model set up as on CUDA (packed batches, image workers ahead of the device, 32k-token
    passes; writes overlap encoding), its forward pass replaced by a stand-in device that takes
    ``1 / pages_per_s`` s per page without holding the GIL. With ``sync_ms`` the pass is driven like
    a GPU whose host thread waits for the device every ``sync_ms`` ms and then needs the GIL to queue
    the next work: the device idles while that thread waits for the GIL."""
    workers = min(8, os.cpu_count() or 1)
    model = JinaV4.from_pretrained(FIXTURE, device="cpu", attn_implementation="varlen",
                                   max_batch_tokens=GPU_BATCH_TOKENS, preprocess_workers=workers)  # fmt: skip
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((8192, model.multivector_dim)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)

    def forward(batch, *, dim: int, dense: bool, multivector: bool):  # noqa: ANN001, ANN202
        seconds = len(batch.indices) / pages_per_s
        if sync_ms:
            for _ in range(max(1, round(1000 * seconds / sync_ms))):
                sum(range(20))  # queueing the next kernels: a few microseconds holding the GIL
                time.sleep(sync_ms / 1000)  # the device computes; the host thread waits for it
        else:
            time.sleep(seconds)
        rows = np.repeat(tokens[:1, :dim] / np.linalg.norm(tokens[0, :dim]), len(batch.indices), axis=0)
        return (rows if dense else None), ([tokens[:n] for n in batch.lengths] if multivector else None)

    model._forward = forward  # type: ignore[method-assign]
    model.device = torch.device("meta")  # not the host CPU, so Ingestor overlaps as on a GPU
    return model


WRITES = {"": None, "writes in this process": False, "writes discarded": False}


def pipeline(model: JinaV4, pdf: Path, data_dir: Path, writes: str) -> tuple[int, float, list[tuple[float, float]]]:
    """``Ingestor`` over the PDF into a new collection: pages stored, seconds, forward passes. ``writes``
    is a key of WRITES: the default (the engine in a child process off the CPU), writes in this
    process, or writes discarded."""
    with open_store(
        f"run-{len(list(data_dir.glob('*')))}", CollectionSpec(dim=model.dims[-1]), data_dir=data_dir
    ) as store:
        if writes == "writes discarded":
            store.upsert = lambda points: None  # type: ignore[method-assign]
        passes = timed_passes(model)
        start = time.perf_counter()
        report = Ingestor(model, store, write_process=WRITES[writes]).ingest([pdf])
        return report.pages_stored, time.perf_counter() - start, list(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--full", action="store_true", help="full-size random model (see gpu_throughput.py)")
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--merge-adapters", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--compare-writes",
        action="store_true",
        help="also run each pipeline with the writes in this process and with the writes discarded",
    )
    parser.add_argument(
        "--sync-ms",
        type=float,
        default=0.0,
        help="the stand-in's host thread waits for it every SYNC_MS ms and then needs the GIL (default: never)",
    )
    parser.add_argument(
        "--simulate",
        type=float,
        nargs="*",
        default=[],
        metavar="RATE",
        help="also feed a stand-in accelerator of RATE pages/s (see above)",
    )
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    options = {"merge_adapters": args.merge_adapters, "compile": args.compile}
    if args.full:
        model = random_model(args.device, **options)
    else:
        model = JinaV4.from_pretrained(FIXTURE, device=args.device, **options)
    label = "full random model" if args.full else "tiny model"
    pixels = model.checkpoint.pixels
    budget = (pixels.factor, pixels.min_pixels, pixels.max_pixels)

    with tempfile.TemporaryDirectory() as tmp:
        pdf = make_pdf(Path(tmp) / "bench.pdf", args.pages)
        numbers = list(range(args.pages))

        start = time.perf_counter()
        rendered = render_pages(str(pdf), numbers, budget)
        t_render = time.perf_counter() - start
        images = [page.image() for page in rendered]

        start = time.perf_counter()
        for i, image in enumerate(images):
            model.preprocessor.patches(load_rgb(image, i), model.preprocessor.grid(*image.size))
        t_pre = time.perf_counter() - start

        torch.set_num_threads(threads)
        model.encode_images(images[:16], multivector=True)  # warm-up (and compilation, with --compile)
        synchronize(model.device)
        start = time.perf_counter()
        result = model.encode_images(images, multivector=True)
        t_encode = time.perf_counter() - start

        spec = CollectionSpec(dim=model.dims[-1])
        with open_store("bench", spec, data_dir=Path(tmp) / "data") as store:
            points = [PagePoint(point_id("bench", i), result.dense[i], result.multivector[i],
                                {"document_id": "bench", "page": i, "text": rendered[i].text})
                      for i in numbers]  # fmt: skip
            torch.set_num_threads(1)
            start = time.perf_counter()
            for i in range(0, len(points), 8):
                store.upsert(points[i : i + 8])
            store.flush()
            t_store = time.perf_counter() - start

        torch.set_num_threads(threads)
        variants = list(WRITES) if args.compare_writes else [""]
        runs = [("pipeline end to end" + (f", {w}" if w else ""), pipeline(model, pdf, Path(tmp) / "runs", w))
                for w in variants]  # fmt: skip
        for pages_per_s in args.simulate:
            stand_in = simulated_accelerator(pages_per_s, args.sync_ms)
            runs += [(f"{pages_per_s:g} pages/s device" + (f", {w}" if w else ""),
                      pipeline(stand_in, pdf, Path(tmp) / "runs", w)) for w in variants]  # fmt: skip

    tokens = int(np.mean([len(m) for m in result.multivector]))
    n = args.pages
    print(
        f"model on {model.device}, {torch.get_num_threads()} torch threads in the pipeline, "
        f"{default_workers()} render workers"
    )
    print(f"{n}-page PDF, {images[0].size[0]}x{images[0].size[1]} px per page, {tokens} tokens per page")
    print(f"{'stage':<28} {'pages/s':>9} {'ms/page':>8}")
    for name, seconds in (("render (pymupdf)", t_render), ("preprocess (patchify)", t_pre),
                          (f"encode ({label})", t_encode), ("store (qdrant-edge upsert)", t_store)):  # fmt: skip
        print(f"{name:<28} {rate(n, seconds):9.1f} {1000 * seconds / n:8.2f}")
    non_model = t_render + t_pre + t_store
    print(f"{'non-model, one core':<28} {rate(n, non_model):9.1f} {1000 * non_model / n:8.2f}   (target >= 50)")
    for name, (stored, seconds, passes) in runs:
        ratio = f"{t_encode / seconds:.2f}x the encode stage's rate; " if name.startswith("pipeline") else ""
        kept = "none stored" if name.endswith("discarded") else "stored"
        print(f"{name:<28} {rate(stored, seconds):9.1f} {1000 * seconds / n:8.2f}   "
              f"({ratio}{busy(passes, seconds, n)}; {stored} pages, {kept})")  # fmt: skip


if __name__ == "__main__":
    main()
