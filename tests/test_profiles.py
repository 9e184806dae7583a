"""Memory profiles: each places the vectors as documented, on the embedded engine and on a server
(qdrant-client local mode), stores and reads back the same points and ranks like exact MaxSim."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_store import DIM, exact_maxsim, make_points, unit

from visdoc.store import CollectionSpec, QueryVectors, open_store
from visdoc.store.schema import PROFILES

ON_DISK = {  # vector -> served from disk, per profile
    "fast": {"dense": False, "multi": False, "pooled": False},
    "compact": {"dense": False, "multi": True, "pooled": False},
    "archive": {"dense": True, "multi": True, "pooled": True},
}


def placement(store, backend: str) -> dict[str, bool]:
    if backend == "edge":
        config = json.loads((store.path / "shard" / "edge_config.json").read_text())["vectors"]
        return {name: bool(v.get("on_disk")) for name, v in config.items()}
    vectors = store.client.get_collection(store.name).config.params.vectors
    return {name: bool(v.on_disk) for name, v in vectors.items()}


def open_backend(backend: str, tmp_path, spec=None):
    if backend == "edge":
        return open_store("pages", spec, data_dir=tmp_path)
    from qdrant_client import QdrantClient

    return open_store("pages", spec, client=QdrantClient(path=str(tmp_path / "server")))


@pytest.mark.parametrize("backend", ["edge", "server-local"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_places_vectors_round_trips_and_searches(profile, backend, tmp_path):
    points = make_points(30)
    store = open_backend(backend, tmp_path, CollectionSpec.for_profile(profile, DIM, model="test-model"))
    assert placement(store, backend) == ON_DISK[profile]
    store.upsert(points)
    store.optimize()
    store.close()
    if backend == "server-local":
        store.client.close()  # a client passed in stays the caller's to close
    store = open_backend(backend, tmp_path)  # reopened from disk: the spec and the placement persist
    with store:
        assert store.spec.profile == profile and store.spec.model == "test-model"
        assert placement(store, backend) == ON_DISK[profile]
        records = store.retrieve([p.id for p in points], with_vectors=True)
        assert [r.id for r in records] == [p.id for p in points]
        for record, point in zip(records, points, strict=True):
            assert record.payload == point.payload
            np.testing.assert_allclose(record.dense, point.dense, atol=1e-6)
            np.testing.assert_allclose(record.multivector, point.multivector, atol=2e-3)  # float16
        query = unit(np.random.default_rng(5).normal(size=(6, 128)))
        exact = [points[i].id for i in np.argsort(-exact_maxsim(query, points))[:5]]
        hits = store.search(QueryVectors(unit(np.random.default_rng(6).normal(size=DIM)), query), k=5,
                            prefetch=30, pooled_prefetch=30)  # fmt: skip
        assert [h.id for h in hits] == exact
    if backend == "server-local":
        store.client.close()


def test_profiles_refuse_unknown_names_and_keep_other_settings():
    with pytest.raises(ValueError, match="profile 'tiny'.*fast, compact, archive"):
        CollectionSpec.for_profile("tiny", DIM)  # type: ignore[arg-type]
    spec = CollectionSpec.for_profile("compact", DIM, quantization="binary", token_pool_factor=2)
    assert (spec.multivector_on_disk, spec.on_disk, spec.quantization, spec.token_pool_factor) == (
        True, False, "binary", 2)  # fmt: skip
    assert CollectionSpec(dim=DIM).profile == "compact"  # the default
    assert CollectionSpec.from_json({"dim": DIM, "on_disk": True}).profile == "archive"
    assert CollectionSpec.from_json({"dim": DIM}).multivector_on_disk is False  # specs written before profiles


def test_the_default_search_passes_on_more_pooled_candidates_in_a_larger_collection(tmp_path, monkeypatch):
    from visdoc.store import base, schema

    assert [schema.pooled_prefetch_for(n) for n in (1, 20_000, 20_001, 10**6)] == [64, 64, 128, 128]
    store = open_store("pages", CollectionSpec(dim=DIM), data_dir=tmp_path)
    store.upsert(make_points(12))
    plans = []
    monkeypatch.setattr(store, "_search", lambda plan: plans.append(plan) or [])
    query = QueryVectors(unit(np.ones(DIM)), unit(np.ones((3, 128))))
    store.search(query)
    store.search(query, pooled_prefetch=7)
    monkeypatch.setattr(store, "count", lambda where=None: 50_000)
    store.search(query)  # the count is reused for a while...
    monkeypatch.setattr(base, "SIZE_TTL", 0.0)
    store.search(query)  # ...then counted again
    assert [p.first_stages["pooled"] for p in plans] == [64, 10, 64, 128]  # 7 < k=10: k
    store.close()
