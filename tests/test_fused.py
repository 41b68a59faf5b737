"""The compiled pass (model/fused.py) against NumPy, and a pass read from Parquet against one in memory."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pytest
from dask.callbacks import Callback

from mailseg_dist.model.fused import ClusterSums, cluster_sums, moments, nearest_rows, two_nearest
from mailseg_dist.model.kernels import block_partials, flat_partials, nearest, stats_many
from mailseg_dist.model.quality import simplified_silhouette
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
    centers = [rng.normal(size=(4, 3)), rng.normal(size=(2, 3))]
    for x in (np.asfortranarray(rng.normal(size=(1200, 3))), rng.normal(size=(700, 3))):  # F and C order
        ref = [numpy_sums(x, c) for c in centers]
        np.testing.assert_allclose(block_partials(x, centers, True),
                                   flat_partials(len(x), ref, (x.sum(axis=0), x.T @ x)), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(block_partials(x, centers, False), flat_partials(len(x), ref),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 9, 511, 512, 513, 3000])  # around the lanes and the buffer
def test_moments_are_the_exact_sums_to_rounding(rows):
    """Σx and Σxxᵀ of offset rows (where a one-pass covariance loses digits) against math.fsum's exact sums."""
    import math

    x = np.random.default_rng(rows).normal(size=(rows, 3)) + 100.0
    sum_x, sum_xx = moments([x[:, 0], x[:, 1], x[:, 2]], np.zeros(3), np.ones(3))
    exact_xx = np.array([[math.fsum(x[:, a] * x[:, b]) for b in range(3)] for a in range(3)])
    np.testing.assert_allclose(sum_x, [math.fsum(x[:, a]) for a in range(3)], rtol=1e-15, atol=0)
    np.testing.assert_allclose(sum_xx, exact_xx, rtol=2e-15, atol=0)
    assert np.array_equal(sum_xx, sum_xx.T)


def test_moments_have_the_same_bits_from_raw_columns_any_layout_or_alignment():
    """The same rows give the same bits whether scaled in the loop or before it, and wherever they lie in
    memory: BLAS's Σxxᵀ did not (one run in 12 of the store test wrote another PCA)."""
    rng = np.random.default_rng(5)
    raw = [rng.integers(0, 50, 2000), rng.integers(0, 9, 2000).astype(np.int32), rng.uniform(0, 23, 2000)]
    mean, scale = np.array([20.0, 4.0, 11.0]), np.array([7.0, 2.5, 6.0])
    scaled = np.column_stack([(c.astype(np.float64) - m) / s for c, m, s in zip(raw, mean, scale)])
    expected = moments([scaled[:, f] for f in range(3)], np.zeros(3), np.ones(3))
    shifted = np.empty(scaled.size + 1)[1:].reshape(scaled.shape)  # 8 bytes off the allocation's alignment
    shifted[:] = scaled
    for got in (moments(raw, mean, scale), moments([np.asfortranarray(scaled)[:, f] for f in range(3)], [0] * 3, [1] * 3),
                moments([shifted[:, f].copy() for f in range(3)], np.zeros(3), np.ones(3))):
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_nan_and_infinite_rows_go_to_each_sets_first_centre_and_count_once():
    x = np.array([[0.0, 0.0], [np.nan, 1.0], [np.inf, 0.0], [5.0, 5.0]])
    centers = [np.array([[1.0, 1.0], [5.0, 5.0]]), np.array([[9.0, 9.0]])]
    two, one = cluster_sums([x[:, 0], x[:, 1]], np.zeros(2), np.ones(2), centers)
    np.testing.assert_array_equal(two[:, 0], [3, 1])  # the NaN and the inf rows: the first centre of their set
    np.testing.assert_array_equal(one[:, 0], [4])
    assert np.isnan(two[0, 3]) and np.isnan(one[0, 3])
    labels, sq = nearest_rows([x[:, 0], x[:, 1]], centers[0])
    np.testing.assert_array_equal(labels, [0, 0, 0, 1])
    assert sq[0] == 2.0 and np.isnan(sq[1]) and sq[2] == np.inf and sq[3] == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: ClusterSums([np.zeros((0, 2))], 2), "k >= 1"),
    (lambda: ClusterSums([np.zeros((3, 2)), np.zeros((2, 3))], 2), "k >= 1 rows and 2 columns"),
    (lambda: ClusterSums([np.zeros((3, 2))], 2).add([np.zeros(4), np.zeros(5)], [0, 0], [1, 1]), "one length"),
    (lambda: ClusterSums([np.zeros((3, 2))], 2).add([np.zeros(4)], [0, 0], [1, 1]), "2 one-dimensional"),
    (lambda: ClusterSums([np.zeros((3, 2))], 2).add([np.zeros(4), np.zeros(4)], [0], [1, 1]), "mean and scale"),
    (lambda: nearest_rows([np.zeros(4)], np.zeros((0, 1))), "k >= 1"),
])
def test_shapes_the_compiled_loop_cannot_check_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nearest_is_numpys_argmin_of_the_exact_distances():
    rng = np.random.default_rng(5)
    x, centers = rng.normal(size=(2000, 4)), rng.normal(size=(7, 4))
    x[:3] = centers[[2, 2, 5]]  # distance 0 to a centre
    labels, sq = nearest(x, centers)
    full = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, full.argmin(axis=1))
    np.testing.assert_allclose(sq, full.min(axis=1), rtol=1e-12, atol=0)
    assert list(labels[:3]) == [2, 2, 5] and not sq[:3].any()


