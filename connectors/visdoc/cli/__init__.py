"""The ``visdoc`` command line: :mod:`.parser` declares the sub-commands, :mod:`.commands` runs them."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import VisdocError
from .parser import _parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``visdoc ARGS``; a :class:`~visdoc.VisdocError` is printed without a traceback (exit 2)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except VisdocError as exc:
        print(f"visdoc: error: {exc}", file=sys.stderr)
        return 2
