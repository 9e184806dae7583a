"""The ``visdoc`` command line's arguments: one sub-command each, run by :mod:`.commands`."""

from __future__ import annotations

import argparse
import os

from ..checkpoint import DEFAULT_MODEL, MODEL_ENV
from ..encoder.speed import LONG_INGEST_PAGES
from ..store.base import SEARCH_MODES
from ..store.schema import DEFAULT_LEXICAL_PREFETCH, DEFAULT_POOLED_PREFETCH, DEFAULT_PREFETCH, Fusion
from .commands import (
    API_KEY_ENV,
    EMBEDDING_URL_ENV,
    SERVER_KEY_ENV,
    URL_ENV,
    run_delete,
    run_eval,
    run_info,
    run_ingest,
    run_reindex_text,
    run_search,
    run_serve,
    run_similarity,
    run_ui,
)
from .transfer import add_transfer_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visdoc", description="jina-embeddings-v4 for visually rich documents")
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")

    sim = subcommands.add_parser("similarity", help="score a text query against page images")
    sim.add_argument("query", help="the text query")
    sim.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    _model_options(sim)
    sim.add_argument("--task", default="retrieval", help="task adapter (default: retrieval)")
    sim.add_argument("--dim", type=int, default=None, help="Matryoshka size of the dense vector")
    sim.add_argument("--max-pixels", type=int, default=None, help="lower pixel budget per image")
    sim.set_defaults(run=run_similarity)

    ingest = subcommands.add_parser("ingest", help="embed PDFs, images and text files into a collection")
    ingest.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    _store_options(ingest)
    _model_options(ingest, speed=f"on CUDA from {LONG_INGEST_PAGES} pages found, and on Ray GPU actors")
    ingest.add_argument("--dim", type=int, default=None, help="dense Matryoshka size for a new collection")
    ingest.add_argument("--task", default="retrieval", help="task adapter for a new collection")
    ingest.add_argument("--datatype", default="float16", choices=["float32", "float16"],
                        help="multivector storage type for a new collection (default float16)")  # fmt: skip
    ingest.add_argument("--quantization", default="none", choices=["none", "scalar", "binary"],
                        help="multivector quantization for a new collection, rescored on search")  # fmt: skip
    ingest.add_argument("--profile", default="compact", choices=["fast", "compact", "archive"],
                        help="memory placement of a new collection: compact (default: the multivector served "
                             "from disk, ~25 KB of RAM per page), fast (every vector in RAM, ~225 KB per page), "
                             "archive (every vector from disk); see docs/store.md")  # fmt: skip
    ingest.add_argument("--on-disk", action="store_true",
                        help="serve every vector from disk (memory-mapped): the archive profile")  # fmt: skip
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
    ingest.set_defaults(run=run_ingest)

    find = subcommands.add_parser("search", help="search a collection with a text query (or --image)")
    find.add_argument("query", help="the query text, or an image path with --image")
    find.add_argument("--image", action="store_true", help="QUERY is an image file")
    find.add_argument("-k", type=int, default=10, help="results to return (default 10)")
    find.add_argument("--mode", default="rerank", choices=list(SEARCH_MODES),
                      help="rerank (default): dense prefetch + MaxSim; dense; multivector: exact MaxSim; "
                           "lexical: BM25 on the page text; hybrid: lexical fused with rerank; mmr: rerank, "
                           "diversified")  # fmt: skip
    find.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH,
                      help=f"dense candidates reranked (default {DEFAULT_PREFETCH})")  # fmt: skip
    find.add_argument("--pooled-prefetch", type=int, default=DEFAULT_POOLED_PREFETCH,
                      help="candidates from the pooled token centroids, reranked too (default: 64, "
                           "or 128 in a collection of more than 20,000 pages)")  # fmt: skip
    fused = find.add_argument_group("hybrid and mmr")
    fused.add_argument("--lexical-prefetch", type=int, default=DEFAULT_LEXICAL_PREFETCH,
                       help=f"hybrid: BM25 candidates fused (default {DEFAULT_LEXICAL_PREFETCH})")  # fmt: skip
    fused.add_argument("--fusion", default=Fusion.method, choices=["rrf", "dbsf"],
                       help="hybrid: reciprocal rank fusion or distribution-based score fusion "
                            f"(default {Fusion.method})")  # fmt: skip
    fused.add_argument("--fusion-k", type=int, default=Fusion.k, help=f"hybrid: RRF's k (default {Fusion.k})")
    fused.add_argument("--lexical-weight", type=float, default=Fusion.weights[0],
                       help="hybrid: RRF weight of the text side against 1 for the vectors (default 1)")  # fmt: skip
    fused.add_argument("--mmr-lambda", type=float, default=0.5,
                       help="mmr: relevance weight, 1 relevance only, 0 diversity only (default 0.5)")  # fmt: skip
    fused.add_argument("--mmr-candidates", type=int, default=None,
                       help="mmr: best reranked candidates to diversify (default: --prefetch)")  # fmt: skip
    find.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                      help="document=ID, source=PATH or page=FROM..TO (0-based, inclusive); repeatable")  # fmt: skip
    find.add_argument("--json", action="store_true", help="print results as JSON")
    _store_options(find)
    _model_options(find, default=None)
    find.set_defaults(run=run_search)

    server = subcommands.add_parser("serve", help="serve the model over HTTP (Jina/OpenAI embeddings API)")
    server.add_argument("--model", default=os.environ.get(MODEL_ENV, DEFAULT_MODEL), help="hub id or folder")
    _listen_options(server, "the embedding API then answers anyone who can reach the port (the search page "
                            "still answers only loopback clients)")  # fmt: skip
    server.add_argument("--device", default=None)
    server.add_argument("--dtype", default=None)
    _speed_options(server, "on CUDA")
    server.add_argument("--max-items", type=int, default=512, help="inputs per request")
    server.add_argument("--max-body-mb", type=int, default=64, help="request body size")
    server.add_argument("--max-text-chars", type=int, default=100_000, help="characters per text")
    server.add_argument("--max-image-pixels", type=int, default=50_000_000, help="pixels per image")
    server.add_argument("--max-queue", type=int, default=4096, help="waiting inputs before answering 429")
    server.add_argument("--allow-image-urls", action="store_true", help="fetch images given as http(s) URLs")
    server.add_argument("--no-ui", action="store_true", help="do not serve the search page at /ui")
    _ui_options(server)
    server.set_defaults(run=run_serve)

    page = subcommands.add_parser("ui", help="serve the visual search page alone (no embedding endpoints)")
    _model_options(page)
    _listen_options(page, "the page's API, images and files still answer only loopback clients: other "
                          "machines get 403")  # fmt: skip
    _ui_options(page)
    page.set_defaults(run=run_ui)

    evaluate = subcommands.add_parser("eval", help="evaluate every search mode and compression option on a dataset")
    evaluate.add_argument("dataset", help="folder in BEIR layout (texts) or the page layout (images, PDF pages)")
    evaluate.add_argument("--split", default="test", help="qrels/<split>.tsv (default test)")
    evaluate.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--collection", default=None,
                          help="also score this collection (made from the dataset's files), every mode")  # fmt: skip
    where = evaluate.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder of --collection")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help="Qdrant server of --collection")
    evaluate.add_argument("--api-key", default=os.environ.get(API_KEY_ENV))
    tuned = evaluate.add_argument_group("hybrid and mmr rows")
    tuned.add_argument("--fusion", default=Fusion.method, choices=["rrf", "dbsf"],
                       help=f"hybrid: rank fusion (rrf) or score fusion (dbsf) (default {Fusion.method})")  # fmt: skip
    tuned.add_argument("--fusion-k", type=int, default=Fusion.k, help=f"hybrid: RRF's k (default {Fusion.k})")
    tuned.add_argument("--lexical-weight", type=float, default=Fusion.weights[0],
                       help="hybrid: RRF weight of the text side against 1 for the vectors (default 1)")  # fmt: skip
    tuned.add_argument("--mmr-lambda", type=float, default=0.5,
                       help="mmr: relevance weight, 1 relevance only, 0 diversity only (default 0.5)")  # fmt: skip
    _model_options(evaluate)
    evaluate.set_defaults(run=run_eval)

    reindex = subcommands.add_parser(
        "reindex-text", help="add lexical (BM25) vectors of the stored page text to a collection (no re-embedding)"
    )
    _store_options(reindex)
    reindex.set_defaults(run=run_reindex_text)

    info = subcommands.add_parser("info", help="describe a collection and its documents")
    _store_options(info)
    info.set_defaults(run=run_info)

    delete = subcommands.add_parser("delete", help="delete a document's pages from a collection")
    delete.add_argument("--document", required=True, help="document id (see visdoc info)")
    _store_options(delete)
    delete.set_defaults(run=run_delete)
    add_transfer_commands(subcommands, API_KEY_ENV)
    return parser