def test_rows_added_unit_after_unit_sum_to_the_bits_of_one_block():
    rng = np.random.default_rng(6)
    raw = [rng.integers(0, 100, 3001), rng.random(3001) * 7]
    mean, scale, centers = np.array([50.0, 3.0]), np.array([29.0, 2.0]), [rng.normal(size=(5, 2))]
    units = ClusterSums(centers, 2)
    for a, b in [(0, 700), (700, 701), (701, 2500), (2500, 3001)]:
        units.add([c[a:b] for c in raw], mean, scale)
    np.testing.assert_array_equal(units.per_set()[0], cluster_sums(raw, mean, scale, centers)[0])


class _Tasks(Callback):
    def __init__(self):
        super().__init__()
        self.names = []

    def _start_state(self, dsk, state):
        self.names += [str(getattr(task, "func", task)) for task in dsk.values()]


@pytest.fixture
def users_row_groups(tmp_path, clean_users):
    """Two part files of 15 row groups of 20 users and an empty one between them: 30 units, which
    `unit_groups` gathers into 16 groups, some of two units."""
    folder = tmp_path / "users"
    folder.mkdir()
    for i, piece in enumerate([clean_users.iloc[:300], clean_users.iloc[0:0], clean_users.iloc[300:]]):
        piece.to_parquet(folder / f"part-{i:05d}.parquet", index=False, row_group_size=20)
    return folder


@pytest.mark.parametrize("options", [{}, {"log1p": True, "cyclical": True, "rates": True}])
def test_a_pass_read_from_parquet_equals_one_over_the_kept_blocks(users_row_groups, clean_users, options):
    """The lazy data runs each pass as a task a group of units that reads, scales and sums; the kept data (the
    same groups, persisted as NumPy blocks) maps block_partials over them. Both equal the plain NumPy sums
    over the same scaled rows, and after the first pass they are the same bits."""
    fcfg = {"columns": list(SEED8), "log1p": False, "rates": False, "cyclical": False, **options}
    with dask.config.set(scheduler="threads"):
        scaler = fit_scaler(dd.read_parquet(users_row_groups), fcfg)
        lazy = scaled_from_parquet(users_row_groups, scaler, fcfg)
        kept = scaled_from_parquet(users_row_groups, scaler, fcfg, grouped=True).persist()
        x = kept.array.compute()
        groups = unit_groups(lazy.units)
        assert len(lazy.units) == 30 and len(groups) == 16 and kept.array.numblocks[0] == 16
        centers = [x[[0, 250, 500]], x[[1, 2, 300, 400, 599]]]
        assert lazy.reads_parquet and not kept.reads_parquet
        for totals in (None, (x.sum(axis=0), x.T @ x)):
            with _Tasks() as seen:
                from_parquet = stats_many(lazy, centers, totals)
            assert sum("group_partials" in n for n in seen.names) == len(groups)
            from_memory = stats_many(kept, centers, totals)
            for a, b, c in zip(from_parquet, from_memory, centers):
                ref = numpy_sums(x, c)
                np.testing.assert_array_equal(a.counts, ref[:, 0])
                np.testing.assert_allclose(a.sums, ref[:, 1:-2], rtol=1e-12, atol=1e-10)
                np.testing.assert_allclose(a.sq_dist, ref[:, -2], rtol=1e-10)
                np.testing.assert_allclose(a.dist, ref[:, -1], rtol=1e-10)
                if totals is not None:  # rows added in the same order as over the kept block: the same bits
                    for field in ("counts", "sums", "sq_dist", "dist"):
                        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
                else:  # the first pass's Σx and Σxxᵀ: per unit on one side, per block on the other
                    np.testing.assert_allclose(a.sum_x, x.sum(axis=0), rtol=1e-12, atol=1e-9)
                    np.testing.assert_allclose(a.sum_xx, x.T @ x, rtol=1e-12, atol=1e-9)
                    np.testing.assert_allclose(b.sum_x, x.sum(axis=0), rtol=1e-12, atol=1e-9)
    if not options:
        np.testing.assert_array_equal(x, scaler.transform(clean_users[SEED8]))


