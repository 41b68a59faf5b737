"""The compiled pass (model/fused.py) against NumPy, and a pass read from Parquet against one in memory."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pytest
from dask.callbacks import Callback

from mailseg_dist.model.fused import cluster_sums
from mailseg_dist.model.kernels import block_partials, stats_many
from mailseg_dist.model.scaler import fit_scaler, scaled_from_parquet, unit_groups

SEED8 = ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]


def numpy_sums(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """count, Σx, Σd², Σd per cluster, with argmin labels over full distance matrices (the plain way)."""
    sq = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    labels = sq.argmin(axis=1)
    best = sq[np.arange(len(x)), labels]
    k = len(centers)
    return np.column_stack([np.bincount(labels, minlength=k),
                            np.array([x[labels == j].sum(axis=0) for j in range(k)]),
                            np.bincount(labels, best, minlength=k), np.bincount(labels, np.sqrt(best), minlength=k)])


@pytest.mark.parametrize("rows", [0, 1, 511, 512, 513, 3000])  # around the 512-row buffer
def test_sums_equal_numpy_for_several_centre_sets_and_column_dtypes(rows):
    rng = np.random.default_rng(rows)
    raw = [rng.integers(0, 50, rows), rng.random(rows) * 24, rng.integers(0, 2, rows).astype(bool),
           rng.integers(0, 9, rows).astype(np.int32)]
    mean, scale = np.array([20.0, 12.0, 0.5, 4.0]), np.array([10.0, 6.0, 0.5, 2.5])
    x = (np.column_stack([np.asarray(c, dtype=np.float64) for c in raw]) - mean) / scale
    centers_list = [rng.normal(size=(k, 4)) for k in (2, 5, 3)]
    got = cluster_sums(raw, mean, scale, centers_list)
    assert [g.shape for g in got] == [(2, 7), (5, 7), (3, 7)]
    for g, centers in zip(got, centers_list):
        np.testing.assert_allclose(g, numpy_sums(x, centers), rtol=1e-12, atol=1e-9)
        assert g[:, 0].sum() == rows


def test_a_tie_goes_to_the_first_centre_as_argmin():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # the last row is as far from centres 0 and 1
    centers = np.array([[0.5, 0.0], [1.5, 0.0], [1.0, 0.0]])
    (got,) = cluster_sums([x[:, 0], x[:, 1]], np.zeros(2), np.ones(2), [centers[:2]])
    np.testing.assert_array_equal(got[:, 0], [2, 1])
    np.testing.assert_array_equal(got[:, 1:3], [[1.0, 0.0], [2.0, 0.0]])


def test_unscaled_columns_give_the_bits_of_the_scaled_matrix():
    """The Parquet pass scales inside the loop; a kept block is scaled by NumPy first: same floats in both."""
    rng = np.random.default_rng(3)
    raw = [rng.integers(0, 10**6, 5000), rng.random(5000) * 1e3]
    mean, scale = np.array([5e5 + 0.1, 499.7]), np.array([2.9e5, 288.3])
    scaled = (np.column_stack([np.asarray(c, dtype=np.float64) for c in raw]) - mean) / scale
    centers = [scaled[[3, 70, 900]]]
    from_raw = cluster_sums(raw, mean, scale, centers)[0]
    from_matrix = cluster_sums([scaled[:, 0], scaled[:, 1]], np.zeros(2), np.ones(2), centers)[0]
    np.testing.assert_array_equal(from_raw, from_matrix)


def test_block_partials_matches_numpy_with_and_without_totals():
    rng = np.random.default_rng(4)
    x = np.asfortranarray(rng.normal(size=(1200, 3)))
    centers = [rng.normal(size=(4, 3)), rng.normal(size=(2, 3))]
    with_totals, without = block_partials(x, centers, True)[0], block_partials(x, centers, False)[0]
    np.testing.assert_allclose(with_totals[1:4], x.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(with_totals[4:13], (x.T @ x).ravel(), rtol=1e-12)
    np.testing.assert_array_equal(np.delete(with_totals, range(1, 13)), without)
    ref = numpy_sums(x, centers[0])
    np.testing.assert_allclose(without[1:5], ref[:, 0])
    np.testing.assert_allclose(without[5:17], ref[:, 1:4].ravel(), rtol=1e-12, atol=1e-12)


class _Tasks(Callback):
    def __init__(self):
        super().__init__()
        self.names = []

    def _start_state(self, dsk, state):
        self.names += [str(getattr(task, "func", task)) for task in dsk.values()]


@pytest.mark.parametrize("options", [{}, {"log1p": True, "cyclical": True, "rates": True}])
def test_a_pass_read_from_parquet_equals_one_over_the_kept_blocks(users_parquet, clean_users, options):
    """users_parquet: three parts and an empty one. The lazy data runs each pass as group tasks that read,
    scale and sum; the persisted data maps block_partials over NumPy blocks. Same sums (to the rounding of
    another summation order), and both equal the plain NumPy sums over the same scaled rows."""
    fcfg = {"columns": list(SEED8), "log1p": False, "rates": False, "cyclical": False, **options}
    with dask.config.set(scheduler="threads"):
        scaler = fit_scaler(dd.read_parquet(users_parquet), fcfg)
        lazy = scaled_from_parquet(users_parquet, scaler, fcfg)
        kept = lazy.persist()
        x = kept.array.compute()
        centers = [x[[0, 250, 500]], x[[1, 2, 300, 400, 599]]]
        assert lazy.reads_parquet and not kept.reads_parquet
        for totals in (None, (x.sum(axis=0), x.T @ x)):
            with _Tasks() as seen:
                from_parquet = stats_many(lazy, centers, totals)
            assert sum("group_partials" in n for n in seen.names) == len(unit_groups(lazy.units))
            from_memory = stats_many(kept, centers, totals)
            for a, b, c in zip(from_parquet, from_memory, centers):
                np.testing.assert_array_equal(a.counts, b.counts)
                np.testing.assert_allclose(a.sums, b.sums, rtol=1e-12, atol=1e-10)
                np.testing.assert_allclose(a.sq_dist, b.sq_dist, rtol=1e-12)
                ref = numpy_sums(x, c)
                np.testing.assert_array_equal(a.counts, ref[:, 0])
                np.testing.assert_allclose(a.sq_dist, ref[:, -2], rtol=1e-10)
    if not options:
        np.testing.assert_array_equal(x, scaler.transform(clean_users[SEED8]))
