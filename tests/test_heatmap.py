"""Match heatmaps: the per-patch similarity function and the image grid stored with each page."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURE
from visdoc.heatmap import patch_heatmap
from visdoc.points import IMAGE_GRID as GRID_FIELD
from visdoc.points import ImageGrid, image_grid

SAMPLES = FIXTURE.parents[2] / "examples" / "data"


def unit(*values: float) -> list[float]:
    v = np.asarray(values, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


def test_hand_made_page_gives_the_known_maps():
    # a 2x3 patch grid between one template token before and one after (8 tokens, 3-d vectors)
    e1, e2, e3 = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)
    diag = unit(1, 1, 0)  # cos 0.7071 with e1 and e2
    page = np.array([e3, e1, e2, e3, diag, e3, e1, e3], dtype=np.float32)  # patches: e1 e2 e3 / diag e3 e1
    query = np.array([e1, e2], dtype=np.float32)
    grid = ImageGrid(rows=2, cols=3, start=1, tokens=8)
    heat = patch_heatmap(query, page, grid)
    r = np.sqrt(0.5)
    np.testing.assert_allclose(heat.per_token[0], [[1, 0, 0], [r, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(heat.per_token[1], [[0, 1, 0], [r, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(heat.overall, [[1, 1, 0], [r, 0, 1]], atol=1e-6)
    # MaxSim over the patches is the sum over query tokens of each map's maximum
    assert heat.per_token.reshape(2, -1).max(axis=1).sum() == pytest.approx(2.0)


def test_grid_checks():
    assert image_grid((2, 3), (1, 7), 8) == ImageGrid(2, 3, 1, 8)
    assert image_grid((2, 3), (1, 6), 8) is None  # the span does not hold rows * cols tokens
    assert image_grid(None, (1, 7), 8) is None
    assert ImageGrid.from_payload(ImageGrid(2, 3, 1, 8).to_payload()) == ImageGrid(2, 3, 1, 8)
    assert ImageGrid.from_payload({"rows": 2, "cols": 3, "start": 4, "tokens": 8}) is None  # past the end
    assert ImageGrid.from_payload({"rows": "x"}) is None and ImageGrid.from_payload(None) is None
    with pytest.raises(ValueError, match="recorded for 8"):
        patch_heatmap(np.ones((1, 3)), np.ones((9, 3)), ImageGrid(2, 3, 1, 8))


def test_ingestion_stores_the_image_grid(tmp_path, tiny_fp32):
    from visdoc.ingest import Ingestor
    from visdoc.store import CollectionSpec, open_store

    spec = CollectionSpec(dim=32, model=tiny_fp32.name)
    with open_store("pages", spec, data_dir=tmp_path) as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([SAMPLES / "sample-page.png"])
        [record] = store.retrieve([r.id for r in store.iter_records()], with_vectors=True)
    grid = ImageGrid.from_payload(record.payload[GRID_FIELD])
    assert grid is not None and grid.tokens == len(record.multivector)
    assert (grid.rows, grid.cols) == (31, 24)  # 850x1100 px within 602,112 px: 672x868, 24 x 31 merged patches
    assert grid.start == tiny_fp32.tokenizer.content_span("page_image", grid.tokens)[0]
    # token pooling merges patches: no grid is recorded then
    pooled = CollectionSpec(dim=32, model=tiny_fp32.name, token_pool_factor=3)
    with open_store("pooled", pooled, data_dir=tmp_path) as store:
        Ingestor(tiny_fp32, store, workers=0).ingest([SAMPLES / "sample-page.png"])
        assert all(GRID_FIELD not in r.payload for r in store.iter_records())
