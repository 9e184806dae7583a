"""CPU encoding throughput of visdoc versus a naive reference-style loop, in one run.

Builds a random ~100M-parameter checkpoint in the real layout (real tokenizer and vocabulary,
small towers), then encodes 256 texts of 5..400 tokens and 16 page-sized images twice:

* visdoc: token-budget batches of length-sorted items, no language-model head;
* naive: fixed batches of 8 in input order, padded to the longest, logits computed (what the
  reference implementation does), on the same loaded weights.

Both produce dense vectors; the script checks they agree and prints items/s and the speed-up.
The two are run alternately ``--repeats`` times and each keeps its best time, so a burst of
load on a shared machine does not land on one side only.

Besides the default path it runs the GPU-path switches that also work on CPU: packed batches
(``attn_implementation="varlen"``: per-sequence attention, no padding), merged adapters and, with
``--compile``, ``torch.compile`` (after a warm-up of two full passes, which takes minutes).

    python benchmarks/encode_cpu.py [--texts 256] [--images 16] [--dtype float32] [--repeats 2] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from visdoc import JinaV4
from visdoc.testing import TinySpec, build_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "data" / "jina-v4-tiny"
SPEC = TinySpec(
    hidden_size=512,
    layers=6,
    heads=8,
    kv_heads=2,
    intermediate_size=1536,
    mrope_section=(8, 12, 12),
    vision_depth=8,
    vision_fullatt_blocks=(3, 7),
    vision_hidden=384,
    vision_heads=6,
    vision_intermediate=1024,
    matryoshka_dims=(128, 256, 512),
    lora_rank=16,
    lora_alpha=16,
    init_std=0.02,
    tokenizer_from=TOKENIZER,
)
WORDS = "invoice receipt revenue quarter chart table figure page scanned total growth report margin".split()


def make_texts(model: JinaV4, n: int, rng: np.random.Generator) -> list[str]:
    """Texts whose prompted token counts spread uniformly over 5..400."""
    texts = []
    for target in rng.integers(5, 401, size=n):
        words = list(rng.choice(WORDS, size=int(target)))
        while len(model.tokenizer.texts([" ".join(words)], "Query: ")[0]) > target and len(words) > 1:
            words = words[: max(1, len(words) * 9 // 10)]
        texts.append(" ".join(words))
    return texts


def make_pages(n: int, rng: np.random.Generator) -> list[Image.Image]:
    """Letter-sized pages (850x1100) with text-like strokes and a few boxes."""
    pages = []
    for _ in range(n):
        page = Image.new("RGB", (850, 1100), "white")
        draw = ImageDraw.Draw(page)
        for y in range(80, 1000, 22):
            x = 70
            while x < 760:
                w = int(rng.integers(15, 70))
                draw.rectangle((x, y, x + w, y + 9), fill=(30, 30, 30))
                x += w + 8
        for _ in range(3):
            x0, y0 = int(rng.integers(70, 500)), int(rng.integers(100, 800))
            draw.rectangle((x0, y0, x0 + 250, y0 + 150), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        pages.append(page)
    return pages


def fixed_batches(lengths, max_tokens, max_items):
    """The naive plan: chunks of 8 in input order."""
    return [list(range(i, min(i + 8, len(lengths)))) for i in range(0, len(lengths), 8)]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(model: JinaV4, texts: list[str], pages: list[Image.Image]) -> dict[str, tuple[float, np.ndarray]]:
    return {
        "texts": timed(lambda: model.encode_texts(texts, prompt_name="passage").dense),
        "images": timed(lambda: model.encode_images(pages).dense),
    }


def naive_mode(model: JinaV4):
    """Switch ``model`` to the reference-style loop; returns a function that switches back."""
    embed = model.network.model.get_input_embeddings().weight

    def compute_logits(module, inputs, output) -> None:  # the reference computes them and discards them
        output.last_hidden_state @ embed.T

    hook = model.network.model.register_forward_hook(compute_logits)
    planner, model._plan = model._plan, fixed_batches

    def restore() -> None:
        hook.remove()
        model._plan = planner

    return restore


def best(runs: list[dict[str, tuple[float, np.ndarray]]]) -> dict[str, tuple[float, np.ndarray]]:
    return {kind: min((r[kind] for r in runs), key=lambda tv: tv[0]) for kind in runs[0]}


VARIANTS = {  # name -> from_pretrained options; "naive" reuses the default model in naive mode
    "visdoc": {},
    "visdoc packed": {"attn_implementation": "varlen"},
    "visdoc merged": {"merge_adapters": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="also run compile=True (warmed up with two full passes first: minutes)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp) / "ckpt", SPEC)
        variants = VARIANTS | ({"visdoc compiled": {"compile": True}} if args.compile else {})
        models = {name: JinaV4.from_pretrained(folder, dtype=args.dtype, **opts) for name, opts in variants.items()}
    model = models["visdoc"]
    params = sum(p.numel() for p in model.network.parameters())
    texts, pages = make_texts(model, args.texts, rng), make_pages(args.images, rng)
    lengths = [len(ids) for ids in model.tokenizer.texts(texts, "Passage: ")]
    print(f"model: {params / 1e6:.1f}M parameters, dtype {args.dtype}, {args.threads} threads, best of {args.repeats}")
    print(f"inputs: {len(texts)} texts ({min(lengths)}..{max(lengths)} tokens), {len(pages)} pages of 850x1100 px")

    for name, m in models.items():
        m.encode_texts(texts[:8])  # warm-up
        if name == "visdoc compiled":  # compiling, and recompiling once shapes are seen to vary
            start = time.perf_counter()
            run(m, texts, pages), run(m, texts, pages)
            print(f"compile warm-up: {time.perf_counter() - start:.0f} s")
    runs: dict[str, list] = {name: [] for name in ["naive", *models]}
    for _ in range(args.repeats):  # alternate, so that a burst of load does not land on one side only
        restore = naive_mode(model)
        runs["naive"].append(run(model, texts, pages))
        restore()
        for name, m in models.items():
            runs[name].append(run(m, texts, pages))
    results = {name: best(r) for name, r in runs.items()}
    naive = results["naive"]

    print(f"{'':15} {'kind':7} {'items/s':>9} {'vs naive':>9} {'min cosine vs naive':>20}")
    for name, result in results.items():
        for kind, n in (("texts", len(texts)), ("images", len(pages))):
            (seconds, vectors), (naive_seconds, naive_vectors) = result[kind], naive[kind]
            agreement = float(np.min(np.sum(vectors * naive_vectors, axis=1)))
            print(f"{name:15} {kind:7} {n / seconds:9.2f} {naive_seconds / seconds:8.2f}x {agreement:20.6f}")


if __name__ == "__main__":
    main()
