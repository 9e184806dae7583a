"""Ingestion on a Ray cluster (Ray Data): many model replicas, the same points as :mod:`visdoc.ingest`.

The stages are the single-process :class:`~visdoc.ingest.Ingestor`'s, spread over the cluster:

1. driver: find the files (:func:`visdoc.sources.discover`);
2. Ray tasks: hash each file, count its pages, cut texts into chunks (:func:`visdoc.ingest.plan.identify`);
3. driver: compare with the store (:func:`visdoc.ingest.plan.plan_documents`): stored pages are
   skipped, pages of an older version of a changed file are deleted;
4. Ray tasks: render PDF pages, decode image frames, take the text chunks (:func:`~.stages.produce`);
5. a pool of Ray actors, each holding one model (on a GPU, or on CPU threads), embeds them into
   points with the ids and payloads of the single-process path (:func:`~.stages.embed_isolated`);
6. writes: an embedded store (a folder locked by one process) is written by the driver from the
   stream of points; a Qdrant server or cluster by a pool of writer actors, each with its own client.

Point ids are deterministic (``point_id(document_id, page)``), so a retried task or a re-run
rewrites the same points. Rows between the stages carry one pickled object each (a document, a
page, a point or a problem): pages and points are blobs anyway, and pickling keeps them exactly
as the single-process path builds them. Ray is imported only when a run starts.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import VisdocError
from ..points import PagePoint
from ..sources import Problem, SourceFile, discover
from ..store import CollectionSpec, Store
from .plan import Document, IngestReport, identify, plan_documents, reported
from .stages import embed_isolated, produce, render_budget, tasks

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint
    from ..tokenization import PromptTokenizer

ITEM = "item"  # the one column of every stage: a pickled object
MAX_BLOCKS = 2000  # Ray tasks per stage at most (a block is a few files or pages; more share a task)


class RayIngestor:
    """Embeds files on a Ray cluster and stores them in a :class:`~visdoc.store.Store`.

    ``model`` is a hub id or checkpoint folder that every node running an embedding actor can
    load (a folder must be at the same path on each node); files must likewise be readable at
    the same absolute path everywhere (a shared file system). ``actors`` model replicas embed in
    parallel, each with ``gpus_per_actor`` GPUs (default: 1 when the cluster has GPUs, else 0:
    CPU actors) and ``cpus_per_actor`` cores (default: 1 for GPU actors; CPU actors share the
    cluster's cores but one, which is left to reading and rendering). Each actor call embeds
    ``batch_size`` pages or chunks (default: 128 on GPU actors, 8 on CPU ones).

    Writes go through ``store``'s ``upsert`` (which splits server uploads by size). For an
    embedded store they happen in this process, the only one that may open it; for a store on a
    Qdrant server reached by URL, ``writers`` actors (default: ``actors``) write with their own
    clients (``remote_writes=False`` keeps them in this process).

    Without a running Ray session :meth:`ingest` connects to ``address`` (``"auto"``: the cluster
    this machine belongs to; default: ``$RAY_ADDRESS`` or a new local instance) and
    disconnects at the end; ``init_options`` go to ``ray.init`` for a new local instance.
    ``checkpoint`` saves reading the model's configuration again when the caller has it.
    ``dtype``, ``compile`` and ``merge_adapters`` are how each actor loads its model
    (:meth:`JinaV4.from_pretrained`); left None, GPU actors merge and compile (long-running work).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        store: Store,
        *,
        actors: int = 2,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float | None = None,
        batch_size: int | None = None,
        max_pixels: int | None = None,
        chunk_tokens: int = 512,
        chunk_overlap: int = 64,
        dtype: str | None = None,
        compile: bool | None = None,
        merge_adapters: bool | None = None,
        address: str | None = None,
        remote_writes: bool | None = None,
        writers: int | None = None,
        init_options: dict[str, Any] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        import importlib.util

        from ..checkpoint import read_config

        if importlib.util.find_spec("ray") is None:
            raise VisdocError("distributed ingestion needs Ray: pip install 'visdoc[ray]'")
        if actors < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError("actors and batch_size must be at least 1")
        self.name = str(model)  # the payload's "model", as Ingestor writes it (JinaV4.name)
        local = Path(model).expanduser()
        self._load_from = str(local.absolute()) if local.exists() else self.name  # workers' cwd differs
        self.checkpoint: Checkpoint = checkpoint or read_config(model)  # no weights: the actors load them
        self.store = store
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.loading = {"dtype": dtype, "compile": compile, "merge_adapters": merge_adapters, "long_running": True}
        self.address = address
        self.client_options = _client_options(store)
        if remote_writes and self.client_options is None:
            raise ValueError("remote_writes needs a store on a Qdrant server reached by URL")
        if remote_writes is False:
            self.client_options = None
        self.writers = writers or actors
        self.init_options = init_options or {}
        self._budget = render_budget(self.checkpoint.pixels, max_pixels)

    def ingest(self, paths: Iterable[str | os.PathLike], *, show_progress: bool = False) -> IngestReport:
        """Store every supported file under ``paths``; problems are collected, not raised."""
        import ray

        start = time.perf_counter()
        files, problems = discover(paths)
        report = IngestReport(files=len(files) + len(problems), problems=problems)
        if not files:
            report.seconds = time.perf_counter() - start
            return report
        owned = not ray.is_initialized()
        if owned:
            _connect(self.address, self.init_options, show_progress)
        try:
            _quiet_data()
            identified = reported(report, self._identify(files))
            todo = plan_documents(self.store, identified, report)
            if todo:
                self._run(todo, report, show_progress)
        finally:
            if owned:
                ray.shutdown()
        if report.pages_stored:
            self.store.optimize()
        else:
            self.store.finish_pending()  # an earlier run's optimize that a full disk stopped, if any
        report.documents_stored = len(todo)
        report.seconds = time.perf_counter() - start
        return report

    # -- stages ------------------------------------------------------------------------------

    def _identify(self, files: list[SourceFile]) -> list[Document | Problem]:
        """Hash, count and chunk every file in Ray tasks; results in the order of ``files``."""
        import ray.data

        rows = [{ITEM: pickle.dumps((i, file))} for i, file in enumerate(files)]
        tokenizer = _chunking_tokenizer(self.checkpoint)
        kwargs = {"tokenizer": tokenizer, "chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap}
        items = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        out = items.map(_identify_row, fn_kwargs=kwargs).take_all()
        return [item for _, item in sorted(pickle.loads(row[ITEM]) for row in out)]

    def _run(self, todo: list[Document], report: IngestReport, show_progress: bool) -> None:
        """Produce, embed and write the missing pages of ``todo``; counts and problems to ``report``."""
        import ray
        import ray.data
        from tqdm.auto import tqdm

        gpus, cpus = _actor_resources(self.actors, self.gpus_per_actor, self.cpus_per_actor)
        batch_size = self.batch_size or (128 if gpus > 0 else 8)  # Ingestor's defaults on the actors' device
        embedder = {
            "model": self._load_from,
            "name": self.name,
            "spec": self.store.spec,
            "max_pixels": self.max_pixels,
            "device": "cuda" if gpus > 0 else "cpu",
            "loading": self.loading,
            "threads": max(1, int(cpus)),
        }
        resources = {"num_cpus": cpus} | ({"num_gpus": gpus} if gpus > 0 else {})
        work = _tasks(todo)
        points = (
            ray.data.from_items(work, override_num_blocks=min(len(work), MAX_BLOCKS))  # a Ray task each
            .flat_map(_unit_rows, fn_kwargs={"budget": self._budget})
            .map_batches(
                _Embedder,
                fn_constructor_kwargs=embedder,
                batch_size=batch_size,
                compute=_embedder_pool(self.actors),
                batch_format="numpy",
                **resources,
            )
        )
        if self.client_options is not None:  # a Qdrant server: writer actors, each with its own client
            points = points.map_batches(
                _Writer,
                fn_constructor_kwargs={"collection": self.store.name, "client_options": self.client_options},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=self.writers),
                batch_format="numpy",
                num_cpus=0,  # waiting on the server; reserved cores would starve rendering
            )
        total = sum(len(doc.missing) for doc in todo)
        with tqdm(total=total, unit="page", disable=not show_progress, desc="ingest", file=sys.stderr) as bar:
            for batch in points.iter_batches(batch_size=None, batch_format="numpy"):
                items = _unpack(batch)
                stored = [item for item in items if isinstance(item, PagePoint)]
                self.store.upsert(stored)  # only rows from the embedders: the driver is the writer
                done = len(stored) + sum(item for item in items if isinstance(item, int))
                failed = [item for item in items if isinstance(item, Problem)]
                report.pages_stored += done
                report.problems += failed
                bar.update(done + len(failed))


def _embedder_pool(actors: int) -> Any:
    """Ray Data's pool of embedding actors, each taking two batches at once where this Ray Data can
    run calls concurrently: the model runs one forward pass at a time, and the second batch prepares its first
    passes meanwhile, so a GPU does not wait between batches (as two steps in flight do in Ingestor)."""
    import inspect

    import ray.data

    concurrent = {"max_concurrent_calls_per_actor": 2, "enable_true_multi_threading": True}
    if concurrent.keys() <= inspect.signature(ray.data.ActorPoolStrategy).parameters.keys():
        return ray.data.ActorPoolStrategy(size=actors, **concurrent)
    return ray.data.ActorPoolStrategy(size=actors)


# -- what runs in Ray workers ----------------------------------------------------------------


# An exception escaping a row would fail the whole dataset without naming the file: the stages
# turn every error of an item into that item's problem (see visdoc.ingest.stages).


def _identify_row(row: dict[str, Any], tokenizer: Any, chunk_tokens: int, chunk_overlap: int) -> dict[str, Any]:
    index, file = pickle.loads(row[ITEM])
    return {ITEM: pickle.dumps((index, identify(file, tokenizer, chunk_tokens, chunk_overlap)))}


def _tasks(todo: list[Document]) -> list[dict[str, bytes]]:
    """Work items ``(document, pages)`` (:func:`~.stages.tasks`), one row each."""
    return [{ITEM: pickle.dumps(item)} for item in tasks(todo)]


def _unit_rows(row: dict[str, Any], budget: tuple[int, int, int]) -> list[dict[str, bytes]]:
    """The pages or chunks of one work item (or their problems), one row each."""
    doc, pages = pickle.loads(row[ITEM])
    return [{ITEM: pickle.dumps(item)} for item in produce(doc, pages, budget)]


class _Embedder:
    """A Ray actor holding one model: pages and chunks in, points (and problems) out."""

    def __init__(
        self,
        model: str,
        name: str,
        spec: CollectionSpec,
        max_pixels: int | None,
        device: str,
        loading: dict[str, Any],
        threads: int,
    ) -> None:
        import torch

        from ..encoder import JinaV4
        from ..encoder.speed import WARM_UP_NOTE, warm_up

        if device == "cpu":
            torch.set_num_threads(threads)  # the cores Ray reserved for this actor, not the machine's
        self.model = JinaV4.from_pretrained(model, device=device, **loading)
        self.model.name = name  # as the driver was given it, whatever path this node loads from
        if self.model.network.compiled:
            print(f"{WARM_UP_NOTE} ...", file=sys.stderr, flush=True)  # in the actor's log
            warm_up(self.model)
        self.spec = spec
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = _unpack(batch)
        units = [item for item in items if not isinstance(item, Problem)]
        embedded = embed_isolated(self.model, self.spec, units, self.max_pixels) if units else None
        done = [*embedded.points, *embedded.problems] if embedded else []
        return _pack([*done, *(item for item in items if isinstance(item, Problem))])


class _Writer:
    """A Ray actor upserting points into a collection on a Qdrant server; passes problems on and
    replaces the points by their count."""

    def __init__(self, collection: str, client_options: dict[str, Any]) -> None:
        from qdrant_client import QdrantClient

        from ..store import open_store

        self.store = open_store(collection, client=QdrantClient(**client_options))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = _unpack(batch)
        points = [item for item in items if isinstance(item, PagePoint)]
        self.store.upsert(points)
        return _pack([len(points), *(item for item in items if not isinstance(item, PagePoint))])


# -- helpers ----------------------------------------------------------------------------------


def _actor_resources(
    actors: int, gpus: float | None, cpus: float | None, total: dict[str, float] | None = None
) -> tuple[float, float]:
    """(GPUs, CPUs) per embedding actor on a cluster with ``total`` resources (default: the
    connected cluster's). Settings under which the actors cannot all start are refused: Ray Data
    would wait forever for the missing ones. So are actors holding every core: with no core left
    to render on, the pages they wait for would never come."""
    if total is None:
        import ray

        total = ray.cluster_resources()
    if gpus is None:
        gpus = 1.0 if total.get("GPU", 0) >= 1 else 0.0
    kind = "GPU" if gpus > 0 else "CPU"
    if gpus > 0 and actors * gpus > total.get("GPU", 0) + 1e-9:  # 1e-9: 3 actors x 1/3 GPU fit one
        raise VisdocError(
            f"{actors} GPU actors x {gpus:g} GPUs need {actors * gpus:g} GPUs; the cluster has "
            f"{total.get('GPU', 0):g}: use fewer actors or a fraction of a GPU per actor"
        )
    free = total.get("CPU", 0) - 1  # one core for reading, rendering and the driver's tasks
    if cpus is None:
        cpus = 1.0 if gpus > 0 else max(0.5, free / actors)
    if actors * cpus > free:
        raise VisdocError(
            f"{actors} {kind} actors x {cpus:g} cores leave less than one of the cluster's "
            f"{total.get('CPU', 0):g} cores to read and render pages; use fewer actors or fewer cores per actor"
        )
    return float(gpus), float(cpus)


def _pack(items: list[Any]) -> dict[str, Any]:
    import numpy as np

    column = np.empty(len(items), dtype=object)
    column[:] = [pickle.dumps(item) for item in items]
    return {ITEM: column}


def _unpack(batch: dict[str, Any]) -> list[Any]:
    return [pickle.loads(blob) for blob in batch[ITEM]]


def _chunking_tokenizer(checkpoint: Checkpoint) -> PromptTokenizer:
    """The checkpoint's tokenizer without the model, for cutting texts into chunks in Ray tasks."""
    from ..tokenization import PromptTokenizer

    # only offsets() is used, which never truncates
    return PromptTokenizer.from_config(checkpoint.config, checkpoint.path / "tokenizer.json", max_length=sys.maxsize)


def _client_options(store: Store) -> dict[str, Any] | None:
    """How writer actors can reach ``store``'s Qdrant server (None: only this process can write)."""
    from ..store.server import ServerStore

    if not isinstance(store, ServerStore):
        return None
    options = dict(getattr(store.client, "init_options", None) or {})
    if options.get("path") or options.get("location") == ":memory:":  # local mode: this process only
        return None
    if not (options.get("url") or options.get("host") or options.get("location")):
        return None
    return options


def _connect(address: str | None, init_options: dict[str, Any], show_progress: bool) -> None:
    import logging

    import ray

    options: dict[str, Any] = {"logging_level": logging.INFO if show_progress else logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):  # a new local instance
        options |= {"include_dashboard": False} | init_options
    ray.init(address=address, **options)


def _quiet_data() -> None:
    """Ray Data's progress off (the driver shows pages done); its logs stay in the session folder."""
    import logging

    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
