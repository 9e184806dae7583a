"""Embedded backend: Qdrant's engine in-process (qdrant-edge), one directory per collection.

An :class:`EdgeStore` runs in the caller's process; inside :meth:`EdgeStore.engine_process` its
calls are forwarded (:mod:`visdoc.store.engine_process`) to a child process that runs
:mod:`visdoc.store.engine_child`, which holds an :class:`EdgeStore` of its own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..points import INDEXED_FIELDS, PagePoint
from .base import (
    CollectionNotFoundError,
    DiskFullError,
    SearchPlan,
    SparseTerms,
    Store,
    StoreError,
    stored_payload,
    stored_vectors,
)
from .disk import CREATE_BYTES, WRITE_MARGIN, engine_errors, open_need, raw_bytes, require, upsert_need
from .edge_queries import edge_config, edge_filter, edge_request, point_vectors, sparse
from .folder import (
    LOCK_FILE,
    SHARD_DIR,
    Lock,
    clear_pending,
    discard_unfinished,
    interrupted_message,
    is_pending,
    mark_pending,
    read_spec,
    write_spec,
)
from .schema import LEXICAL, SPEC_FILE, CollectionSpec, Hit, PageFilter, Record, StoredPoint

if TYPE_CHECKING:
    from .engine_process import EngineProcess

__all__ = ["LOCK_FILE", "SHARD_DIR", "SPEC_FILE", "EdgeStore"]

FLUSH_EVERY_BYTES = 256 << 20  # bound the WAL: it keeps a second copy of everything until flush()
UPDATE_POINTS = 16  # points per engine call: the engine holds the GIL for a whole call (~2 ms per page)

Method = TypeVar("Method", bound=Callable[..., Any])


def _forwarded(method: Method) -> Method:
    """Runs the method in the engine process while there is one (:meth:`EdgeStore.engine_process`),
    else here; either way one call at a time, so the engine is never swapped under a call."""

    @functools.wraps(method)
    def call(self: EdgeStore, *args: Any, **kwargs: Any) -> Any:
        with self._switch:
            self._check_usable()
            if self._child is not None:
                return self._child.call(method.__name__, args, kwargs)
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


class EdgeStore(Store):
    """A collection stored with qdrant-edge under ``data_dir/name``; one process at a time.

    ``lock=False`` is for the engine process only, whose parent holds the collection's lock."""

    def __init__(
        self, data_dir: str | os.PathLike, name: str, spec: CollectionSpec | None = None, *, lock: bool = True
    ) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self._switch = threading.RLock()
        self._child: EngineProcess | None = None
        self._child_users = 0  # engine_process() blocks open (they nest and share the child)
        self._closed = False
        self._broken: StoreError | None = None  # set when the collection could not be reopened here
        self.name = name
        self.path = Path(data_dir) / name
        if not self.path.is_dir():
            if spec is None:
                raise CollectionNotFoundError(f"no collection {name!r} in {Path(data_dir)} (ingest something first)")
            require(self.path, CREATE_BYTES, f"create collection {name!r}")
            self.path.mkdir(parents=True, exist_ok=True)
        self._lock = Lock(self.path / LOCK_FILE, name) if lock else None
        try:
            stored = read_spec(self.path)
            if stored is None and spec is None:
                raise CollectionNotFoundError(interrupted_message(name, Path(data_dir)))
            if stored is None:
                assert spec is not None
                self.spec = spec
                self._shard = self._create(spec)
            else:
                if spec is not None and spec.dim != stored.dim:
                    raise StoreError(f"collection {name!r} stores dim {stored.dim}, not {spec.dim}")
                self.spec = stored
                self._shard = self._load()
        except BaseException:
            if self._lock is not None:
                self._lock.close()
            raise
        self._unflushed = 0

    def _create(self, spec: CollectionSpec) -> Any:
        """A new shard and its spec, the spec last: a kill before leaves a folder the next create replaces."""
        qe, shard_path = self._qe, self.path / SHARD_DIR
        leftover = open_need(shard_path) if shard_path.is_dir() else 0
        require(self.path, CREATE_BYTES + leftover, f"create collection {self.name!r}")
        discard_unfinished(self.path, self.name, _count_points)
        with engine_errors(self.path, f"create collection {self.name!r}"):
            shard = qe.EdgeShard.create(str(shard_path), edge_config(qe, spec))
            try:
                for field, kind in INDEXED_FIELDS.items():
                    schema = qe.PayloadSchemaType.Keyword if kind == "keyword" else qe.PayloadSchemaType.Integer
                    shard.update(qe.UpdateOperation.create_field_index(field, schema))
                shard.flush()
                write_spec(self.path, spec)
            except BaseException:
                shard.close()
                raise
        return shard

    def _load(self) -> Any:
        """Open the shard, if there is the room opening may take (see :mod:`visdoc.store.disk`)."""
        shard_path = self.path / SHARD_DIR
        require(self.path, open_need(shard_path), f"open collection {self.name!r}")
        with engine_errors(self.path, f"open collection {self.name!r}"):
            return self._qe.EdgeShard.load(str(shard_path))

    # -- writing -----------------------------------------------------------------------------

    @_forwarded
    def upsert(self, points: Sequence[PagePoint]) -> None:
        if points:
            stored = ((p.id, stored_vectors(p, self.spec), stored_payload(p, self.spec)) for p in points)
            self._write(stored, len(points), raw_bytes(points, self.spec))

    @_forwarded
    def upsert_stored(self, points: Sequence[StoredPoint]) -> None:
        if points:
            self._write(((p.id, p.vectors, p.payload) for p in points), len(points), sum(p.nbytes for p in points))

    def _write(self, points: Iterable[tuple[str, dict[str, Any], dict[str, Any]]], count: int, raw: int) -> None:
        """Store ``(id, stored vectors, payload)`` triples whose float32 bytes are ``raw``."""
        qe = self._qe
        self._before_write(upsert_need(raw), f"store {count} pages into collection {self.name!r}")
        with engine_errors(self.path, f"store pages into collection {self.name!r}"):
            batch: list[Any] = []
            for pid, vectors, payload in points:  # plain lists build Points ~2x faster than numpy arrays (0.9)
                batch.append(qe.Point(pid, point_vectors(qe, vectors), payload))
                if len(batch) == UPDATE_POINTS:  # let other threads (a GPU's feeder) in between
                    self._shard.update(qe.UpdateOperation.upsert_points(batch))
                    batch = []
            if batch:
                self._shard.update(qe.UpdateOperation.upsert_points(batch))
        self._unflushed += raw
        if self._unflushed >= FLUSH_EVERY_BYTES:
            self.flush()

    @_forwarded
    def delete(self, where: PageFilter) -> None:
        if where.is_empty():
            raise ValueError("refusing to delete with an empty filter")
        self._before_write(WRITE_MARGIN, f"delete from collection {self.name!r}")
        with engine_errors(self.path, f"delete from collection {self.name!r}"):
            self._shard.update(self._qe.UpdateOperation.delete_points_by_filter(self._filter(where)))

    @_forwarded
    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._before_write(WRITE_MARGIN, f"delete from collection {self.name!r}")
            with engine_errors(self.path, f"delete from collection {self.name!r}"):
                self._shard.update(self._qe.UpdateOperation.delete_points(list(ids)))

    @_forwarded
    def optimize(self) -> None:
        """Build the dense HNSW index and merge segments, then flush (the engine only does it when asked).

        Until it completes the collection stays marked as needing it (:meth:`finish_pending`); on a
        full disk it raises :class:`~visdoc.store.DiskFullError` and nothing is lost."""
        doing = f"optimize collection {self.name!r}"
        self._before_write(WRITE_MARGIN, doing)  # the engine checks what its plan needs itself
        with engine_errors(self.path, doing):
            self._shard.optimize()
            self._shard.flush()
        self._unflushed = 0
        clear_pending(self.path)

    @_forwarded
    def finish_pending(self) -> None:
        if is_pending(self.path):
            self.optimize()

    @_forwarded
    def flush(self) -> None:
        with engine_errors(self.path, f"flush collection {self.name!r}"):
            self._shard.flush()
        self._unflushed = 0

    def _before_write(self, needed: int, doing: str) -> None:
        """Refuse a write the disk has no room for; else record that an optimize will be needed."""
        require(self.path, needed, doing)
        with engine_errors(self.path, doing):
            mark_pending(self.path)

    def close(self) -> None:
        with self._switch:
            self._closed = True
            child, self._child = self._child, None
            try:
                if child is not None:
                    child.close()
                    child.join()
                if getattr(self, "_shard", None) is not None:
                    self._shard.flush()
                    self._shard.close()
                    self._shard = None
            finally:
                if self._lock is not None:
                    self._lock.close()

    @contextlib.contextmanager
    def engine_process(self) -> Iterator[None]:
        """Run the engine in a child process while the block runs; every call is forwarded to it.

        Building points and the engine's calls hold Python's GIL, a few ms per stored page; there
        they hold the child's, not this process's, where a thread feeding a GPU would wait for it.
        Each call pickles its arguments, which makes searches slower: this is for bulk writes.
        Blocks nest (from one thread or several): the child lives until the last one ends."""
        from .engine_process import EngineProcess

        with self._switch:
            self._check_usable()
            if self._child is None:
                self.flush()
                self._shard.close()
                self._shard = None
                try:  # the child opens it in the background
                    lock_fd = self._lock.fileno() if self._lock is not None else None
                    self._child = EngineProcess(self.path.parent, self.name, lock_fd=lock_fd)
                finally:
                    if self._child is None:
                        self._shard = self._reopen()
            self._child_users += 1
        try:
            yield
        finally:
            child = None
            with self._switch:
                self._child_users -= 1
                if self._child_users == 0 and self._child is not None:
                    child, self._child = self._child, None
                    try:
                        child.close()  # when it returns or raises, the child has let go of the collection
                    finally:
                        try:
                            self._shard = self._reopen()
                        except BaseException:
                            child.join(kill=True)
                            raise
            if child is not None:
                child.join()  # after closing in order it only has to exit: the collection is reopened here

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError(f"collection {self.name!r} is closed")
        if self._broken is not None:
            raise self._broken

    def _reopen(self) -> Any:
        try:
            return self._load()
        except Exception as exc:
            message = f"could not reopen collection {self.name!r} in this process ({exc}); close it and open it again"
            self._broken = StoreError(message)
            if isinstance(exc, DiskFullError):  # still one: a caller may wait for room
                self._broken = DiskFullError(message, exc.path, exc.needed, exc.free)
            raise self._broken from exc

    # -- reading -----------------------------------------------------------------------------

    @_forwarded
    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        return [Record.from_qdrant(r, with_vectors) for r in self._retrieve(ids, with_vectors)]

    @_forwarded
    def retrieve_stored(self, ids: Sequence[str]) -> list[StoredPoint]:
        return [StoredPoint.from_qdrant(r) for r in self._retrieve(ids, True)]

    def _retrieve(self, ids: Sequence[str], with_vectors: bool) -> list[Any]:
        """The engine's records of ``ids``, in that order (unknown ids left out)."""
        if not ids:
            return []
        found = {str(r.id): r for r in self._shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)}
        return [found[i] for i in ids if i in found]

    @_forwarded
    def count(self, where: PageFilter | None = None) -> int:
        return self._shard.count(self._qe.CountRequest(exact=True, filter=self._filter(where)))

    @_forwarded
    def _scroll(
        self, where: PageFilter | None, limit: int, offset: str | None, *, with_payload: bool
    ) -> tuple[list[Record], str | None]:
        request = self._qe.ScrollRequest(offset=offset, limit=limit, filter=self._filter(where),
                                         with_payload=with_payload, with_vector=False)  # fmt: skip
        records, next_offset = self._shard.scroll(request)
        return [Record.from_qdrant(r, False) for r in records], None if next_offset is None else str(next_offset)

    @_forwarded
    def _search(self, plan: SearchPlan) -> list[Hit]:
        qe = self._qe
        params = None
        if self.spec.quantization != "none":
            rescore = qe.QuantizationSearchParams(rescore=True, oversampling=self.spec.oversampling)
            params = qe.SearchParams(quantization=rescore)
        request = edge_request(qe, plan, params)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self._shard.query(request)]

    def _filter(self, where: PageFilter | None) -> Any:
        return edge_filter(self._qe, where)

    # -- lexical vectors of a collection made before they existed ------------------------------

    @_forwarded
    def _declare_lexical(self) -> None:
        qe = self._qe
        doing = f"add lexical vectors to collection {self.name!r}"
        self._before_write(WRITE_MARGIN, doing)
        with engine_errors(self.path, doing):  # declaring it again is a no-op for the engine
            self._shard.update(qe.UpdateOperation.create_sparse_vector(LEXICAL, modifier=qe.Modifier.Idf))

    @_forwarded
    def _write_lexical(self, vectors: Sequence[tuple[str, SparseTerms]]) -> int:
        qe = self._qe
        batch = [qe.PointVectors(pid, {LEXICAL: sparse(qe, terms)}) for pid, terms in vectors]
        with engine_errors(self.path, f"add lexical vectors to collection {self.name!r}"):
            self._shard.update(qe.UpdateOperation.update_vectors(batch))
        return len(batch)

    @_forwarded
    def _finish_lexical(self) -> None:
        self.flush()
        self.spec = replace(self.spec, lexical=True)
        write_spec(self.path, self.spec)


def _count_points(shard: Path) -> int | None:
    """Points in a shard left without a spec (None if it cannot be opened to count them)."""
    import qdrant_edge as qe

    try:
        opened = qe.EdgeShard.load(str(shard))
    except Exception:
        return None
    try:
        return opened.count(qe.CountRequest(exact=True))
    finally:
        opened.close()
