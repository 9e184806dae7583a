"""The stages every ingestion runs, whoever executes them (this process, or Ray): produce the
pages and chunks of a document, embed them into points, and the one policy for bad items.

Bad items. An error that belongs to one item — a file that cannot be read or hashed
(:func:`~visdoc.ingest.plan.identify`), a page that does not render or an image frame that does
not decode (:func:`produce`), an image the model cannot load (:func:`embed_units`, which leaves it
out and embeds the rest) — makes that item a :class:`~visdoc.sources.Problem` of the report, and
the run goes on. An error that names no item (the device failed, the store refused a write) is
not a bad item: a local run stops and raises it (what was written stays; a re-run finishes the
rest), while a Ray stage, which must not fail the whole dataset, embeds the batch's items one at
a time (:func:`embed_isolated`) so that only the ones that fail alone become problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ImageLoadError, VisdocError
from ..points import PAGE_IMAGE, TEXT_CHUNK, PagePoint, PageSource, source_points
from ..sources import Problem, RenderedPage, render_pages
from .plan import Document, failure

if TYPE_CHECKING:
    from ..checkpoint import PixelBudget
    from ..encoder import Encoder
    from ..store import CollectionSpec

PAGES_PER_RENDER_TASK = 4
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
    """Work items ``(document, pages)``: a few PDF pages each, all frames of an image, all chunks of a text."""
    for doc in documents:
        step = PAGES_PER_RENDER_TASK if doc.file.kind == "pdf" else max(1, len(doc.missing))
        for i in range(0, len(doc.missing), step):
            yield doc, doc.missing[i : i + step]


def produce(
    doc: Document, pages: list[int], budget: RenderBudget, rendered: Callable[[], list[RenderedPage]] | None = None
) -> Iterator[Unit | Problem]:
    """The units of ``pages`` of ``doc``, one by one: PDF pages rendered (by ``rendered`` when the
    caller renders elsewhere), image frames decoded, text chunks taken. A page that fails is its
    problem; an unexpected error stops the item there and becomes the problem of what is left."""
    lean = dataclasses.replace(doc, missing=pages, chunks=[])  # each unit carries its own content only
    done: set[int] = set()
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
            done.add(item.page if isinstance(item, Problem) else item.index)  # type: ignore[arg-type]
            yield item
    except Exception as exc:
        left = [page for page in pages if page not in done]
        yield failure(doc.file.path, exc, left[0] if len(left) == 1 else None)


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

    try:
        with Image.open(doc.file.path) as image:
            for index in doc.missing:
                try:
                    image.seek(index)
                    frame = image.convert("RGB")
                except (OSError, ValueError, EOFError) as exc:
                    yield Problem(str(doc.file.path), f"cannot decode image: {exc}", index)
                    continue
                yield Unit(doc, index, frame, "", str(index + 1))
    except OSError as exc:
        yield Problem(str(doc.file.path), f"cannot read image: {exc}")


def text_units(doc: Document) -> Iterator[Unit]:
    """The missing chunks of a text file."""
    return (Unit(doc, i, doc.chunks[i], doc.chunks[i], f"chunk {i + 1}") for i in doc.missing)


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
