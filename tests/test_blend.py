"""The `blend` update: exact weighted Lloyd in the previous month's scaled space, checked against NumPy/pandas."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users
from sklearn.cluster import KMeans

from mailseg_dist.core.config import load_config
from mailseg_dist.model.blend import decay, months_between, prior_weights, swapped_ids
from mailseg_dist.model.features import feature_frame
from mailseg_dist.model.modelling import fit_segments

K = 3


def small_cfg(**update) -> dict:
    cfg = load_config(overrides={"model.k": K})
    cfg["quality"]["bootstrap_rounds"] = 0
    cfg["selection"].update(silhouette_sample=300, silhouette_min_per_cluster=20)
    cfg["update"].update(update)
    return cfg


@pytest.fixture(scope="module")
def new_month():
    """Next month's users: other people, evenings a bit later, more bouncers (so the centres must move)."""
    users = make_clean_users(900, seed=1)
    users["hour"] = np.clip(users["hour"] + 0.7, 0, 23)
    bouncers = users["bounce"] > 0
    users.loc[bouncers, "bounce"] += 1
    users.loc[bouncers, "Total"] += 1
    return users


@pytest.fixture
def new_month_parquet(tmp_path, new_month):
    """The new month on disk: three uneven part files and an empty one."""
    folder = tmp_path / "users" / "month=2026-02"
    folder.mkdir(parents=True)
    for i, (lo, hi) in enumerate([(0, 100), (100, 100), (100, 520), (520, 900)]):
        new_month.iloc[lo:hi].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return folder


@pytest.fixture
def previous(users_parquet):
    """Last month's model as update.previous_segments gives it (feature units, its scaler, its counts)."""
    first = fit_segments(users_parquet, small_cfg())
    return SimpleNamespace(
        k=first.k, centers=first.centers * first.scaler.scale_ + first.scaler.mean_, scaler=first.scaler,
        counts=np.array([first.cluster_sizes[j] for j in range(first.k)], dtype=np.int64), month="2026-01",
        names={}, shares={}, months_elapsed=1)


def numpy_weighted_lloyd(x: np.ndarray, anchor: np.ndarray, weights: np.ndarray, tol: float, max_passes: int):
    """The same update written plainly: nearest centre, then pandas group sums, (w·a + Σx) / (w + n)."""
    state, history = anchor.copy(), []
    for it in range(1, max_passes + 1):
        d2 = ((x[:, None, :] - state[None]) ** 2).sum(axis=2)
        labels = d2.argmin(axis=1)
        inertia = d2[np.arange(len(x)), labels].sum()
        groups = pd.DataFrame(x).groupby(labels)
        sums = groups.sum().reindex(range(len(state)), fill_value=0.0).to_numpy()
        counts = groups.size().reindex(range(len(state)), fill_value=0).to_numpy()
        history.append(inertia + (weights * ((state - anchor) ** 2).sum(axis=1)).sum())
        mass = weights + counts
        new = np.where(mass[:, None] > 0, (weights[:, None] * anchor + sums) / np.maximum(mass, 1e-300)[:, None],
                       state)
        stalled = it > 1 and history[-2] - history[-1] <= tol * history[-2]
        if stalled or it == max_passes or np.array_equal(new, state):
            return state, it, labels, inertia
        state = new
    raise AssertionError


def scaled(users: pd.DataFrame, scaler, cfg) -> np.ndarray:
    return (feature_frame(users, cfg["features"]).to_numpy(np.float64) - scaler.mean_) / scaler.scale_


