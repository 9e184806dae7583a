"""``visdoc copy``, ``visdoc backup`` and ``visdoc restore``: moving collections without a model."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VisdocError

LOCATION_HELP = ("an embedded collection as its folder DATA_DIR/NAME (e.g. visdoc_data/visdoc), a server one as "
                 "http://HOST:PORT/NAME or https://HOST[:PORT]/NAME")  # fmt: skip


@dataclass(frozen=True)
class Location:
    """Where a collection named on the command line is: a server ``url`` or an embedded ``data_dir``."""

    name: str
    url: str | None = None
    data_dir: str | None = None

    def __str__(self) -> str:
        return f"{self.url}/{self.name}" if self.url else str(Path(self.data_dir or ".") / self.name)


def parse_location(text: str) -> Location:
    """``DATA_DIR/NAME`` (an embedded collection) or ``http(s)://HOST:PORT/NAME`` (a server's)."""
    from urllib.parse import urlsplit, urlunsplit

    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        base, _, name = parts.path.rstrip("/").rpartition("/")
        if not name or not parts.netloc or parts.query or parts.fragment:
            raise VisdocError(f"{text!r} names no collection: give {LOCATION_HELP}")
        return Location(name, url=urlunsplit((parts.scheme, parts.netloc, base, "", "")))
    if "://" in text:
        raise VisdocError(f"{text!r}: a server collection is http://HOST:PORT/NAME or https://HOST/NAME")
    path = Path(text)
    if "/" not in text.rstrip("/") or path.name in ("", ".", ".."):
        raise VisdocError(f"{text!r} names no folder: give {LOCATION_HELP}")
    return Location(path.name, data_dir=str(path.parent))


def _open(at: Location, api_key: str | None, spec: Any = None, **server_options: Any) -> Any:
    from ..store import open_store

    if at.url:
        return open_store(at.name, spec, url=at.url, api_key=api_key, **server_options)
    return open_store(at.name, spec, data_dir=at.data_dir)


def run_copy(args: argparse.Namespace) -> int:
    from ..store import copy_collection

    source_at, target_at = parse_location(args.source), parse_location(args.target)
    if source_at == target_at:
        raise VisdocError(f"SRC and DST are the same collection ({source_at})")
    options = {k: v for k, v in _server_options(args).items() if v is not None}
    if options and not target_at.url:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        raise VisdocError(f"{flags}: only for a server DST (http://HOST:PORT/NAME), not {target_at}")
    if args.batch_mb <= 0 or args.sample < 0:
        raise VisdocError(f"--batch-mb must be above 0 and --sample 0 or more, not {args.batch_mb} and {args.sample}")
    try:
        with _open(source_at, args.source_api_key or args.api_key) as source:
            with _open(target_at, args.target_api_key or args.api_key, source.spec, **options) as target:
                report = copy_collection(source, target, batch_bytes=max(1, int(args.batch_mb * (1 << 20))),
                                         sample=args.sample, show_progress=True)  # fmt: skip
    except KeyboardInterrupt:
        print("\nvisdoc: copy stopped; the points copied so far are kept: run the same command again to "
              "finish", file=sys.stderr)  # fmt: skip
        return 130
    print(f"copied {report.copied} points from {source_at} to {target_at} ({report.present} were already there; "
          f"{report.total} in all, {report.checked} compared after the copy)")  # fmt: skip
    return 0


def _server_options(args: argparse.Namespace) -> dict[str, int | None]:
    return {"shard_number": args.shard_number, "replication_factor": args.replication_factor,
            "write_consistency_factor": args.write_consistency_factor}  # fmt: skip


