"""How the command line loads its model: local or remote, and whether merged and compiled.

``--merge-adapters``/``--compile`` left unset follow :func:`visdoc.encoder.speed.fast_path`:
on for long-running work on CUDA (``serve``, ``ingest`` of many pages), off otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from ..errors import VisdocError


def speed_flags(args: argparse.Namespace) -> tuple[bool | None, bool | None]:
    """``(merge_adapters, compile)`` asked for on the command line (``None``: not said)."""
    if args.exact:
        if args.merge_adapters or args.compile:
            raise VisdocError("--exact runs unmerged and uncompiled: drop --merge-adapters/--compile")
        return False, False
    return args.merge_adapters, args.compile


def load_model(args: argparse.Namespace, name: str, *, long_running: bool = False):  # noqa: ANN201
    """A :class:`RemoteJinaV4` for ``--embedding-url``, else :func:`local_model`."""
    from ..encoder.local import JinaV4

    if args.embedding_url:
        if any(speed_flags(args)):
            print("note: --merge-adapters/--compile apply to a local model, not to --embedding-url", file=sys.stderr)
        return JinaV4.remote(args.embedding_url, api_key=args.embedding_api_key)
    return local_model(args, name, long_running=long_running)


def local_model(args: argparse.Namespace, name: str, *, long_running: bool = False):  # noqa: ANN201
    """Load ``name`` as the arguments say; compile its blocks now, saying so, when it is compiled."""
    from ..encoder import speed
    from ..encoder.device import pick_device
    from ..encoder.local import JinaV4

    merge_flag, compile_flag = speed_flags(args)
    merge, compiled = speed.speed_choice(pick_device(args.device), long_running, merge_adapters=merge_flag,
                                         compile=compile_flag)  # fmt: skip
    chosen = [text for flag, text in ((merge, "merged adapters"), (compiled, "compiled")) if flag]
    note = f" ({', '.join(chosen)})" if chosen else ""
    print(f"loading {name}{note} ...", file=sys.stderr, flush=True)
    model = JinaV4.from_pretrained(name, device=args.device, dtype=args.dtype, merge_adapters=merge, compile=compiled)
    if compiled:
        print(f"{speed.WARM_UP_NOTE} ...", file=sys.stderr, flush=True)
        speed.warm_up(model)
    return model


def pages_at_least(paths: Iterable[str], limit: int) -> bool:
    """Whether ``paths`` hold at least ``limit`` pages (PDF pages, image frames; a text file counts
    one), counting no further than that; unreadable files count none (the ingestion reports them).
    Pages already stored are counted too: the collection is not opened for this."""
    from ..ingest.plan import page_count
    from ..sources.files import discover

    found = 0
    for file in discover(paths)[0]:
        try:
            found += 1 if file.kind == "text" else page_count(file.path)
        except Exception:  # noqa: BLE001 - a broken file: the ingestion reports it
            continue
        if found >= limit:
            return True
    return False
