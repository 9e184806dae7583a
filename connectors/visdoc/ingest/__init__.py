"""Ingestion: files -> pages or chunks -> embeddings -> Qdrant points, resumable and idempotent.

One pipeline, in stages: :mod:`.plan` (hash and count each file, compare with the store),
:mod:`.stages` (produce pages and chunks, embed them into points; the one bad-item policy), and
two executors of those stages: :class:`Ingestor` (:mod:`.local`, threads and processes here) and
:class:`~visdoc.ingest.ray.RayIngestor` (Ray Data on a cluster). Each file is hashed; its pages
get point ids from (content hash, page), so a second run stores only what is missing (nothing for
unchanged files, the rest of an interrupted run), and a changed file replaces the pages of its
previous version. Bad files and pages are reported and skipped.
"""

from ..sources import Problem
from .local import ENGINE_PROCESS_MIN_UNITS, Ingestor, default_batch_size, default_workers
from .plan import Document, IngestReport, identify, page_count, plan_documents
from .stages import IngestCancelled, IngestHooks, Unit, embed_units

__all__ = [
    "ENGINE_PROCESS_MIN_UNITS",
    "Document",
    "IngestCancelled",
    "IngestHooks",
    "IngestReport",
    "Ingestor",
    "Problem",
    "Unit",
    "default_batch_size",
    "default_workers",
    "embed_units",
    "identify",
    "page_count",
    "plan_documents",
]
