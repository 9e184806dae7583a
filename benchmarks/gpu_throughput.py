"""GPU throughput of visdoc versus a naive transformers loop, on a full-size random model.

Builds jina-embeddings-v4's full configuration (Qwen2.5-VL-3B shapes, r=32 adapters, the real
tokenizer from the test fixture) with random weights made on the GPU: nothing is downloaded.
Then, in one run and on the same weights, it measures

* page images/s on Letter pages (850x1100 px in, resized to the default budget: 744 tokens),
* text tokens/s on passages of 5..400 tokens,

for these paths:

* naive: fixed batches of 8 in input order padded to the longest, transformers' SDPA attention
  (the vision tower loops over its windows in Python), unmerged adapters, language-model logits
  computed and thrown away (as the reference implementation does), preprocessing inline;
* visdoc: the defaults on CUDA: length-sorted token-budget batches packed into one row and run
  through FlashAttention varlen (no padding computed), images preprocessed by worker threads
  ahead of the GPU into pinned memory, no logits;
* visdoc inline-prep: the same, with images preprocessed in the calling thread (pages only);
* visdoc + merged adapters (``merge_adapters=True``);
* visdoc + compiled (``compile=True``: each repeated block through ``torch.compile``), with
  unmerged and then merged adapters. The warm-up column shows the compilation time.

Each line is printed as soon as it is measured; the summary table is printed at the end or when
the run is cut short (SIGTERM/SIGINT, or ``--budget`` seconds spent). Model FLOPs utilisation
counts the base model's matmul and attention FLOPs (no adapters, no logits) against
``--peak-tflops`` (989: H100/H200 dense bf16).

    python benchmarks/gpu_throughput.py [--pages 384] [--texts 1024] [--budget 220] [--json out.json]
    python benchmarks/gpu_throughput.py --small --device cpu   # a smoke test of the script itself
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from encode_cpu import fixed_batches, make_pages  # benchmarks/ is on sys.path when run as a script
from PIL import Image

from visdoc import JinaV4
from visdoc.network import use_attention
from visdoc.testing import FULL_SPEC, TinySpec, build_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "data" / "jina-v4-tiny"
SMALL_SPEC = TinySpec(hidden_size=256, layers=2, heads=4, kv_heads=2, intermediate_size=512, mrope_section=(8, 12, 12),
                      vision_depth=2, vision_fullatt_blocks=(1,), vision_hidden=128, vision_heads=4,
                      vision_intermediate=256, matryoshka_dims=(128, 256), vocab_size=151936)  # fmt: skip
PATHS = ("naive", "visdoc", "visdoc inline-prep", "visdoc+merged", "visdoc+compiled", "visdoc+merged+compiled")
DEFAULT_PATHS = tuple(path for path in PATHS if path != "visdoc inline-prep")  # inline-prep: a diagnostic
WORDS = "invoice receipt revenue quarter chart table figure page scanned total growth report margin".split()


class CutShort(Exception):
    pass


def _stop(signum, frame) -> None:  # noqa: ANN001
    raise CutShort(f"signal {signum}")


def random_model(device: torch.device | str | None, *, small: bool = False, **options: object) -> JinaV4:
    """jina-embeddings-v4's full shape (``SMALL_SPEC`` with ``small``) with random bf16 weights
    made on ``device``; ``options`` go to :meth:`JinaV4.from_pretrained`."""
    spec = dataclasses.replace(SMALL_SPEC if small else FULL_SPEC, tokenizer_from=TOKENIZER)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp) / "full", spec, weights=False)
        return JinaV4.from_pretrained(folder, device=device, dtype="bfloat16", random_weights=True, **options)


def letter_pages(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` Letter-sized pages (encode_cpu's drawings): 32 distinct ones, repeated, since drawing
    is not what is measured."""
    pages = make_pages(min(n, 32), np.random.default_rng(seed))
    return [pages[i % len(pages)] for i in range(n)]


