"""Server backend: a Qdrant server or cluster through qdrant-client (or its local mode in tests)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from ..points import INDEXED_FIELDS, PagePoint
from .base import CollectionNotFoundError, SearchPlan, SparseTerms, Store, StoreError, stored_payload, stored_vectors
from .schema import DENSE, LEXICAL, MULTI, CollectionSpec, Hit, PageFilter, Record, StoredPoint, vector_layout
from .server_queries import point_vectors, query_arguments, server_filter, sparse, sparse_params, vector_params

MAX_REQUEST_BYTES = 16 << 20  # the server refuses requests over 32 MB by default
BYTES_PER_FLOAT = {True: 4, False: 24}  # gRPC sends raw floats; REST JSON measured ~21 bytes per float32


def grpc_port_for(url: str | None) -> int:
    """Qdrant serves gRPC one port above REST (6333/6334); a URL naming another REST port (a
    remapped container, e.g. the compose cluster's 7333) gets its neighbour, not 6334."""
    from urllib.parse import urlparse

    port = urlparse(url).port if url else None
    return port + 1 if port else 6334


class ServerStore(Store):
    """A collection on a Qdrant server or cluster.

    ``client`` may be any ``QdrantClient`` (its local mode included); otherwise one is made from
    ``url``/``api_key``, preferring gRPC, which is about 5x smaller than REST for multivectors.
    Cluster options (``shard_number``, ``replication_factor``, ``write_consistency_factor``)
    apply when the collection is created. Uploads are split by size and wait for acknowledgement.
    """

    def __init__(
        self,
        name: str,
        spec: CollectionSpec | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        prefer_grpc: bool = True,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        timeout: int = 120,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self._m = models
        self.name = name
        self._own_client = client is None
        self.client = client or QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout,
                                             grpc_port=grpc_port_for(url))  # fmt: skip
        self._grpc = bool(self.client.init_options.get("prefer_grpc"))
        self.max_request_bytes = max_request_bytes
        if self.client.collection_exists(name):
            self.spec = self._read_spec()
            if spec is not None and spec.dim != self.spec.dim:
                raise StoreError(f"collection {name!r} stores dim {self.spec.dim}, not {spec.dim}")
            self._check_cluster_options(shard_number=shard_number, replication_factor=replication_factor,
                                        write_consistency_factor=write_consistency_factor)  # fmt: skip
        elif spec is None:
            raise CollectionNotFoundError(f"no collection {name!r} on the Qdrant server (ingest something first)")
        else:
            self.spec = spec
            self._create(spec, shard_number, replication_factor, write_consistency_factor)

    def _check_cluster_options(self, **asked: int | None) -> None:
        """Refuse cluster options that an existing collection does not have (they apply at creation;
        qdrant-client's local mode, which has no shards, reports none)."""
        params = self.client.get_collection(self.name).config.params
        differ = {k: v for k, v in asked.items() if v is not None and getattr(params, k, None) not in (None, v)}
        if differ:
            has = ", ".join(f"{k}={getattr(params, k, None)}" for k in differ)
            raise StoreError(f"collection {self.name!r} exists with {has}: {', '.join(differ)}: set only when a "
                             "collection is created (change them with Qdrant's cluster API)")  # fmt: skip

    def _create(self, spec: CollectionSpec, shards: int | None, replicas: int | None, consistency: int | None) -> None:
        m, layout = self._m, vector_layout(spec)
        self.client.create_collection(
            self.name,
            vectors_config={name: vector_params(m, v) for name, v in layout.items() if not v.sparse},
            sparse_vectors_config={name: sparse_params(m) for name, v in layout.items() if v.sparse} or None,
            shard_number=shards,
            replication_factor=replicas,
            write_consistency_factor=consistency,
            metadata={"visdoc": json.dumps(spec.to_json())},
        )
        schema = {"keyword": m.PayloadSchemaType.KEYWORD, "integer": m.PayloadSchemaType.INTEGER}
        with warnings.catch_warnings():  # local mode says indexes have no effect there
            warnings.simplefilter("ignore")
            for field, kind in INDEXED_FIELDS.items():
                self.client.create_payload_index(self.name, field, field_schema=schema[kind], wait=True)

    def _read_spec(self) -> CollectionSpec:
        config = self.client.get_collection(self.name).config
        stored = (getattr(config, "metadata", None) or {}).get("visdoc")
        if stored:
            return CollectionSpec.from_json(json.loads(stored))
        vectors = config.params.vectors
        if not isinstance(vectors, dict) or DENSE not in vectors or MULTI not in vectors:
            raise StoreError(f"collection {self.name!r} was not made by visdoc (no {DENSE!r}/{MULTI!r} vectors)")
        return CollectionSpec(dim=vectors[DENSE].size, lexical=LEXICAL in (config.params.sparse_vectors or {}),
                              on_disk=bool(vectors[DENSE].on_disk), multivector_on_disk=bool(vectors[MULTI].on_disk))

    # -- writing -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[PagePoint]) -> None:
        self._upload(StoredPoint(p.id, stored_vectors(p, self.spec), stored_payload(p, self.spec)) for p in points)

    def upsert_stored(self, points: Sequence[StoredPoint]) -> None:
        self._upload(points)

    def _upload(self, points: Iterable[StoredPoint]) -> None:
        """Upsert in requests that stay under ``max_request_bytes``, each acknowledged before the next."""
        per_float = BYTES_PER_FLOAT[self._grpc]
        batch: list[Any] = []
        size = 0
        for p in points:
            cost = p.floats() * per_float + len(json.dumps(p.payload, default=str)) + 256
            if batch and size + cost > self.max_request_bytes:
                self.client.upsert(self.name, points=batch, wait=True)
                batch, size = [], 0
            batch.append(self._m.PointStruct(id=p.id, vector=point_vectors(self._m, p.vectors), payload=p.payload))
            size += cost
        if batch:
            self.client.upsert(self.name, points=batch, wait=True)

    def delete(self, where: PageFilter) -> None:
        if where.is_empty():
            raise ValueError("refusing to delete with an empty filter")
        selector = self._m.FilterSelector(filter=self._filter(where))
        self.client.delete(self.name, points_selector=selector, wait=True)

    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(self.name, points_selector=self._m.PointIdsList(points=list(ids)), wait=True)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # -- reading -----------------------------------------------------------------------------

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        return [Record.from_qdrant(r, with_vectors) for r in self._retrieve(ids, with_vectors)]

    def retrieve_stored(self, ids: Sequence[str]) -> list[StoredPoint]:
        return [StoredPoint.from_qdrant(r) for r in self._retrieve(ids, True)]

    def _retrieve(self, ids: Sequence[str], with_vectors: bool) -> list[Any]:
        """The client's records of ``ids``, in that order (unknown ids left out)."""
        if not ids:
            return []
        found = self.client.retrieve(self.name, list(ids), with_payload=True, with_vectors=with_vectors)
        by_id = {str(r.id): r for r in found}
        return [by_id[i] for i in ids if i in by_id]

    def count(self, where: PageFilter | None = None) -> int:
        return self.client.count(self.name, count_filter=self._filter(where), exact=True).count

    def _scroll(
        self, where: PageFilter | None, limit: int, offset: str | None, *, with_payload: bool
    ) -> tuple[list[Record], str | None]:
        records, next_offset = self.client.scroll(
            self.name, scroll_filter=self._filter(where), limit=limit, offset=offset, with_payload=with_payload
        )
        return [Record.from_qdrant(r, False) for r in records], None if next_offset is None else str(next_offset)

    def _search(self, plan: SearchPlan) -> list[Hit]:
        m = self._m
        params = None
        if self.spec.quantization != "none":
            rescore = m.QuantizationSearchParams(rescore=True, oversampling=self.spec.oversampling)
            params = m.SearchParams(quantization=rescore)
        response = self.client.query_points(self.name, **query_arguments(m, plan, params))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def _filter(self, where: PageFilter | None) -> Any:
        return server_filter(self._m, where)

    # -- lexical vectors of a collection made before they existed ------------------------------

    def _declare_lexical(self) -> None:
        m = self._m
        if LEXICAL not in (self.client.get_collection(self.name).config.params.sparse_vectors or {}):
            config = m.SparseVectorNameConfig(sparse=m.SparseVectorConfig(modifier=m.Modifier.IDF))
            try:
                self.client.create_vector_name(self.name, LEXICAL, config, wait=True)
            except Exception as exc:  # a server from before named vectors could be added to a collection
                raise StoreError(
                    f"could not add the {LEXICAL!r} vector to collection {self.name!r} ({exc}): the server must "
                    "support creating named vectors on an existing collection (a newer Qdrant), else re-ingest"
                ) from exc

    def _write_lexical(self, vectors: Sequence[tuple[str, SparseTerms]]) -> int:
        m = self._m
        batch = [m.PointVectors(id=pid, vector={LEXICAL: sparse(m, terms)}) for pid, terms in vectors]
        self.client.update_vectors(self.name, points=batch, wait=True)
        return len(batch)

    def _finish_lexical(self) -> None:
        self.spec = replace(self.spec, lexical=True)
        self.client.update_collection(self.name, metadata={"visdoc": json.dumps(self.spec.to_json())})
