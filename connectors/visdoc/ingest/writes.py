"""The writes of a local run: only what its files still are is stored, and one file the store refuses
does not stop the run (the write side of the bad-item policy in :mod:`visdoc.ingest.stages`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..points import PagePoint, point_id
from ..sources import Problem, explain
from ..store import DiskFullError
from .plan import Document, changed

if TYPE_CHECKING:
    from ..store import Store
    from .stages import Unit


class Writes:
    """Writes the steps of one run to ``store``.

    Just before a step is written, each of its files is compared with what was hashed
    (:func:`~visdoc.ingest.plan.changed`): the points of a file that changed or vanished are left
    out, and so is everything after of that file. A step the store refuses is written again file by
    file: a file refused alone is its problem; when none is, or all are, the error is raised (a
    full disk, :class:`~visdoc.store.DiskFullError`, is always raised: it is no file's fault).
    :meth:`finish` deletes again what the run wrote of files that changed, so that no file is ever
    stored half, or with another content's pages.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written: dict[str, tuple[Document, list[str]]] = {}  # path -> its document, ids written this run
        self.spoiled: set[str] = set()  # paths whose file changed: none of it is kept

    def write(self, units: Sequence[Unit], points: Sequence[PagePoint]) -> tuple[int, list[Problem]]:
        """Store a step's points (of ``units``); returns how many were stored and the problems."""
        docs = {point_id(unit.doc.document_id, unit.index): unit.doc for unit in units}
        groups: dict[str, list[PagePoint]] = {}
        files: dict[str, Document] = {}
        for point in points:
            doc = docs[point.id]
            groups.setdefault(str(doc.file.path), []).append(point)
            files[str(doc.file.path)] = doc
        problems: list[Problem] = []
        for path in list(groups):
            moved = None if path in self.spoiled else changed(files[path])
            if moved is not None:
                self.spoiled.add(path)
                problems.append(moved)
            if path in self.spoiled:
                del groups[path]
        try:
            if groups:
                self.store.upsert([point for group in groups.values() for point in group])
        except DiskFullError:
            raise  # the store's fault, not a file's: smaller writes that still fit would blame the wrong file
        except Exception:
            if len(groups) < 2:
                raise
            refused = self._alone(groups)
            if len(refused) in (0, len(groups)):
                raise
            for path, exc in refused.items():
                del groups[path]
                problems.append(Problem(path, explain(exc, path, otherwise="could not be stored")))
        for path, group in groups.items():
            self.written.setdefault(path, (files[path], []))[1].extend(point.id for point in group)
        return sum(len(group) for group in groups.values()), problems

    def finish(self) -> tuple[int, list[Problem]]:
        """Delete what this run wrote of files that changed; returns how many points were deleted
        and the problems of files whose change is seen only now."""
        problems = []
        for path, (doc, _) in self.written.items():
            moved = None if path in self.spoiled else changed(doc)
            if moved is not None:
                self.spoiled.add(path)
                problems.append(moved)
        doomed = [pid for path in self.spoiled for pid in self.written.get(path, (None, []))[1]]
        if doomed:
            self.store.delete_ids(doomed)
        return len(doomed), problems

    def _alone(self, groups: dict[str, list[PagePoint]]) -> dict[str, Exception]:
        refused: dict[str, Exception] = {}
        for path, group in groups.items():
            try:
                self.store.upsert(group)
            except DiskFullError:
                raise
            except Exception as exc:
                refused[path] = exc
        return refused