def passages(n: int, seed: int = 0) -> list[str]:
    """Texts of 4..400 words (the token counts are reported as measured)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(4, 400, size=n)]


# -- model FLOPs ---------------------------------------------------------------------------------


def text_flops(config: dict, lengths: list[int]) -> float:
    """Matmul + causal attention FLOPs of the text tower and projector for these sequences."""
    t = config["text_config"]
    d, layers, inter = t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"]
    kv = d // t["num_attention_heads"] * t["num_key_value_heads"]
    per_token = layers * 2 * (2 * d * d + 2 * d * kv + 3 * d * inter) + 2 * d * config["multi_vector_projector_dim"]
    attention = sum(layers * 2 * d * n * (n + 1) for n in lengths)  # QK^T and AV over the causal triangle
    return per_token * sum(lengths) + attention


def vision_flops(config: dict, patches_h: int, patches_w: int) -> float:
    """FLOPs of the vision tower (windowed and full blocks) and patch merger for one image."""
    v = config["vision_config"]
    h, inter, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
    n = patches_h * patches_w
    window = (v["window_size"] // v["patch_size"]) ** 2  # patches per full window
    full_blocks = len(v["fullatt_block_indexes"])
    per_patch = depth * 2 * (4 * h * h + 3 * h * inter) + 2 * 3 * 2 * 14 * 14 * h
    attention = 4 * h * n * (full_blocks * n + (depth - full_blocks) * min(window, n))
    merged = n // 4
    merger = merged * 2 * (4 * h * 4 * h + 4 * h * v["out_hidden_size"])
    return per_patch * n + attention + merger


# -- measurement ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    path: str
    workload: str
    items: int
    seconds: float
    tokens: int
    flops: float
    peak_gib: float
    warmup_s: float

    def line(self, peak_tflops: float) -> str:
        rate = self.items / self.seconds
        unit = "pages/s" if self.workload == "pages" else "texts/s"
        mfu = self.flops / self.seconds / (peak_tflops * 1e12)
        return (f"{self.path:<20} {self.workload:<6} {self.items:>5} in {self.seconds:6.2f} s: {rate:8.1f} {unit}, "
                f"{self.tokens / self.seconds:>9,.0f} tok/s, MFU {mfu:6.1%}, {self.peak_gib:5.1f} GiB, "
                f"warm-up {self.warmup_s:.1f} s")  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: JinaV4, path: str, workload: str, items: list, config: dict) -> tuple[Result, np.ndarray]:
    device = model.device
    encode = model.encode_images if workload == "pages" else model.encode_texts
    began = time.perf_counter()
    encode(items[: min(len(items), 16)])  # warm-up: kernels, allocator, autotuning, compilation
    synchronize(device)
    warmup = time.perf_counter() - began
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    dense = encode(items).dense
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    if workload == "pages":
        grid = model.preprocessor.grid(*items[0].size)
        merge = model.checkpoint.pixels.merge_size
        ids, _, _ = model.tokenizer.image(grid.tokens(merge))
        tokens = len(ids) * len(items)
        flops = (vision_flops(config, grid.h, grid.w) + text_flops(config, [len(ids)])) * len(items)
    else:
        lengths = [len(ids) for ids in model.tokenizer.texts(items, "Passage: ")]
        tokens, flops = sum(lengths), text_flops(config, lengths)
    return Result(path, workload, len(items), seconds, tokens, flops, peak, warmup), dense


def naive_mode(model: JinaV4):  # noqa: ANN201
    """Switch ``model`` to the reference-style loop; returns a function that switches back."""
    embed = model.network.model.get_input_embeddings().weight

    def compute_logits(module, inputs, output) -> None:  # noqa: ANN001
        output.last_hidden_state @ embed.T

    saved = (model._plan, model.preprocess_workers, model.network.model.config._attn_implementation)
    hook = model.network.model.register_forward_hook(compute_logits)
    model._plan, model.preprocess_workers = fixed_batches, 0
    use_attention(model.network.model, "sdpa")  # padded batches; the vision tower loops over windows

    def restore() -> None:
        hook.remove()
        model._plan, model.preprocess_workers, attn = saved
        use_attention(model.network.model, attn)

    return restore


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.min(np.sum(a[:n] * b[:n], axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=384, help="pages per visdoc run (naive gets a quarter)")
    parser.add_argument("--texts", type=int, default=1024, help="texts per visdoc run (naive gets a quarter)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="a tiny model, to check the script itself")
    parser.add_argument("--budget", type=float, default=220.0, help="stop starting new runs after this many s")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help=f"comma-separated, in order, from: {', '.join(PATHS)} (compiling stays on: list "
                             "compiled paths last)")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    chosen = args.paths.split(",")
    if unknown := set(chosen) - set(PATHS):
        parser.error(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")
    compiled = ["compiled" in path for path in chosen]
    if compiled != sorted(compiled):
        parser.error("compiling stays on once done: list the compiled paths last")
    signal.signal(signal.SIGTERM, _stop)
    began = time.perf_counter()
    results: list[Result] = []
    notes: list[str] = []
    try:
        run(args, began, results, notes)
    except (CutShort, KeyboardInterrupt) as exc:
        notes.append(f"cut short ({exc or 'interrupted'}) after {time.perf_counter() - began:.0f} s")
    finally:
        report(args, results, notes)


def run(args: argparse.Namespace, began: float, results: list[Result], notes: list[str]) -> None:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    t0 = time.perf_counter()
    model = random_model(device, small=args.small)
    config = model.checkpoint.config
    params = sum(p.numel() for p in model.network.parameters())
    print(f"model: {params / 1e9:.2f}B parameters (adapters included), built in {time.perf_counter() - t0:.1f} s; "
          f"attention {model.network.model.config._attn_implementation}, packed={model.packed}, "
          f"preprocess workers {model.preprocess_workers}", flush=True)  # fmt: skip
    pages, texts = letter_pages(args.pages), passages(args.texts)
    small_pages, small_texts = pages[: max(16, args.pages // 4)], texts[: max(32, args.texts // 4)]

    def over_budget() -> bool:
        if time.perf_counter() - began > args.budget:
            notes.append(f"budget of {args.budget:.0f} s spent: later runs skipped")
            return True
        return False

    dense: dict[tuple[str, str], np.ndarray] = {}
    workloads = {"naive": (small_pages, small_texts)}
    plan = [(path, kind, items) for path in args.paths.split(",")
            for kind, items in zip(("pages", "texts"), workloads.get(path, (pages, texts)), strict=True)
            if not (path == "visdoc inline-prep" and kind == "texts")]  # fmt: skip
    compiled = False
    for path, workload, items in plan:
        if over_budget():
            break
        restore = naive_mode(model) if path == "naive" else None
        if path == "visdoc inline-prep":
            restore = functools.partial(setattr, model, "preprocess_workers", model.preprocess_workers)
            model.preprocess_workers = 0
        if "merged" in path and not model.network.merge_adapters:
            model.network.start_merging()
        elif "merged" not in path and model.network.merge_adapters:
            model.network.stop_merging()
        if "compiled" in path and not compiled:
            model.network.compile_towers()
            compiled = True
        try:
            result, vectors = measure(model, path, workload, items, config)
        finally:
            if restore is not None:
                restore()
        results.append(result)
        dense[(path, workload)] = vectors
        print(result.line(args.peak_tflops), flush=True)
    for workload in ("pages", "texts"):
        for path in PATHS[1:]:
            if ("naive", workload) in dense and (path, workload) in dense:
                cos = agreement(dense[("naive", workload)], dense[(path, workload)])
                notes.append(f"{workload}: min cosine naive vs {path} dense vectors {cos:.5f}")


def report(args: argparse.Namespace, results: list[Result], notes: list[str]) -> None:
    print()
    print("| path | workload | items/s | tokens/s | MFU | peak GiB | vs naive |")
    print("|---|---|---|---|---|---|---|")
    naive = {r.workload: r for r in results if r.path == "naive"}
    for r in results:
        base = naive.get(r.workload)
        ratio = (r.items / r.seconds) / (base.items / base.seconds) if base else float("nan")
        mfu = r.flops / r.seconds / (args.peak_tflops * 1e12)
        print(f"| {r.path} | {r.workload} | {r.items / r.seconds:.1f} | {r.tokens / r.seconds:,.0f} | {mfu:.1%} "
              f"| {r.peak_gib:.1f} | {ratio:.2f}x |")  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    if args.json:
        payload = {"results": [dataclasses.asdict(r) for r in results], "notes": notes}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
