"""Backup and restore of an embedded collection: one checked file, restored byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from test_copy import all_ids, pages

from visdoc.cli import main
from visdoc.store import (
    CollectionSpec,
    StoreError,
    StoreLockedError,
    backup_collection,
    open_store,
    restore_collection,
)
from visdoc.store.archive import MANIFEST

SPEC = CollectionSpec(dim=32, model="m", token_pool_factor=2, rowcol=True)


def files(folder: Path) -> dict[str, str]:
    """SHA-256 of every byte of every file of a collection's folder but its lock, by relative path."""
    found, buffer = {}, bytearray(8 << 20)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".lock":
            sha = hashlib.sha256()
            with open(path, "rb", buffering=0) as file:
                while n := file.readinto(buffer):
                    sha.update(memoryview(buffer)[:n])
            found[path.relative_to(folder).as_posix()] = sha.hexdigest()
    return found


def stats(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file but the lock: what shows that nothing was written."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}  # fmt: skip


def points(data_dir: Path, name: str) -> dict:
    with open_store(name, data_dir=data_dir) as store:
        return {p.id: p for p in store.retrieve_stored(all_ids(store))}


@pytest.fixture
def collection(tmp_path) -> Path:
    """An optimized collection of 30 pages in ``tmp_path/data/docs``, closed."""
    with open_store("docs", SPEC, data_dir=tmp_path / "data") as store:
        store.upsert(pages(30))
        store.optimize()
    return tmp_path / "data"


def test_restore_gives_back_the_collection_byte_for_byte(collection, tmp_path):
    manifest = backup_collection(tmp_path / "docs.tar", "docs", data_dir=collection)
    assert (manifest.collection, manifest.points, manifest.spec) == ("docs", 30, SPEC)
    assert (tmp_path / "docs.tar").stat().st_size < 8 << 20  # the engine's sparse files are not stored whole
    restored = restore_collection(tmp_path / "docs.tar", "copy", data_dir=collection)
    assert restored == manifest
    assert files(collection / "copy") == files(collection / "docs")  # every byte, holes included
    assert points(collection, "copy") == points(collection, "docs")  # every vector and payload read back
    assert sorted(p.name for p in collection.iterdir()) == ["copy", "docs"]  # nothing left behind


def test_restore_refuses_an_existing_collection_unless_forced(collection, tmp_path):
    backup_collection(tmp_path / "docs.tar", "docs", data_dir=collection)
    with open_store("other", SPEC, data_dir=collection) as store:
        store.upsert(pages(5, seed=7))
    before = stats(collection / "other")
    with pytest.raises(StoreError, match="collection 'other' already exists in .*: pass --force"):
        restore_collection(tmp_path / "docs.tar", "other", data_dir=collection)
    assert stats(collection / "other") == before
    with open_store("other", data_dir=collection):  # open elsewhere: even --force waits for it to close
        with pytest.raises(StoreLockedError, match="'other'"):
            restore_collection(tmp_path / "docs.tar", "other", data_dir=collection, force=True)
    restore_collection(tmp_path / "docs.tar", "other", data_dir=collection, force=True)
    assert files(collection / "other") == files(collection / "docs")
    assert sorted(p.name for p in collection.iterdir()) == ["docs", "other"]


def test_a_damaged_backup_is_refused_and_changes_nothing(collection, tmp_path):
    backup = tmp_path / "docs.tar"
    backup_collection(backup, "docs", data_dir=collection)
    with tarfile.open(backup) as tar:  # a byte in the middle of the largest file's data
        member = max(tar.getmembers(), key=lambda m: m.size)
    data = bytearray(backup.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0x40
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    before = stats(collection / "docs")
    name = member.name.removeprefix("collection/")
    with pytest.raises(StoreError, match=f"damaged.tar is damaged: {name} does not match its checksum"):
        restore_collection(damaged, "docs", data_dir=collection, force=True)
    assert stats(collection / "docs") == before and len(points(collection, "docs")) == 30
    assert sorted(p.name for p in collection.iterdir()) == ["docs"]  # the extracted files are gone

    cut = tmp_path / "cut.tar"
    cut.write_bytes(backup.read_bytes()[: member.offset_data + 1000])
    with pytest.raises(StoreError, match="cut.tar is not a visdoc backup, or is damaged"):
        restore_collection(cut, "new", data_dir=collection)
    assert not (collection / "new").exists()


def test_a_foreign_or_malicious_file_is_refused(collection, tmp_path):
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(collection / "docs" / "visdoc.json", "visdoc.json")
    with pytest.raises(StoreError, match=f"plain.tar is not a visdoc backup, or is damaged: it holds no {MANIFEST}"):
        restore_collection(plain, data_dir=collection)
    (tmp_path / "text.tar").write_text("hello")
    with pytest.raises(StoreError, match="text.tar is not a visdoc backup"):
        restore_collection(tmp_path / "text.tar", data_dir=collection)

    evil = tmp_path / "evil.tar"  # a manifest that lists a file outside the collection
    manifest = backup_collection(tmp_path / "docs.tar", "docs", data_dir=collection).to_json()
    manifest["files"]["../../escaped"] = {"size": 5, "stored": 5, "sha256": hashlib.sha256(b"owned").hexdigest()}
    with tarfile.open(evil, "w") as tar:
        for name, data in (("collection/../../escaped", b"owned"), (MANIFEST, json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(StoreError, match="evil.tar cannot be restored: .*outside the destination"):
        restore_collection(evil, "x", data_dir=collection)
    assert not (tmp_path / "escaped").exists() and not (collection / "escaped").exists()
    assert sorted(p.name for p in collection.iterdir()) == ["docs"]


def test_backup_holds_the_lock_and_keeps_an_existing_file(collection, tmp_path):
    with open_store("docs", data_dir=collection):
        with pytest.raises(StoreLockedError, match="'docs'"):
            backup_collection(tmp_path / "docs.tar", "docs", data_dir=collection)
    assert not list(tmp_path.glob("*.tar*"))  # no partial file
    (tmp_path / "docs.tar").write_text("keep me")
    with pytest.raises(StoreError, match="docs.tar exists: pass --force"):
        backup_collection(tmp_path / "docs.tar", "docs", data_dir=collection)
    assert (tmp_path / "docs.tar").read_text() == "keep me"


def test_cli_backup_and_restore(collection, tmp_path, capsys):
    file = str(tmp_path / "docs.tar")
    assert main(["backup", file, "--collection", "docs", "--data-dir", str(collection)]) == 0
    out = capsys.readouterr()
    assert "backed up collection 'docs' (30 points, " in out.out and out.out.rstrip().endswith(file)
    assert "backup: 100%" in out.err  # progress is visible in the CLI
    assert main(["backup", file, "--collection", "docs", "--data-dir", str(collection)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["restore", file, "--data-dir", str(collection)]) == 2  # under its own name, which exists
    assert "collection 'docs' already exists" in capsys.readouterr().err
    target = tmp_path / "elsewhere"
    assert main(["restore", file, "--data-dir", str(target), "--collection", "moved"]) == 0
    assert "restored collection 'moved' (30 points, backed up " in capsys.readouterr().out
    assert main(["restore", file, "--data-dir", str(collection), "--force"]) == 0
    assert files(collection / "docs") == files(target / "moved")
