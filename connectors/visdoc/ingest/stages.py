"""The stages every ingestion runs, whoever executes them (this process, or Ray): produce the
pages and chunks of a document, embed them into points, and the one policy for bad items.

Bad items. An error that belongs to one item — a file that cannot be read or hashed
(:func:`~visdoc.ingest.plan.identify`), a page that does not render or an image frame that does
not decode (:func:`produce`), an image the model cannot load (:func:`embed_units`, which leaves it
out and embeds the rest), a file that changed or vanished while it was read (:func:`produce`, and
a local run checks again before each write) — makes that item a :class:`~visdoc.sources.Problem`
of the report, in words, and the run goes on. A step that fails to embed or to be written is
tried again in parts, file by file (:func:`embed_step`; the local writer likewise): a part that
fails alone is a bad item. An error that no single item reproduces, or that every one does (the
device failed, the store refuses every write), names no item: a local run stops and raises it
(what was written stays; a re-run finishes the rest), while a Ray stage, which must not fail the
whole dataset, embeds the batch's items one at a time (:func:`embed_isolated`) so that only the
ones that fail alone become problems."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ImageLoadError, VisdocError
from ..points import PAGE_IMAGE, TEXT_CHUNK, PagePoint, PageSource, source_points
from ..sources import Problem, RenderedPage, render_pages
from .plan import Document, changed, failure

if TYPE_CHECKING:
    from ..checkpoint import PixelBudget
    from ..encoder import Encoder
    from ..store import CollectionSpec

PAGES_PER_RENDER_TASK = 4
CHUNKS_PER_TEXT_TASK = 256  # text chunks per work item, read from the file when the item is produced
RenderBudget = tuple[int, int, int]  # (factor, min_pixels, max_pixels) a page is rendered for


class IngestCancelled(VisdocError):
    """The run was stopped by its :class:`IngestHooks` (what was stored before stays)."""


@dataclass
class IngestHooks:
    """How a caller follows and stops a run: ``on_stored(n)`` after each write of ``n`` points;
    ``cancelled()`` is asked before each write and before the final optimize, and when it says
    so the run raises :class:`IngestCancelled`."""

    on_stored: Callable[[int], None] = lambda n: None
    cancelled: Callable[[], bool] = lambda: False

    def check(self) -> None:
        if self.cancelled():
            raise IngestCancelled("the ingestion was stopped; run it again to finish it")


@dataclass
class Unit:
    """One page or chunk ready to encode."""

    doc: Document
    index: int
    content: Any  # a PIL image or, for text chunks, the chunk's text
    text: str
    label: str

    @property
    def kind(self) -> str:
        return TEXT_CHUNK if self.doc.file.kind == "text" else PAGE_IMAGE

    def source(self) -> PageSource:
        d = self.doc
        return PageSource(d.document_id, d.content_hash, str(d.file.path), self.index, self.label, d.total,
                          self.kind, self.text, d.title)  # type: ignore[arg-type]  # fmt: skip


@dataclass
class Embedded:
    """A step's points, and the items it could not embed."""

    points: list[PagePoint]
    problems: list[Problem]


def render_budget(pixels: PixelBudget, max_pixels: int | None = None) -> RenderBudget:
    """The pixel budget PDF pages are rendered for: the model's, or lower with ``max_pixels``."""
    return pixels.factor, pixels.min_pixels, max_pixels or pixels.max_pixels


def tasks(documents: Iterable[Document]) -> Iterator[tuple[Document, list[int]]]:
    """Work items ``(document, pages)``: a few PDF pages, image frames or text chunks each (a work
    item's units are held together, so a GIF of many frames is never decoded all at once)."""
    for doc in documents:
        step = CHUNKS_PER_TEXT_TASK if doc.file.kind == "text" else PAGES_PER_RENDER_TASK
        for i in range(0, len(doc.missing), step):
            yield doc, doc.missing[i : i + step]


def produce(
    doc: Document, pages: list[int], budget: RenderBudget, rendered: Callable[[], list[RenderedPage]] | None = None
) -> Iterator[Unit | Problem]:
    """The units of ``pages`` of ``doc``: PDF pages rendered (by ``rendered`` when the caller
    renders elsewhere), image frames decoded, text chunks taken. A page that fails is its problem;
    an unexpected error stops the item there and becomes the problem of what is left. When the
    file is no longer what was hashed once they are read, the item is only that problem
    (:func:`~visdoc.ingest.plan.changed`): pages of other content never go under its id."""
    lean = dataclasses.replace(doc, missing=pages, chunks=None)  # each unit carries its own content only
    out: list[Unit | Problem] = []
    try:
        if doc.file.kind == "pdf":
            produced: Iterable[Unit | Problem] = pdf_units(lean, rendered() if rendered else
                                                           render_pages(str(doc.file.path), pages, budget))  # fmt: skip
        elif doc.file.kind == "image":
            produced = image_units(lean)
        else:
            chunks = text_units(dataclasses.replace(doc, missing=pages))
            produced = (dataclasses.replace(unit, doc=lean) for unit in chunks)
        for item in produced:
            out.append(item)
    except Exception as exc:
        done = {item.page if isinstance(item, Problem) else item.index for item in out}
        left = [page for page in pages if page not in done]
        out.append(failure(doc.file.path, exc, left[0] if len(left) == 1 else None))
    moved = changed(doc)
    yield from ([moved] if moved else out)