@pytest.mark.parametrize("months, max_passes, tol", [(1, 10, 1e-4), (3, 2, 1e-4), (2, 50, 0.0)])
def test_dask_weighted_lloyd_equals_numpy(previous, new_month_parquet, new_month, dask_client, months, max_passes,
                                          tol):
    cfg = small_cfg(max_passes=max_passes, half_life_months=3)
    cfg["model"]["tol"] = tol
    previous.months_elapsed = months
    got = fit_segments(new_month_parquet, cfg, dask_client, blend=previous)

    x = scaled(new_month, previous.scaler, cfg)
    anchor = (previous.centers - previous.scaler.mean_) / previous.scaler.scale_
    weights = previous.counts * 0.5 ** (months / 3)
    centres, passes, labels, inertia = numpy_weighted_lloyd(x, anchor, weights, tol, max_passes)
    assert got.n_iter == passes and got.blend["passes"] == passes
    assert passes > 1  # the anchors alone would not test the update
    np.testing.assert_allclose(got.centers, centres, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.blend["weights"], weights, rtol=1e-12)
    assert got.inertia == pytest.approx(inertia, rel=1e-9)
    assert [got.cluster_sizes[j] for j in range(K)] == np.bincount(labels, minlength=K).tolist()
    assert got.k_reason == {"rule": "update", "k": K, "mode": "blend"} and got.engine == "blend"
    assert got.blend["swapped_ids"] == [] and not got.ids_reordered
    # the saved model labels users as the centres do, in the previous month's units
    assert np.array_equal(got.model.predict(x), labels)


def test_weight_zero_is_plain_lloyd_from_the_same_start(previous, new_month_parquet, new_month):
    cfg = small_cfg(max_passes=300)
    cfg["model"]["tol"] = 0.0
    previous.counts = np.zeros(K, dtype=np.int64)
    got = fit_segments(new_month_parquet, cfg, blend=previous)
    x = scaled(new_month, previous.scaler, cfg)
    anchor = (previous.centers - previous.scaler.mean_) / previous.scaler.scale_
    theirs = KMeans(K, init=anchor, n_init=1, tol=0.0, max_iter=300).fit(x)
    np.testing.assert_allclose(got.centers, theirs.cluster_centers_, rtol=1e-7, atol=1e-9)
    assert got.inertia == pytest.approx(theirs.inertia_, rel=1e-9)


def test_a_huge_weight_keeps_the_centres(previous, new_month_parquet):
    previous.counts = np.full(K, 10**12, dtype=np.int64)
    got = fit_segments(new_month_parquet, small_cfg(), blend=previous)
    anchor = (previous.centers - previous.scaler.mean_) / previous.scaler.scale_
    np.testing.assert_allclose(got.centers, anchor, rtol=0, atol=1e-6)
    assert got.blend["swapped_ids"] == []


def test_the_scaler_is_the_previous_one_and_not_refitted(previous, new_month_parquet):
    got = fit_segments(new_month_parquet, small_cfg(), blend=previous)
    for attribute in ("mean_", "scale_", "var_"):
        assert np.array_equal(getattr(got.scaler, attribute), getattr(previous.scaler, attribute)), attribute
    assert "scaler" not in got.timings  # no pass over the data for it
    assert got.n_rows == 900 and sum(got.cluster_sizes.values()) == 900
    assert set(got.stability) == set(range(K)) and -1 <= got.silhouette <= 1 and got.pca.n_components_ == 2


def test_decay_follows_the_half_life():
    assert decay(3, 3) == 0.5 and decay(6, 3) == 0.25 and decay(0, 3) == 1.0
    assert decay(1, 3) == pytest.approx(2 ** (-1 / 3)) and decay(1, 1) == 0.5
    np.testing.assert_array_equal(prior_weights([100, 0, 40], 2, 1), [25.0, 0.0, 10.0])
    with pytest.raises(ValueError):
        decay(1, 0)
    assert months_between("2025-11", "2026-02") == 3 and months_between("2026-01", "2026-02") == 1
    assert months_between("2026-02", "2026-02") == 1 and months_between(None, "2026-02") == 1


def test_months_elapsed_is_required(previous, new_month_parquet):
    del previous.months_elapsed
    with pytest.raises(ValueError, match="months_elapsed"):
        fit_segments(new_month_parquet, small_cfg(), blend=previous)


def test_swapped_ids_names_the_ids_the_matching_would_move():
    anchor = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    assert swapped_ids(anchor, anchor + 0.1) == []
    assert swapped_ids(anchor, anchor[[1, 0, 2]]) == [0, 1]