def _listen_options(parser: argparse.ArgumentParser, without_key: str) -> None:
    """Where a server listens and its key; ``without_key`` says what --allow-no-key exposes."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--api-key", default=os.environ.get(SERVER_KEY_ENV), help=f"bearer token (default: ${SERVER_KEY_ENV})"
    )
    parser.add_argument("--allow-no-key", action="store_true",
                        help=f"start without an API key on a non-loopback --host: {without_key}")  # fmt: skip


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", default="visdoc", help="collection name (default: visdoc)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help=f"Qdrant server URL (default: ${URL_ENV})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"default: ${API_KEY_ENV}")


def _ui_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search page (/ui)")
    group.add_argument("--collection", default="visdoc", help="collection shown first (default: visdoc)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="embedded store folder (default: ./visdoc_data)")
    where.add_argument("--url", default=os.environ.get(URL_ENV), help=f"Qdrant server URL (default: ${URL_ENV})")
    group.add_argument("--qdrant-api-key", default=os.environ.get(API_KEY_ENV), help=f"default: ${API_KEY_ENV}")
    group.add_argument("--max-upload-mb", type=int, default=100, help="largest file the page accepts (default 100)")


def _model_options(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL, speed: str = "off") -> None:
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
    _speed_options(parser, speed)


def _speed_options(parser: argparse.ArgumentParser, default: str = "off") -> None:
    """Merged adapters and compilation; ``default`` says when they are on unless asked otherwise."""
    parser.add_argument("--merge-adapters", action=argparse.BooleanOptionalAction, default=None,
                        help="fold the task adapter into the weights: faster; bf16 cosine moves by ~1e-4 "
                             f"(default: {default})")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model's blocks: much faster on GPU, after a ~20 s warm-up once "
                             f"per process (default: {default})")  # fmt: skip
    exact = "unmerged and uncompiled (the reference arithmetic): --no-merge-adapters --no-compile"
    parser.add_argument("--exact", action="store_true", help=exact)
