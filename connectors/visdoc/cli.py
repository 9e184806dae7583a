"""The ``visdoc`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .checkpoint import DEFAULT_MODEL
from .errors import VisdocError

MODEL_ENV = "VISDOC_MODEL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except VisdocError as exc:
        print(f"visdoc: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visdoc", description="jina-embeddings-v4 for visually rich documents")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sim = commands.add_parser("similarity", help="score a text query against page images")
    sim.add_argument("query", help="the text query")
    sim.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    _model_options(sim)
    sim.add_argument("--task", default="retrieval", help="task adapter (default: retrieval)")
    sim.add_argument("--dim", type=int, default=None, help="Matryoshka size of the dense vector")
    sim.add_argument("--max-pixels", type=int, default=None, help="lower pixel budget per image")
    sim.set_defaults(run=_similarity)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV, DEFAULT_MODEL),
        help=f"hub id or checkpoint folder (default: ${MODEL_ENV} or {DEFAULT_MODEL})",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 on GPU, fp32 on CPU)")


def _similarity(args: argparse.Namespace) -> int:
    from .model import JinaV4
    from .scoring import cosine, maxsim

    print(f"loading {args.model} ...", file=sys.stderr)
    model = JinaV4.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    query = model.encode_texts([args.query], task=args.task, dim=args.dim, multivector=True)
    pages = model.encode_images(
        args.images, task=args.task, dim=args.dim, multivector=True, max_pixels=args.max_pixels, show_progress=True
    )
    dense = cosine(query.dense, pages.dense)[0]
    q_tokens = query.multivector[0]
    print(f"query: {args.query!r} ({len(q_tokens)} tokens)")
    print(f"{'dense cosine':>12}  {'maxsim/token':>12}  {'page tokens':>11}  image")
    for path, score, tokens in zip(args.images, dense, pages.multivector, strict=True):
        late = maxsim(q_tokens, tokens) / len(q_tokens)
        print(f"{score:12.4f}  {late:12.4f}  {len(tokens):11d}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
