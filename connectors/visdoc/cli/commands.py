"""What each ``visdoc`` sub-command does, given its parsed arguments (see :mod:`.parser`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import points
from ..checkpoint import DEFAULT_MODEL
from ..errors import VisdocError
from .loading import load_model as _load_model
from .loading import local_model as _local_model
from .loading import pages_at_least, speed_flags

URL_ENV = "QDRANT_URL"
API_KEY_ENV = "QDRANT_API_KEY"
EMBEDDING_URL_ENV = "VISDOC_EMBEDDING_URL"
SERVER_KEY_ENV = "VISDOC_API_KEY"


def _open_store(args: argparse.Namespace, spec=None, **server_options):  # noqa: ANN001, ANN202
    from ..store import open_store

    options = {k: v for k, v in server_options.items() if v is not None}
    if args.url:
        return open_store(args.collection, spec, url=args.url, api_key=args.api_key, **options)
    return open_store(args.collection, spec, data_dir=args.data_dir)


def _ui_settings(args: argparse.Namespace):  # noqa: ANN202
    from ..server import UISettings

    return UISettings(data_dir=args.data_dir, url=args.url, qdrant_api_key=args.qdrant_api_key,
                      collection=args.collection, max_upload_bytes=args.max_upload_mb << 20)  # fmt: skip


def _ui_auth(args: argparse.Namespace) -> str:
    if args.api_key:
        return "bearer token required"
    return "no authentication: answers only requests from this machine to localhost; set --api-key for remote use"


def _check_collection_free(args: argparse.Namespace) -> None:
    """Refuse now, not after loading the model, an embedded collection that another process holds."""
    if not args.url:
        from ..store import check_available

        check_available(args.collection, data_dir=args.data_dir)


def run_ui(args: argparse.Namespace) -> int:
    import dataclasses

    from ..server import check_exposure, serve

    check_exposure(args.host, args.port, args.api_key, allow_no_key=args.allow_no_key, ui_only=True)  # before loading
    _check_collection_free(args)
    model = _load_model(args, args.model)
    print(f"search page on http://{args.host}:{args.port}/ui ({_ui_auth(args)})", file=sys.stderr, flush=True)
    settings = dataclasses.replace(_ui_settings(args), preload=True)  # the page's own server: open the store now
    serve(model, host=args.host, port=args.port, api_key=args.api_key, ui=settings, ui_only=True,
          allow_no_key=args.allow_no_key)  # fmt: skip
    return 0


def run_similarity(args: argparse.Namespace) -> int:
    from ..scoring import cosine, maxsim

    model = _load_model(args, args.model)
    query = model.encode_texts([args.query], task=args.task, dim=args.dim, multivector=True)
    pages = model.encode_images(
        args.images, task=args.task, dim=args.dim, multivector=True, max_pixels=args.max_pixels, show_progress=True
    )
    dense = cosine(query.dense, pages.dense)[0]
    q_tokens = query.multivector[0]
    print(f"query: {args.query!r} ({len(q_tokens)} tokens)")
    print(f"{'dense cosine':>12}  {'maxsim/token':>12}  {'page tokens':>11}  image")
    for path, score, tokens in zip(args.images, dense, pages.multivector, strict=True):
        late = maxsim(q_tokens, tokens) / len(q_tokens)
        print(f"{score:12.4f}  {late:12.4f}  {len(tokens):11d}  {path}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..server import Limits, check_exposure, serve

    check_exposure(args.host, args.port, args.api_key, allow_no_key=args.allow_no_key)  # before loading the model
    limits = Limits(
        max_body_bytes=args.max_body_mb << 20,
        max_items=args.max_items,
        max_text_chars=args.max_text_chars,
        max_image_pixels=args.max_image_pixels,
        max_queue_items=args.max_queue,
        allow_image_urls=args.allow_image_urls,
    )
    model = _local_model(args, args.model, long_running=True)
    auth = "bearer token required" if args.api_key else "no authentication"
    print(f"serving {model.name} on http://{args.host}:{args.port} ({auth})", file=sys.stderr, flush=True)
    ui = None if args.no_ui else _ui_settings(args)
    if ui is not None:
        print(f"search page at /ui ({_ui_auth(args)})", file=sys.stderr, flush=True)
    serve(model, host=args.host, port=args.port, api_key=args.api_key, limits=limits, ui=ui,
          allow_no_key=args.allow_no_key)  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from ..evaluation import evaluate_collection, format_table, load_dataset, run_evaluation
    from ..store import SEARCH_MODES, Fusion

    dataset = load_dataset(args.dataset, args.split)
    try:
        fusion = Fusion(args.fusion, args.fusion_k, (args.lexical_weight, 1.0))
    except ValueError as exc:
        raise VisdocError(str(exc)) from None
    if not 0 <= args.mmr_lambda <= 1:
        raise VisdocError(f"--mmr-lambda must be between 0 and 1 (1: relevance only), not {args.mmr_lambda}")
    if args.collection:
        _check_collection_free(args)  # before loading the model
    model = _load_model(args, args.model)
    print(
        f"{dataset.name}: {len(dataset.corpus)} {dataset.kind} items, {len(dataset.queries)} queries", file=sys.stderr
    )
    search = {"fusion": fusion, "mmr_lambda": args.mmr_lambda}
    results = run_evaluation(model, dataset, k=args.k, **search)
    if args.collection:
        with _open_store(args) as store:
            results += [evaluate_collection(model, store, dataset, k=args.k, mode=mode, **search)
                        for mode in SEARCH_MODES]  # fmt: skip
    if args.json:
        rows = [{"mode": r.mode, "search_mode": r.search_mode, **r.metrics, "bytes_per_item": r.bytes_per_item,
                 "p50_ms": r.p50_ms} for r in results]  # fmt: skip
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(results))
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from ..encoder.speed import LONG_INGEST_PAGES
    from ..ingest import Ingestor

    _check_collection_free(args)  # before loading the model (or starting Ray)
    if args.ray:
        return _ingest_on_ray(args)
    long_running = pages_at_least(args.paths, LONG_INGEST_PAGES)  # compiling pays back on a GPU (see encoder.speed)
    model = _load_model(args, args.model, long_running=long_running)
    spec = _collection_spec(args, model.dims, model.name)
    options = {"workers": args.workers, "batch_size": args.batch_size, "max_pixels": args.max_pixels}
    return _store_ingestion(args, spec, lambda store: Ingestor(model, store, **options))


def _ingest_on_ray(args: argparse.Namespace) -> int:
    from ..checkpoint import read_config
    from ..ingest.ray import RayIngestor

    if args.embedding_url:
        raise VisdocError(f"--ray embeds with model replicas in Ray actors: unset --embedding-url/${EMBEDDING_URL_ENV}")
    options = {"actors": args.actors, "gpus_per_actor": args.gpus_per_actor, "cpus_per_actor": args.cpus_per_actor,
               "batch_size": args.batch_size, "max_pixels": args.max_pixels, "dtype": args.dtype,
               "address": args.address}  # fmt: skip
    options["merge_adapters"], options["compile"] = speed_flags(args)  # None: on for GPU actors
    checkpoint = read_config(args.model)  # config and tokenizer only: the actors fetch and load the weights
    spec = _collection_spec(args, checkpoint.dims, str(args.model))
    return _store_ingestion(args, spec, lambda store: RayIngestor(args.model, store, checkpoint=checkpoint, **options))


def _store_ingestion(args: argparse.Namespace, spec, ingestor: Callable[[Any], Any]) -> int:  # noqa: ANN001
    """Open the collection, run ``ingestor(store).ingest`` over the paths, and report. Ctrl-C or
    SIGTERM stops the run, keeping what was stored; the exit status is then 130 or 143."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with _open_store(args, spec, **_server_options(args)) as store:
            report = ingestor(store).ingest(args.paths, show_progress=True)
            print(report.summary())
            print(f"collection {args.collection!r}: {store.count()} points")
    except KeyboardInterrupt as stopped:
        name = "SIGTERM" if stopped.args == ("SIGTERM",) else "SIGINT"
        print(f"\nvisdoc: ingestion stopped ({name}); the pages stored so far are kept: run the same command "
              "again to finish", file=sys.stderr)  # fmt: skip
        return 128 + signal.Signals[name]
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if report.problems else 0