def test_a_first_compile_or_cache_load_waits_for_the_cache_lock():
    """Two processes saving different signatures at once can corrupt numba's cache index (fused._cache_lock):
    a process's first call for a signature waits while another holds the lock, and runs once it is freed."""
    import fcntl
    import subprocess
    import sys
    import time

    from mailseg_dist.model import fused

    centers = [np.array([[0.0], [4.0]])]
    np.testing.assert_array_equal(cluster_sums([np.arange(5, dtype=np.uint16)], [0.0], [1.0], centers)[0][:, 0],
                                  [3, 2])  # compiled and cached here: the child only loads it (~0.2 s)
    script = ("import time, numpy as np; from mailseg_dist.model.fused import cluster_sums; print('ready', flush=True); "
              "s = cluster_sums([np.arange(5, dtype=np.uint16)], [0.0], [1.0], [np.array([[0.0], [4.0]])]); "
              "print(time.time(), *s[0][:, 0])")
    with open(f"{fused._columns_sums._cache._cache_path}/mailseg-fused.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(2)
        freed = time.time()
        fcntl.flock(handle, fcntl.LOCK_UN)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    done, *counts = out.split()
    assert float(done) >= freed, "the first call ran while another process held the cache lock"
    assert counts == ["3.0", "2.0"]


def test_warm_up_readies_the_signatures_a_pass_and_nearest_use(monkeypatch):
    """modelling warms the client up in a thread: the loops must then be ready for float64 columns of d features
    (no set-up left for the first real call), and not for another width."""
    from mailseg_dist.model import fused

    monkeypatch.setattr(fused, "_READY", set())
    fused.warm_up(5)
    key = (("<f8", True),) * 5
    assert fused._READY == {("_columns_sums", key), ("_columns_moments", key), ("_nearest", key),
                            ("_two_nearest", key)}
    x = np.random.default_rng(7).normal(size=(50, 5))
    nearest(x, x[:3])
    block_partials(x, [x[:3]])
    simplified_silhouette(x, x[:3])
    assert len(fused._READY) == 4  # the real calls used the warmed signatures


@pytest.mark.parametrize("rows", [0, 1, 513, 2000])  # around the 512-row buffer
def test_two_nearest_are_the_two_smallest_exact_distances_ties_counted_twice(rows):
    rng = np.random.default_rng(11)
    x, centers = rng.normal(size=(rows, 5)), rng.normal(size=(6, 5))
    centers[4] = centers[1]  # a centre given twice: its distance is both the nearest and the second
    if rows:
        x[0] = centers[1]
    sq1, sq2 = two_nearest([x[:, f] for f in range(5)], centers)
    # Σ(x − c)² feature after feature, as the loop adds them: the same bits, then sorted per row
    full = np.zeros((rows, 6))
    for f in range(5):
        full += (x[:, f, None] - centers[None, :, f]) ** 2
    full.sort(axis=1)
    np.testing.assert_array_equal(sq1, full[:, 0])
    np.testing.assert_array_equal(sq2, full[:, 1])
    assert sq1.shape == sq2.shape == (rows,)
    if rows:
        assert sq1[0] == sq2[0] == 0.0
    with pytest.raises(ValueError, match="k >= 2"):
        two_nearest([x[:, f] for f in range(5)], centers[:1])
