"""An embedded collection in one file: :func:`backup_collection` writes it, :func:`restore_collection`
checks it and puts the collection back, byte for byte. The file's format is :mod:`visdoc.store.archive`'s.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .archive import (
    MANIFEST,
    PREFIX,
    BackupManifest,
    HashingReader,
    collection_contents,
    collection_members,
    data_end,
    mismatches,
    read_manifest,
    visdoc_version,
)
from .base import StoreError
from .folder import LOCK_FILE, Lock, data_dir_path, fsync_folder
from .schema import DEFAULT_COLLECTION, SPEC_FILE

__all__ = ["BackupManifest", "backup_collection", "restore_collection"]


def backup_collection(
    file: str | os.PathLike,
    collection: str = DEFAULT_COLLECTION,
    *,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> BackupManifest:
    """Write the embedded collection to ``file`` (the format: :mod:`visdoc.store.archive`).

    The collection is opened (a collection open in another process is refused) and flushed, and
    stays open, so locked, while its files are read. The file is written beside ``file`` and
    renamed into place when complete; an existing ``file`` is refused unless ``overwrite``."""
    from tqdm.auto import tqdm

    from .edge import EdgeStore

    path = Path(file)
    if path.exists() and not overwrite:
        raise StoreError(f"{path} exists: pass --force (overwrite=True) to replace it")
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with EdgeStore(data_dir_path(data_dir), collection) as store:
        store.flush()
        points, folder = store.count(), store.path
        dirs, files = collection_contents(folder)
        entries: dict[str, tuple[int, int, str]] = {}
        ends = {name: data_end(folder / name, (folder / name).stat().st_size) for name in files}
        bar = tqdm(total=sum(ends.values()), unit="B", unit_scale=True, desc="backup", disable=not show_progress)
        try:
            with bar, tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
                for name in dirs:
                    tar.add(folder / name, f"{PREFIX}/{name}", recursive=False)
                for name in files:
                    with open(folder / name, "rb") as source:
                        info = tar.gettarinfo(arcname=f"{PREFIX}/{name}", fileobj=source)
                        size, info.size = info.size, ends[name]
                        reader = HashingReader(source, bar.update)
                        tar.addfile(info, reader)
                    entries[name] = (size, info.size, reader.hexdigest())
                manifest = BackupManifest(collection, store.spec, points, entries, tuple(dirs), visdoc_version(),
                                          datetime.now(timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
                data = json.dumps(manifest.to_json(), indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
            with open(temp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    fsync_folder(path.parent.absolute())
    return manifest


def restore_collection(
    file: str | os.PathLike,
    collection: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> BackupManifest:
    """Restore a backup as the embedded collection ``collection`` (default: the name it was backed up
    under) in ``data_dir``. An existing collection is refused unless ``force``.

    The files are extracted into a folder next to the target (same file system; members with
    absolute paths, ``..`` or links are refused: tarfile's ``data`` filter), checked against the
    manifest's sizes and checksums (a damaged or foreign file is refused, naming it), opened to
    check the point count and spec, and put back to the backed-up bytes (opening rewrites a few of
    the engine's small files), then renamed into place. With ``force`` the old collection is
    replaced only then, held locked meanwhile: it is renamed aside, the new one renamed in, the old
    one deleted (a kill between the two renames leaves the old one as ``.replaced-NAME-PID``)."""
    from .disk import CREATE_BYTES, require  # numpy: only when used

    path = Path(file)
    root = data_dir_path(data_dir)
    with _open_backup(path) as tar:
        manifest = read_manifest(tar, path)
        name = collection or manifest.collection
        if not name or name.startswith(".") or Path(name).name != name:
            raise StoreError(f"collection name {name!r}: use a plain folder name (no '/', not starting with '.')")
        target = root / name
        if target.exists() and not force:
            raise StoreError(f"collection {name!r} already exists in {root}: pass --force (force=True) to replace it")
        if target.exists() and not target.is_dir():
            raise StoreError(f"{target} is not a folder: cannot restore collection {name!r} there")
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".restore-{name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            with _held(target, name):  # refuse now, not after extracting, a collection open elsewhere
                require(target, manifest.size + CREATE_BYTES, f"restore collection {name!r}")
                members = collection_members(tar, manifest, path)
                _extract(tar, members, staging, manifest, path, show_progress)
                folder = staging / PREFIX
                damaged = [f"{file} {why}" for file, why in mismatches(folder, manifest).items()]
                if damaged:
                    more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
                    raise StoreError(f"{path} is damaged: {damaged[0]}{more}; nothing was restored")
                _check_opens(staging, manifest, path)
                _put_back(tar, members, staging, manifest, path)
                _move_into_place(folder, target, root, name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


@contextmanager
def _open_backup(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        raise StoreError(f"no backup file {path}")
    try:
        with tarfile.open(path, "r:") as tar:
            yield tar
    except (tarfile.ReadError, EOFError) as exc:
        raise StoreError(f"{path} is not a visdoc backup, or is damaged ({exc})") from None


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], into: Path, manifest: BackupManifest, path: Path,
             show: bool = False) -> None:  # fmt: skip
    """Extract ``members`` into ``into``, each file extended to its size (the hole the backup left out)."""
    from tqdm.auto import tqdm

    total = sum(m.size for m in members)
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="restore", disable=not show) as bar:
            for member in members:
                tar.extract(member, into, filter="data")
                if member.isfile():
                    os.truncate(into / member.name, manifest.files[member.name.removeprefix(f"{PREFIX}/")][0])
                bar.update(member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StoreError(f"{path} cannot be restored: {exc}") from None


def _check_opens(staging: Path, manifest: BackupManifest, path: Path) -> None:
    """Open the extracted collection: it must hold the manifest's points and spec."""
    from .edge import EdgeStore

    with EdgeStore(staging, PREFIX) as store:
        points, spec = store.count(), store.spec
    if points != manifest.points:
        raise StoreError(f"{path} is damaged: it restores {points} points, its manifest says {manifest.points}")
    if spec != manifest.spec:
        raise StoreError(f"{path} is damaged: the restored {SPEC_FILE} is not the spec its manifest holds")


def _put_back(tar: tarfile.TarFile, members: list[tarfile.TarInfo], staging: Path, manifest: BackupManifest,
              path: Path) -> None:  # fmt: skip
    """Undo what opening changed (the engine rewrites a few small files): extract those files again."""
    folder = staging / PREFIX
    changed = set(mismatches(folder, manifest))
    for name in changed - set(manifest.files):
        (folder / name).unlink()
    again = [m for m in members if m.isfile() and m.name.removeprefix(f"{PREFIX}/") in changed]
    for member in again:
        (staging / member.name).unlink(missing_ok=True)
    _extract(tar, again, staging, manifest, path)
    still = mismatches(folder, manifest)
    if still:
        name, why = next(iter(still.items()))
        raise StoreError(f"{path}: after opening it to check, the restored {name} {why}; nothing was restored")


@contextmanager
def _held(target: Path, name: str) -> Iterator[None]:
    """Hold an existing collection's lock: it must not be open elsewhere while it is replaced."""
    if not target.is_dir():
        yield
        return
    lock = Lock(target / LOCK_FILE, name)
    try:
        yield
    finally:
        lock.close()


def _move_into_place(folder: Path, target: Path, root: Path, name: str) -> None:
    """Rename ``folder`` to ``target``; an existing ``target`` is renamed aside first, then deleted."""
    aside = root / f".replaced-{name}-{os.getpid()}"
    if target.exists():
        os.rename(target, aside)
    os.rename(folder, target)
    fsync_folder(root)
    shutil.rmtree(aside, ignore_errors=True)
