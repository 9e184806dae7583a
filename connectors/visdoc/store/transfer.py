"""Moving a collection without a model: :func:`copy_collection` copies every point as stored from
one store to another (embedded <-> server, collection -> collection), resumable after a kill."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Store, StoreError
from .schema import LEXICAL, CollectionSpec, PageFilter, StoredPoint

DEFAULT_BATCH_BYTES = 16 << 20  # float32 bytes of vectors (and payload) read and written per step
ID_PAGE = 1024  # ids read from the source, and looked up in the target, per step
FIRST_BATCH = 8  # points moved before their size is known
DEFAULT_SAMPLE = 32  # points compared after the copy
FLOAT16_TOLERANCE = 2e-3  # |difference| / max(1, |largest value|): a few float16 steps, after renormalising
# what the stored vectors depend on: a target that differs in any of these is refused; the others
# (placement, HNSW, quantization, oversampling) only change how the target serves the same vectors
CONTENT_FIELDS = ("dim", "model", "task", "multivector_datatype", "pool_size", "token_pool_factor", "rowcol",
                  "lexical")  # fmt: skip


@dataclass
class CopyReport:
    """What :func:`copy_collection` did: ``total`` points in the source, ``copied`` by this run,
    ``present`` already in the target (an earlier, interrupted run), ``checked`` compared at the end."""

    total: int
    copied: int
    present: int
    checked: int


def spec_differences(source: CollectionSpec, target: CollectionSpec) -> list[str]:
    """The :data:`CONTENT_FIELDS` in which ``target`` differs from ``source``, in words."""
    return [f"{name} {getattr(target, name)!r} (the source has {getattr(source, name)!r})" for name in CONTENT_FIELDS
            if getattr(target, name) != getattr(source, name)]  # fmt: skip


def copy_collection(
    source: Store,
    target: Store,
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    sample: int = DEFAULT_SAMPLE,
    show_progress: bool = False,
) -> CopyReport:
    """Copy every point of ``source`` into ``target`` with its vectors and payload as stored: no
    model, nothing recomputed (pooled centroids, row/column means, the lexical vector and the
    multivector, token-pooled or not, are copied as they are). Open ``target`` with the source's
    spec, ``open_store(name, source.spec, ...)``, so that a new one is created like the source; an
    existing target whose spec differs in what is stored (:data:`CONTENT_FIELDS`) is refused,
    naming the difference.

    Resuming: point ids are the same on both sides and upserts are idempotent, so running the copy
    again after a kill finishes it. Each step reads a page of ids from the source (ids only), asks the
    target which of them it holds (ids only) and reads and writes only the others, in batches of about
    ``batch_bytes`` (float32 bytes of vectors plus payload; a server store further splits its requests
    by its ``max_request_bytes``). Asking the target, rather than recording progress, needs no state
    beside the two collections, stays right whatever else wrote to the target, and costs a re-run
    one id lookup per 1,024 points already copied, without reading their vectors again.

    At the end the target is optimized (an embedded one builds its index), then checked: equal
    counts, and ``sample`` points spread over the collection with equal payloads and vectors (dense
    and multivectors within float16 rounding); a mismatch raises :class:`StoreError` naming the ids.
    The source must not change meanwhile. ``show_progress`` shows a progress bar (tqdm)."""
    from tqdm.auto import tqdm

    if batch_bytes < 1 or sample < 0:
        raise ValueError(f"batch_bytes must be >= 1 and sample >= 0, not {batch_bytes} and {sample}")
    differences = spec_differences(source.spec, target.spec)
    if differences:
        raise StoreError(f"collection {target.name!r} cannot take a copy of {source.name!r}: it exists with "
                         f"{', '.join(differences)}; copy into a new collection or delete this one")  # fmt: skip
    total = source.count()
    step = max(1, total // sample) if sample else 0
    picked: list[str] = []
    copied = present = seen = read_bytes = 0
    offset: str | None = None
    with tqdm(total=total, unit="point", desc="copy", disable=not show_progress) as bar:
        while True:
            ids, offset = source.scroll_ids(limit=ID_PAGE, offset=offset)
            picked += [i for n, i in enumerate(ids, seen) if step and n % step == 0][: sample - len(picked)]
            seen += len(ids)
            held = set(target.scroll_ids(PageFilter(ids=tuple(ids)), limit=len(ids))[0]) if ids else set()
            missing = [i for i in ids if i not in held]
            present += len(ids) - len(missing)
            bar.update(len(ids) - len(missing))
            while missing:
                size = FIRST_BATCH if not copied else max(1, int(batch_bytes * copied / read_bytes))
                chunk, missing = missing[:size], missing[size:]
                points = source.retrieve_stored(chunk)
                target.upsert_stored(points)
                copied += len(points)
                read_bytes += sum(p.nbytes for p in points)
                bar.update(len(chunk))
            if offset is None:
                break
    target.optimize()
    check_copy(source, target, picked)
    return CopyReport(total=total, copied=copied, present=present, checked=len(picked))


def check_copy(source: Store, target: Store, ids: Sequence[str]) -> None:
    """Raise :class:`StoreError` unless the counts are equal and the points ``ids`` are equal on
    both sides (payloads exactly, vectors within float16 rounding)."""
    have, got = source.count(), target.count()
    if have != got:
        raise StoreError(f"copy of collection {source.name!r} into {target.name!r} is incomplete: the source holds "
                         f"{have} points, the target {got}")  # fmt: skip
    copies = {p.id: p for p in target.retrieve_stored(ids)}
    wrong = [f"{p.id} ({why})" for p in source.retrieve_stored(ids) if (why := difference(p, copies.get(p.id)))]
    if wrong:
        raise StoreError(f"copy of collection {source.name!r} into {target.name!r} differs at {len(wrong)} of "
                         f"{len(ids)} points checked: {'; '.join(wrong[:10])}")  # fmt: skip


def difference(point: StoredPoint, copy: StoredPoint | None) -> str:
    """What differs between a point and its copy, in words ("" when nothing does)."""
    import numpy as np

    if copy is None:
        return "missing"
    if copy.payload != point.payload:
        return "payload"
    if set(copy.vectors) != set(point.vectors):
        return f"vectors {sorted(copy.vectors)}, not {sorted(point.vectors)}"
    for name, vector in point.vectors.items():
        if name == LEXICAL:
            mine, theirs = (sorted(zip(*v, strict=True)) for v in (vector, copy.vectors[name]))
            same = [i for i, _ in mine] == [i for i, _ in theirs] and np.allclose(
                [w for _, w in mine], [w for _, w in theirs], rtol=1e-6
            )
        else:
            a, b = np.asarray(vector, dtype=np.float32), np.asarray(copy.vectors[name], dtype=np.float32)
            scale = max(1.0, float(np.abs(a).max(initial=0.0)))
            same = a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= FLOAT16_TOLERANCE * scale
        if not same:
            return f"vector {name!r}"
    return ""