def pdf_units(doc: Document, pages: Iterable[RenderedPage]) -> Iterator[Unit | Problem]:
    """Rendered PDF pages as units; a page that failed to render as its problem."""
    for page in pages:
        if page.error:
            yield Problem(str(doc.file.path), page.error, page.page)
        else:
            yield Unit(doc, page.page, page.image(), page.text, page.label)


def image_units(doc: Document) -> Iterator[Unit | Problem]:
    """The missing frames of an image file (one for most formats, several for multi-page TIFF)."""
    from PIL import Image

    from ..images import load_frame

    try:
        with Image.open(doc.file.path) as image:
            for index in doc.missing:
                try:
                    frame = load_frame(image, index, str(doc.file.path))  # bounded, upright, RGB
                except (OSError, ValueError, EOFError) as exc:
                    yield Problem(str(doc.file.path), f"cannot decode image: {exc}", index)
                    continue
                yield Unit(doc, index, frame, "", str(index + 1))
    except OSError as exc:
        yield Problem(str(doc.file.path), f"cannot read image: {exc}")


def text_units(doc: Document) -> Iterator[Unit]:
    """The missing chunks of a text file, read from the file as they are taken."""
    assert doc.chunks is not None, "a text document has its chunks"
    return (Unit(doc, i, text, text, f"chunk {i + 1}") for i, text in doc.chunks.select(doc.missing))


def embed_units(encoder: Encoder, spec: CollectionSpec, units: list[Unit], max_pixels: int | None = None) -> Embedded:
    """Encode pages and chunks (one forward pass for both vectors) into points; images the model
    cannot load are returned as problems and left out."""
    pages = [u for u in units if u.kind == PAGE_IMAGE]
    chunks = [u for u in units if u.kind == TEXT_CHUNK]
    out = Embedded([], [])
    while pages:
        try:
            result = encoder.encode_images([u.content for u in pages], task=spec.task, dim=spec.dim,
                                           multivector=True, max_pixels=max_pixels)  # fmt: skip
        except ImageLoadError as exc:
            bad = pages.pop(exc.index)
            out.problems.append(Problem(str(bad.doc.file.path), exc.reason, bad.index))
            continue
        out.points += _points(encoder, spec, pages, result)
        break
    if chunks:
        result = encoder.encode_texts([u.content for u in chunks], task=spec.task, prompt_name="passage",
                                      dim=spec.dim, multivector=True)  # fmt: skip
        out.points += _points(encoder, spec, chunks, result)
    return out


def embed_step(encoder: Encoder, spec: CollectionSpec, units: list[Unit], max_pixels: int | None = None) -> Embedded:
    """:func:`embed_units` for a local run. When the step fails, its parts are tried alone: its
    files (its pages when it holds one file). A part that fails alone is the problem of its file
    (or page) and the rest is embedded; when no part fails alone, or every part does, the error
    named no item (the device failed) and is raised."""
    try:
        return embed_units(encoder, spec, units, max_pixels)
    except Exception:
        parts = by_file(units)
        parts = parts if len(parts) > 1 else [[unit] for unit in units]
        if len(parts) < 2:
            raise
        out, failed = Embedded([], []), 0
        for part in parts:
            try:
                alone = embed_units(encoder, spec, part, max_pixels)
            except Exception as error:
                failed += 1
                out.problems.append(failure(part[0].doc.file.path, error, part[0].index if len(part) == 1 else None))
                continue
            out.points += alone.points
            out.problems += alone.problems
        if failed in (0, len(parts)):
            raise
        return out


def by_file(units: Iterable[Unit]) -> list[list[Unit]]:
    """Units grouped by their file, in the order the files first come."""
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(str(unit.doc.file.path), []).append(unit)
    return list(groups.values())


def embed_isolated(
    encoder: Encoder, spec: CollectionSpec, units: list[Unit], max_pixels: int | None = None
) -> Embedded:
    """:func:`embed_units`, and when a batch fails, each unit alone: only the failing ones are lost."""
    try:
        return embed_units(encoder, spec, units, max_pixels)
    except Exception as exc:
        if len(units) == 1:
            return Embedded([], [failure(units[0].doc.file.path, exc, units[0].index)])
    out = Embedded([], [])
    for unit in units:
        alone = embed_isolated(encoder, spec, [unit], max_pixels)
        out.points += alone.points
        out.problems += alone.problems
    return out


def _points(encoder: Encoder, spec: CollectionSpec, units: list[Unit], result: Any) -> list[PagePoint]:
    return source_points(result, [u.source() for u in units], model=encoder.name, task=spec.task, dim=spec.dim)
