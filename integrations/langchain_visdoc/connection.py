"""Where a LangChain ``VisdocVectorStore`` keeps its collection, also said in langchain-qdrant's words.

Code written for ``langchain_qdrant.QdrantVectorStore.from_texts`` passes ``location=":memory:"``,
``url``, ``path``, ``collection_name``, ``host``/``port``... ; these arguments mean the same here.
The langchain-qdrant arguments visdoc does not implement are refused, naming them (unless they
are given the value that is what visdoc does anyway, e.g. ``force_recreate=False``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_COLLECTION", "MEMORY", "REFUSED", "connection_options"]

DEFAULT_COLLECTION = "langchain"
MEMORY = ":memory:"
# qdrant-client arguments visdoc's server store does not take itself: with any of them the client is built here
CLIENT_ARGUMENTS = ("location", "host", "port", "grpc_port", "https", "prefix")
_SPARSE = (
    "visdoc computes each page's and chunk's lexical (BM25) vector itself, from its text, and stores it in its own "
    "sparse vector (IDF in the engine); choose retrieval_mode='sparse' or 'hybrid' to search with it"
)
_LAYOUT = "visdoc lays out its collections itself (a dense vector, cosine, and a multivector, MaxSim)"
_PAYLOAD = "visdoc's payload layout is fixed (documents come back with their text, metadata and id)"
_CHECKED = "visdoc always checks an existing collection against the model (size, model, task)"
REFUSED = {
    "force_recreate": "an existing collection is reused; delete its documents or choose another collection",
    "sparse_embedding": _SPARSE,
    "sparse_vector_name": _SPARSE,
    "sparse_vector_params": _SPARSE,
    "vector_name": _LAYOUT,
    "vector_params": _LAYOUT,
    "distance": _LAYOUT,
    "collection_create_options": _LAYOUT,
    "content_payload_key": _PAYLOAD,
    "metadata_payload_key": _PAYLOAD,
    "validate_embeddings": _CHECKED,
    "validate_collection_config": _CHECKED,
}
AS_VISDOC_DOES = {"force_recreate": False, "validate_embeddings": True, "validate_collection_config": True}


def connection_options(options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``(options for visdoc.store.open_store, the QdrantClient built here or None)``.

    ``collection_name`` is ``collection``; ``path`` is ``data_dir`` (visdoc's embedded engine,
    qdrant-edge: the folder is in qdrant-edge's format, not qdrant-client's local one);
    ``location=":memory:"`` is an in-memory qdrant-client collection that lives as long as the
    store; another ``location`` is a server URL; ``host``, ``port``, ``grpc_port``, ``https`` and
    ``prefix`` build the ``QdrantClient`` langchain-qdrant would build; ``url``, ``api_key``,
    ``prefer_grpc`` and ``timeout`` reach visdoc's server store. A server (or client) wins over
    ``data_dir``, so a default folder can stay in place next to an optional ``url``.
    """
    given = {k: v for k, v in options.items() if v is not None}
    options = {k: v for k, v in given.items() if not (k in AS_VISDOC_DOES and AS_VISDOC_DOES[k] == v)}
    for name in options.keys() & REFUSED.keys():
        raise TypeError(f"VisdocVectorStore does not implement langchain-qdrant's {name}=: {REFUSED[name]}")
    places = [name for name in ("location", "url", "host", "path", "client") if name in options]
    if len(places) > 1:
        raise ValueError(f"name one place for the collection, not {places}")
    for visdoc_name, qdrant_name in (("collection", "collection_name"), ("data_dir", "path")):
        if visdoc_name in options and qdrant_name in options:
            raise TypeError(f"give {visdoc_name}= or {qdrant_name}=, not both")
        if qdrant_name in options:
            options[visdoc_name] = options.pop(qdrant_name)
    options.setdefault("collection", DEFAULT_COLLECTION)
    if options.get("location") not in (None, MEMORY):
        options["url"] = options.pop("location")  # as qdrant-client reads it
    client = None
    if options.keys() & set(CLIENT_ARGUMENTS):
        from qdrant_client import QdrantClient

        names = (*CLIENT_ARGUMENTS, "url", "api_key", "prefer_grpc", "timeout")
        client = QdrantClient(**{name: options.pop(name) for name in names if name in options})
        options["client"] = client
    if "url" in options or "client" in options:
        options.pop("data_dir", None)  # a server was named: the local folder is not used
    return options, client