def run_backup(args: argparse.Namespace) -> int:
    from ..store import backup_collection

    manifest = backup_collection(args.file, args.collection, data_dir=args.data_dir, overwrite=args.force,
                                 show_progress=True)  # fmt: skip
    print(f"backed up collection {args.collection!r} ({manifest.points} points, {len(manifest.files)} files, "
          f"{manifest.size / (1 << 20):.1f} MiB) to {args.file}")  # fmt: skip
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from ..store import data_dir_path, restore_collection

    manifest = restore_collection(args.file, args.collection, data_dir=args.data_dir, force=args.force,
                                  show_progress=True)  # fmt: skip
    name = args.collection or manifest.collection
    print(f"restored collection {name!r} ({manifest.points} points, backed up {manifest.written_at} by visdoc "
          f"{manifest.visdoc}) into {data_dir_path(args.data_dir)}")  # fmt: skip
    return 0


def add_transfer_commands(subcommands: Any, api_key_env: str) -> None:
    """Declare ``copy``, ``backup`` and ``restore`` on the ``visdoc`` parser's sub-commands."""
    import os

    copy = subcommands.add_parser(
        "copy", help="copy a collection as stored (embedded <-> server, no model, resumable)",
        description="Copy a collection with its vectors and payloads as stored: no model, nothing re-embedded. "
        f"SRC and DST each name a collection: {LOCATION_HELP}. A new DST is created with SRC's settings; an "
        "existing DST must have them. Run the same command again after an interruption: it sends only the "
        "points DST lacks. At the end the counts and a sample of points are compared.",
        epilog="examples: visdoc copy visdoc_data/visdoc http://localhost:6333/visdoc (laptop to server); "
        "visdoc copy https://cluster.example:6333/docs backups/docs (into the embedded data dir ./backups)",
    )  # fmt: skip
    copy.add_argument("source", metavar="SRC", help="the collection to copy")
    copy.add_argument("target", metavar="DST", help="the collection to copy into (created if missing)")
    copy.add_argument("--api-key", default=os.environ.get(api_key_env), help=f"both servers' (default: ${api_key_env})")
    copy.add_argument("--source-api-key", default=None, help="SRC's server's key, if not --api-key")
    copy.add_argument("--target-api-key", default=None, help="DST's server's key, if not --api-key")
    copy.add_argument("--batch-mb", type=float, default=16.0,
                      help="vectors and payloads moved per step, in MiB of float32 (default 16)")  # fmt: skip
    copy.add_argument("--sample", type=int, default=32, help="points compared after the copy (default 32; 0: none)")
    copy.add_argument("--shard-number", type=int, default=None, help="a new server DST's shards")
    copy.add_argument("--replication-factor", type=int, default=None, help="a new server DST's replicas per shard")
    copy.add_argument("--write-consistency-factor", type=int, default=None, help="a new server DST's write consistency")
    copy.set_defaults(run=run_copy)

    backup = subcommands.add_parser(
        "backup", help="write an embedded collection to one file (a tar with checksums)",
        description="Write an embedded collection to FILE: its folder after a flush, with a manifest of sizes "
        "and checksums (docs/store.md#moving-a-collection). The collection is held open meanwhile.",
    )  # fmt: skip
    backup.add_argument("file", metavar="FILE", help="the backup file to write (e.g. visdoc.tar)")
    backup.add_argument("--collection", default="visdoc", help="collection name (default: visdoc)")
    backup.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    backup.add_argument("--force", action="store_true", help="replace an existing FILE")
    backup.set_defaults(run=run_backup)

    restore = subcommands.add_parser(
        "restore", help="restore an embedded collection from a backup file, checked",
        description="Restore a collection from a file written by visdoc backup. The files are checked against "
        "its checksums and the collection is opened and counted before it is moved into place; a damaged file "
        "leaves everything as it was.",
    )  # fmt: skip
    restore.add_argument("file", metavar="FILE", help="the backup file")
    restore.add_argument("--collection", default=None, help="restore under this name (default: the backed-up name)")
    restore.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    restore.add_argument("--force", action="store_true", help="replace an existing collection of that name")
    restore.set_defaults(run=run_restore)
