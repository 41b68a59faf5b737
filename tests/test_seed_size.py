"""Seed-sized check (212,292 generated users, k=6): every engine within 1% of sklearn KMeans(n_init=10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.config import load_config
from mailseg_dist.inputs.generate import iter_generated
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, SOURCE_ROW
from mailseg_dist.model.features import feature_frame
from mailseg_dist.model.modelling import fit_segments

SEED_USERS = 212_292
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed_sized(tmp_path_factory):
    """The clean layer of 212,292 generated users in 5 part files, and the in-memory table."""
    folder = tmp_path_factory.mktemp("seed") / "users"
    folder.mkdir()
    frames = []
    for i, chunk in enumerate(iter_generated(SEED_USERS, seed=42, chunk_rows=50_000)):
        chunk["engagement_score"] = (chunk["open"] + 2 * chunk["click"] + 3 * chunk["Comprador"]).astype("float64")
        chunk[SOURCE_ROW] = np.arange(len(chunk), dtype="int64") + 2 + 50_000 * i
        chunk = chunk[[*CLEAN_COLUMNS, SOURCE_ROW]]
        chunk.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
        frames.append(chunk)
    return folder, pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sklearn_reference(seed_sized):
    cfg = load_config()
    x = StandardScaler().fit_transform(feature_frame(seed_sized[1], cfg["features"]))
    return x, KMeans(n_clusters=6, n_init=10, random_state=0).fit(x).inertia_


@pytest.mark.parametrize("engine", ["lloyd", "minibatch", "daskml"])
def test_engine_within_one_percent_of_sklearn(engine, seed_sized, sklearn_reference, dask_client):
    folder, users = seed_sized
    x, best = sklearn_reference
    cfg = load_config(overrides={"model.k": 6, "model.engine": engine, "quality.bootstrap_rounds": 1})
    result = fit_segments(folder, cfg, dask_client)
    assert result.inertia <= best * 1.01, f"{engine}: inertia {result.inertia:.1f} vs sklearn {best:.1f}"
    assert result.n_rows == SEED_USERS
    # The job's inertia is the saved model's inertia on the same scaled features.
    labels = result.model.predict(result.scaler.transform(feature_frame(users, cfg["features"])))
    recomputed = ((x - result.model.cluster_centers_[labels]) ** 2).sum()
    assert recomputed == pytest.approx(result.inertia, rel=1e-9)
    assert np.bincount(labels, minlength=6).tolist() == [result.cluster_sizes[j] for j in range(6)]