def _server_options(args: argparse.Namespace) -> dict[str, int | None]:
    return {"shard_number": args.shard_number, "replication_factor": args.replication_factor,
            "write_consistency_factor": args.write_consistency_factor}  # fmt: skip


def _collection_spec(args: argparse.Namespace, dims: Sequence[int], model_name: str):  # noqa: ANN202
    """The settings of a collection that ``visdoc ingest`` creates."""
    from ..store import CollectionSpec

    return CollectionSpec.for_profile(
        "archive" if args.on_disk else args.profile,
        dim=args.dim or dims[-1],
        model=model_name,
        task=args.task,
        multivector_datatype=args.datatype,
        quantization=args.quantization,
        pool_size=args.pool_size,
        token_pool_factor=args.token_pool_factor,
        rowcol=args.rowcol,
        oversampling=args.oversampling,
    )


def run_search(args: argparse.Namespace) -> int:
    import json

    from ..search import search
    from ..store import Fusion

    where = _parse_filters(args.filter)
    try:
        fusion = Fusion(args.fusion, args.fusion_k, (args.lexical_weight, 1.0))
    except ValueError as exc:
        raise VisdocError(str(exc)) from None
    if args.mode == "lexical" and args.image:
        raise VisdocError("--mode lexical searches the page text: an image query has none (use hybrid or rerank)")
    with _open_store(args) as store:
        model = _load_model(args, args.model or store.spec.model or DEFAULT_MODEL)
        try:
            hits = search(model, store, args.query, k=args.k, mode=args.mode, prefetch=args.prefetch,
                          pooled_prefetch=args.pooled_prefetch, where=where, image=args.image,
                          lexical_prefetch=args.lexical_prefetch, fusion=fusion, mmr_lambda=args.mmr_lambda,
                          mmr_candidates=args.mmr_candidates)  # fmt: skip
        except ValueError as exc:  # a query over the term limit, a lambda out of range ...
            raise VisdocError(str(exc)) from None
    if args.json:
        rows = [{"rank": i + 1, "score": h.score, "id": h.id} | h.payload for i, h in enumerate(hits)]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(f"{'rank':>4}  {'score':>8}  {'page':>6}  {'file':<28}  text")
    for rank, hit in enumerate(hits, 1):
        page = points.summary(hit.payload)
        snippet = " ".join(str(hit.payload.get(points.TEXT, "")).split())[:60]
        print(f"{rank:4d}  {hit.score:8.4f}  {page[points.PAGE_LABEL]:>6}  {page[points.FILE_NAME]:<28}  {snippet}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from collections import Counter

    with _open_store(args) as store:
        spec = store.spec
        pages = Counter()
        sources: dict[str, tuple[str, int]] = {}
        for record in store.iter_records():
            page = points.summary(record.payload)
            doc = page[points.DOCUMENT_ID]
            pages[doc] += 1
            sources[doc] = (page[points.SOURCE], page[points.TOTAL_PAGES])
        print(f"collection {args.collection!r} ({'server ' + args.url if args.url else 'embedded'}): "
              f"{store.count()} points, {len(pages)} documents")  # fmt: skip
        print(f"model {spec.model or '?'}, task {spec.task}, profile {spec.profile}, dense dim {spec.dim}, multivector "
              f"{spec.multivector_datatype}, quantization {spec.quantization}, token pooling "
              f"x{spec.token_pool_factor}, {spec.pool_size} centroids, row/column means {spec.rowcol}")  # fmt: skip
        lexical = "yes" if spec.lexical else f"no (add them: visdoc reindex-text --collection {args.collection})"
        print(f"lexical (BM25) vectors: {lexical}")
        for doc, n in sorted(pages.items(), key=lambda item: sources[item[0]][0]):
            source, total = sources[doc]
            print(f"  {doc}  {n}/{total} pages  {source}")
    return 0


def run_reindex_text(args: argparse.Namespace) -> int:
    """Give every point a lexical vector of its stored text: no model, no re-embedding."""
    with _open_store(args) as store:
        had = store.spec.lexical
        total = store.count()
        written = store.add_lexical(show_progress=True)
    verb = "recomputed" if had else "added"
    print(f"collection {args.collection!r}: lexical vectors {verb} for {written} of {total} points "
          f"({total - written} have no text)")  # fmt: skip
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        removed = store.delete_document(args.document)
    print(f"deleted {removed} points of document {args.document}")
    return 0 if removed else 1


def _parse_filters(items: list[str]):  # noqa: ANN202
    from ..store import PageFilter

    documents: list[str] = []
    sources: list[str] = []
    page_from = page_to = None
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise VisdocError(f"bad filter {item!r}: use KEY=VALUE")
        if key == "document":
            documents.append(value)
        elif key == "source":
            sources.append(os.path.abspath(value))
        elif key == "page":
            low, dots, high = value.partition("..")
            try:
                page_from = int(low) if low else None
                page_to = int(high) if high else (None if dots else page_from)  # "N" means just page N
            except ValueError:
                raise VisdocError(f"bad page filter {value!r}: use N or FROM..TO") from None
        else:
            raise VisdocError(f"unknown filter key {key!r}: use document, source or page")
    return PageFilter(document_ids=tuple(documents), sources=tuple(sources), page_from=page_from, page_to=page_to)
