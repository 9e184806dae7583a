"""The ``visdoc`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .checkpoint import DEFAULT_MODEL, MODEL_ENV
from .errors import VisdocError

URL_ENV = "QDRANT_URL"
API_KEY_ENV = "QDRANT_API_KEY"
EMBEDDING_URL_ENV = "VISDOC_EMBEDDING_URL"
SERVER_KEY_ENV = "VISDOC_API_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except VisdocError as exc:
        print(f"visdoc: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visdoc", description="jina-embeddings-v4 for visually rich documents")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sim = commands.add_parser("similarity", help="score a text query against page images")
    sim.add_argument("query", help="the text query")
    sim.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    _model_options(sim)
    sim.add_argument("--task", default="retrieval", help="task adapter (default: retrieval)")
    sim.add_argument("--dim", type=int, default=None, help="Matryoshka size of the dense vector")
    sim.add_argument("--max-pixels", type=int, default=None, help="lower pixel budget per image")
    sim.set_defaults(run=_similarity)

    ingest = commands.add_parser("ingest", help="embed PDFs, images and text files into a collection")
    ingest.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    _store_options(ingest)
    _model_options(ingest)
    ingest.add_argument("--dim", type=int, default=None, help="dense Matryoshka size for a new collection")
    ingest.add_argument("--task", default="retrieval", help="task adapter for a new collection")
    ingest.add_argument("--datatype", default="float16", choices=["float32", "float16"],
                        help="multivector storage type for a new collection (default float16)")  # fmt: skip
    ingest.add_argument("--quantization", default="none", choices=["none", "scalar", "binary"],
                        help="multivector quantization for a new collection, rescored on search")  # fmt: skip
    ingest.add_argument("--on-disk", action="store_true", help="keep vectors on disk (memory-mapped)")
    ingest.add_argument("--pool-size", type=int, default=16,
                        help="token centroids per page, a fast first stage (new collections; 0: none)")  # fmt: skip
    ingest.add_argument("--token-pool-factor", type=int, default=1,
                        help="store ~1/N of the content tokens per page (token pooling)")  # fmt: skip
    ingest.add_argument("--rowcol", action="store_true", help="add row/column mean prefetch vectors for page images")
    ingest.add_argument("--oversampling", type=float, default=8.0, help="quantized search: candidates rescored x N")
    ingest.add_argument("--shard-number", type=int, default=None, help="server only: shards of a new collection")
    ingest.add_argument("--replication-factor", type=int, default=None, help="server only: replicas per shard")
    ingest.add_argument("--write-consistency-factor", type=int, default=None, help="server only")
    ingest.add_argument("--batch-size", type=int, default=None,
                        help="pages embedded and stored per step (default: 8 on CPU, 128 on GPU)")  # fmt: skip
    ingest.add_argument("--workers", type=int, default=None, help="PDF render processes (default: cores - 1)")
    ingest.add_argument("--max-pixels", type=int, default=None, help="lower pixel budget per page")
    cluster = ingest.add_argument_group("distributed ingestion on Ray (extra visdoc[ray]; see docs/scaling.md)")
    cluster.add_argument("--ray", action="store_true", help="read, render and embed on a Ray cluster")
    cluster.add_argument("--address", default=None,
                         help="Ray cluster to join (default: $RAY_ADDRESS or a new local instance)")  # fmt: skip
    cluster.add_argument("--actors", type=int, default=2, help="model replicas embedding in parallel (default 2)")
    cluster.add_argument("--gpus-per-actor", type=float, default=None,
                         help="GPUs per replica (default: 1 if the cluster has GPUs, else 0: on CPU)")  # fmt: skip
    cluster.add_argument("--cpus-per-actor", type=float, default=None,
                         help="cores per replica (default: 1 on GPU; on CPU all cores but one, shared)")  # fmt: skip
    ingest.set_defaults(run=_ingest)

    find = commands.add_parser("search", help="search a collection with a text query (or --image)")
    find.add_argument("query", help="the query text, or an image path with --image")
    find.add_argument("--image", action="store_true", help="QUERY is an image file")
    find.add_argument("-k", type=int, default=10, help="results to return (default 10)")
    find.add_argument("--mode", default="rerank", choices=["rerank", "dense", "multivector"],
                      help="rerank (default): dense prefetch + MaxSim; dense; multivector: exact MaxSim")  # fmt: skip
    find.add_argument("--prefetch", type=int, default=100, help="dense candidates reranked (default 100)")
    find.add_argument("--pooled-prefetch", type=int, default=64,
                      help="candidates from the pooled token centroids, reranked too (default 64)")  # fmt: skip
    find.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                      help="document=ID, source=PATH or page=FROM..TO (0-based, inclusive); repeatable")  # fmt: skip
    find.add_argument("--json", action="store_true", help="print results as JSON")
    _store_options(find)
    _model_options(find, default=None)
    find.set_defaults(run=_search)

    server = commands.add_parser("serve", help="serve the model over HTTP (Jina/OpenAI embeddings API)")
    server.add_argument("--model", default=os.environ.get(MODEL_ENV, DEFAULT_MODEL), help="hub id or folder")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8080)
    server.add_argument(
        "--api-key", default=os.environ.get(SERVER_KEY_ENV), help=f"bearer token (default: ${SERVER_KEY_ENV})"
    )
    server.add_argument("--device", default=None)
    server.add_argument("--dtype", default=None)
    _speed_options(server)
    server.add_argument("--max-items", type=int, default=512, help="inputs per request")
    server.add_argument("--max-body-mb", type=int, default=64, help="request body size")
    server.add_argument("--max-text-chars", type=int, default=100_000, help="characters per text")
    server.add_argument("--max-image-pixels", type=int, default=50_000_000, help="pixels per image")
    server.add_argument("--max-queue", type=int, default=4096, help="waiting inputs before answering 429")
    server.add_argument("--allow-image-urls", action="store_true", help="fetch images given as http(s) URLs")
    server.add_argument("--no-ui", action="store_true", help="do not serve the search page at /ui")
    _ui_options(server)
    server.set_defaults(run=_serve)

    page = commands.add_parser("ui", help="serve the visual search page alone (no embedding endpoints)")
    _model_options(page)
    page.add_argument("--host", default="127.0.0.1")
    page.add_argument("--port", type=int, default=8080)
    page.add_argument(
        "--api-key", default=os.environ.get(SERVER_KEY_ENV), help=f"bearer token (default: ${SERVER_KEY_ENV})"
    )
    _ui_options(page)
    page.set_defaults(run=_ui)

    evaluate = commands.add_parser("eval", help="evaluate retrieval modes and compression options on a dataset")
    evaluate.add_argument("dataset", help="folder in BEIR layout (texts) or the page layout (images, PDF pages)")
    evaluate.add_argument("--split", default="test", help="qrels/<split>.tsv (default test)")
    evaluate.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--collection", default=None,
                          help="also score this collection (ingested from the dataset's files)")  # fmt: skip
    where = evaluate.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder of --collection")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help="Qdrant server of --collection")
    evaluate.add_argument("--api-key", default=os.environ.get(API_KEY_ENV))
    _model_options(evaluate)
    evaluate.set_defaults(run=_eval)

    info = commands.add_parser("info", help="describe a collection and its documents")
    _store_options(info)
    info.set_defaults(run=_info)

    delete = commands.add_parser("delete", help="delete a document's pages from a collection")
    delete.add_argument("--document", required=True, help="document id (see visdoc info)")
    _store_options(delete)
    delete.set_defaults(run=_delete)
    return parser


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", default="visdoc", help="collection name (default: visdoc)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help=f"Qdrant server URL (default: ${URL_ENV})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"default: ${API_KEY_ENV}")


def _open_store(args: argparse.Namespace, spec=None, **server_options):  # noqa: ANN001, ANN202
    from .store import open_store

    options = {k: v for k, v in server_options.items() if v is not None}
    if args.url:
        return open_store(args.collection, spec, url=args.url, api_key=args.api_key, **options)
    return open_store(args.collection, spec, data_dir=args.data_dir)


def _ui_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search page (/ui)")
    group.add_argument("--collection", default="visdoc", help="collection shown first (default: visdoc)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help=f"Qdrant server URL (default: ${URL_ENV})")
    group.add_argument("--qdrant-api-key", default=os.environ.get(API_KEY_ENV), help=f"default: ${API_KEY_ENV}")
    group.add_argument("--max-upload-mb", type=int, default=100, help="largest file the page accepts (default 100)")


def _ui_settings(args: argparse.Namespace):  # noqa: ANN202
    from .server import UISettings

    return UISettings(data_dir=args.data_dir, url=args.url, qdrant_api_key=args.qdrant_api_key,
                      collection=args.collection, max_upload_bytes=args.max_upload_mb << 20)  # fmt: skip


def _ui_auth(args: argparse.Namespace) -> str:
    if args.api_key:
        return "bearer token required"
    return "no authentication: answers only requests to localhost; set --api-key for remote use"


def _ui(args: argparse.Namespace) -> int:
    import dataclasses

    from .server import serve

    model = _load_model(args, args.model)
    print(f"search page on http://{args.host}:{args.port}/ui ({_ui_auth(args)})", file=sys.stderr, flush=True)
    settings = dataclasses.replace(_ui_settings(args), preload=True)  # the page's own server: open the store now
    serve(model, host=args.host, port=args.port, api_key=args.api_key, ui=settings, ui_only=True)
    return 0


def _model_options(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL) -> None:
    fallback = "the collection's model" if default is None else default
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV, default),
        help=f"hub id or checkpoint folder (default: ${MODEL_ENV} or {fallback})",
    )
    parser.add_argument(
        "--embedding-url",
        default=os.environ.get(EMBEDDING_URL_ENV),
        help=f"use a visdoc embedding server instead of a local model (default: ${EMBEDDING_URL_ENV})",
    )
    parser.add_argument(
        "--embedding-api-key", default=os.environ.get(SERVER_KEY_ENV), help=f"default: ${SERVER_KEY_ENV}"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 on GPU, fp32 on CPU)")
    _speed_options(parser)


def _speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merge-adapters", action="store_true",
                        help="fold the task adapter into the weights: faster for one task per process (switching "
                             "task rebuilds the weights); bf16 cosine moves by ~1e-4")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model's blocks: much faster on GPU, after a ~20 s warm-up")  # fmt: skip


def _speed_note(args: argparse.Namespace) -> str:
    chosen = [text for flag, text in ((args.merge_adapters, "merged adapters"), (args.compile, "compiled")) if flag]
    return f" ({', '.join(chosen)})" if chosen else ""


def _loading(args: argparse.Namespace) -> dict[str, Any]:
    """``JinaV4.from_pretrained`` keywords chosen on the command line."""
    return {"device": args.device, "dtype": args.dtype, "compile": args.compile, "merge_adapters": args.merge_adapters}


def _similarity(args: argparse.Namespace) -> int:
    from .scoring import cosine, maxsim

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


def _load_model(args: argparse.Namespace, name: str):  # noqa: ANN202 - JinaV4 or RemoteJinaV4
    from .model import JinaV4

    if args.embedding_url:
        if _speed_note(args):
            print("note: --merge-adapters/--compile apply to a local model, not to --embedding-url", file=sys.stderr)
        return JinaV4.remote(args.embedding_url, api_key=args.embedding_api_key)
    return _local_model(args, name)


def _local_model(args: argparse.Namespace, name: str):  # noqa: ANN202 - JinaV4
    from .model import JinaV4

    print(f"loading {name}{_speed_note(args)} ...", file=sys.stderr)
    return JinaV4.from_pretrained(name, **_loading(args))


def _serve(args: argparse.Namespace) -> int:
    from .server import Limits, serve

    limits = Limits(
        max_body_bytes=args.max_body_mb << 20,
        max_items=args.max_items,
        max_text_chars=args.max_text_chars,
        max_image_pixels=args.max_image_pixels,
        max_queue_items=args.max_queue,
        allow_image_urls=args.allow_image_urls,
    )
    model = _local_model(args, args.model)
    auth = "bearer token required" if args.api_key else "no authentication"
    print(f"serving {model.name} on http://{args.host}:{args.port} ({auth})", file=sys.stderr, flush=True)
    ui = None if args.no_ui else _ui_settings(args)
    if ui is not None:
        print(f"search page at /ui ({_ui_auth(args)})", file=sys.stderr, flush=True)
    serve(model, host=args.host, port=args.port, api_key=args.api_key, limits=limits, ui=ui)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from .evaluation import format_table, load_dataset, run_evaluation

    dataset = load_dataset(args.dataset, args.split)
    model = _load_model(args, args.model)
    print(
        f"{dataset.name}: {len(dataset.corpus)} {dataset.kind} items, {len(dataset.queries)} queries", file=sys.stderr
    )
    results = run_evaluation(model, dataset, k=args.k)
    if args.json:
        rows = [{"mode": r.mode, **r.metrics, "bytes_per_item": r.bytes_per_item, "p50_ms": r.p50_ms} for r in results]
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(results))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from .ingest import Ingestor

    if args.ray:
        return _ingest_on_ray(args)
    model = _load_model(args, args.model)
    spec = _collection_spec(args, model.dims, model.name)
    options = {"workers": args.workers, "batch_size": args.batch_size, "max_pixels": args.max_pixels}
    return _store_ingestion(args, spec, lambda store: Ingestor(model, store, **options))


def _ingest_on_ray(args: argparse.Namespace) -> int:
    from .checkpoint import read_config
    from .distributed import RayIngestor

    if args.embedding_url:
        raise VisdocError(f"--ray embeds with model replicas in Ray actors: unset --embedding-url/${EMBEDDING_URL_ENV}")
    options = {"actors": args.actors, "gpus_per_actor": args.gpus_per_actor, "cpus_per_actor": args.cpus_per_actor,
               "batch_size": args.batch_size, "max_pixels": args.max_pixels, "dtype": args.dtype,
               "compile": args.compile, "merge_adapters": args.merge_adapters, "address": args.address}  # fmt: skip
    checkpoint = read_config(args.model)  # config and tokenizer only: the actors fetch and load the weights
    spec = _collection_spec(args, checkpoint.matryoshka_dims, str(args.model))
    return _store_ingestion(args, spec, lambda store: RayIngestor(args.model, store, checkpoint=checkpoint, **options))


def _store_ingestion(args: argparse.Namespace, spec, ingestor: Callable[[Any], Any]) -> int:  # noqa: ANN001
    """Open the collection, run ``ingestor(store).ingest`` over the paths, and report."""
    with _open_store(args, spec, **_server_options(args)) as store:
        report = ingestor(store).ingest(args.paths, show_progress=True)
        print(report.summary())
        print(f"collection {args.collection!r}: {store.count()} points")
    return 1 if report.problems else 0


def _server_options(args: argparse.Namespace) -> dict[str, int | None]:
    return {"shard_number": args.shard_number, "replication_factor": args.replication_factor,
            "write_consistency_factor": args.write_consistency_factor}  # fmt: skip


def _collection_spec(args: argparse.Namespace, dims: Sequence[int], model_name: str):  # noqa: ANN202
    """The settings of a collection that ``visdoc ingest`` creates."""
    from .store import CollectionSpec

    return CollectionSpec(
        dim=args.dim or dims[-1],
        model=model_name,
        task=args.task,
        multivector_datatype=args.datatype,
        quantization=args.quantization,
        on_disk=args.on_disk,
        pool_size=args.pool_size,
        token_pool_factor=args.token_pool_factor,
        rowcol=args.rowcol,
        oversampling=args.oversampling,
    )


def _search(args: argparse.Namespace) -> int:
    import json

    from .search import search

    where = _parse_filters(args.filter)
    with _open_store(args) as store:
        model = _load_model(args, args.model or store.spec.model or DEFAULT_MODEL)
        hits = search(model, store, args.query, k=args.k, mode=args.mode, prefetch=args.prefetch,
                      pooled_prefetch=args.pooled_prefetch, where=where, image=args.image)  # fmt: skip
    if args.json:
        rows = [{"rank": i + 1, "score": h.score, "id": h.id} | h.payload for i, h in enumerate(hits)]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(f"{'rank':>4}  {'score':>8}  {'page':>6}  {'file':<28}  text")
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        snippet = " ".join(str(p.get("text", "")).split())[:60]
        print(f"{rank:4d}  {hit.score:8.4f}  {p.get('page_label', ''):>6}  {p.get('file_name', ''):<28}  {snippet}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from collections import Counter

    with _open_store(args) as store:
        spec = store.spec
        pages = Counter()
        sources: dict[str, tuple[str, int]] = {}
        for record in store.iter_records():
            doc = record.payload.get("document_id", "")
            pages[doc] += 1
            sources[doc] = (record.payload.get("source", ""), record.payload.get("total_pages", 0))
        print(f"collection {args.collection!r} ({'server ' + args.url if args.url else 'embedded'}): "
              f"{store.count()} points, {len(pages)} documents")  # fmt: skip
        print(f"model {spec.model or '?'}, task {spec.task}, dense dim {spec.dim}, multivector "
              f"{spec.multivector_datatype}, quantization {spec.quantization}, token pooling "
              f"x{spec.token_pool_factor}, {spec.pool_size} centroids, row/column means {spec.rowcol}")  # fmt: skip
        for doc, n in sorted(pages.items(), key=lambda item: sources[item[0]][0]):
            source, total = sources[doc]
            print(f"  {doc}  {n}/{total} pages  {source}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        removed = store.delete_document(args.document)
    print(f"deleted {removed} points of document {args.document}")
    return 0 if removed else 1


def _parse_filters(items: list[str]):  # noqa: ANN202
    from .store import PageFilter

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


if __name__ == "__main__":
    raise SystemExit(main())
