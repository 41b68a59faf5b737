"""Quality from one pass of per-cluster sums, checked against scikit-learn on the same data."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from conftest import make_clean_users, split_with_empty
from dask.callbacks import Callback
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
)

from mailseg_dist.model.engines import lloyd
from mailseg_dist.model.kernels import assign_stats, nearest, stats_many
from mailseg_dist.model.quality import (
    bootstrap_stability,
    calinski_harabasz,
    davies_bouldin,
    fit_pca,
    simplified_silhouette,
    stability_level,
    silhouette_values,
    stratified_silhouette,
)
from mailseg_dist.model.scaler import fit_scaler, scaled_from_ddf

FCFG = {"columns": ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]}


@pytest.fixture(scope="module")
def data():
    """Scaled features as NumPy and as a Dask array with an empty chunk."""
    df = make_clean_users(1500, seed=11)
    ddf = split_with_empty(df, 5)
    scaler = fit_scaler(ddf, FCFG)
    x = scaled_from_ddf(ddf, scaler, FCFG)
    assert 0 in x.chunks[0]
    return x.compute(), x


def _labels(x, centers):
    return np.argmin(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)


def test_assign_stats_matches_numpy_and_sklearn_inertia(data):
    xn, xd = data
    centers = xn[[3, 400, 900, 1200]]
    starts = []
    with Callback(start=lambda dsk: starts.append(1)), dask.config.set(scheduler="sync"):
        st = assign_stats(xd, centers)
    assert len(starts) == 1
    labels = _labels(xn, centers)
    np.testing.assert_array_equal(st.counts, np.bincount(labels, minlength=4))
    np.testing.assert_allclose(st.sums, [xn[labels == j].sum(0) for j in range(4)], rtol=1e-12, atol=1e-9)
    km = KMeans(4, init=centers, n_init=1, max_iter=1).fit(centers)
    km.cluster_centers_ = centers
    np.testing.assert_allclose(st.inertia, -km.score(xn), rtol=1e-12)
    dist = np.sqrt(((xn - centers[labels]) ** 2).sum(1))
    np.testing.assert_allclose(st.dist, np.bincount(labels, weights=dist), rtol=1e-12)
    np.testing.assert_allclose(st.sum_xx, xn.T @ xn, rtol=1e-12, atol=1e-9)
    assert st.n == len(xn)


def test_stats_many_equals_one_by_one(data):
    xn, xd = data
    sets = [xn[:2], xn[10:15], xn[100:103]]
    many = stats_many(xd, sets)
    for centers, st in zip(sets, many):
        one = assign_stats(xd, centers)
        np.testing.assert_array_equal(st.counts, one.counts)
        np.testing.assert_allclose(st.sq_dist, one.sq_dist, rtol=1e-13)


def test_calinski_harabasz_exact_for_any_centres(data):
    xn, xd = data
    centers = xn[[5, 50, 500, 700, 1100]] + 0.1  # arbitrary, far from the cluster means
    st = assign_stats(xd, centers)
    expected = calinski_harabasz_score(xn, _labels(xn, centers))
    assert calinski_harabasz(st) == pytest.approx(expected, rel=1e-9)


def test_davies_bouldin_exact_at_a_kmeans_fixed_point(data):
    xn, xd = data
    fixed = lloyd.fit(xd, 4, {"max_iter": 100, "tol": 0.0, "seed": 0, "n_init": 3, "init_sample": 1500, "refine_sample": 0}, sample=xn)
    st = fixed.stats
    # centres = means of their clusters, rounded to 12 significant digits by lloyd (numeric.py)
    np.testing.assert_allclose(st.centers, st.means, rtol=1e-11, atol=1e-12)
    labels = _labels(xn, st.centers)
    assert davies_bouldin(st) == pytest.approx(davies_bouldin_score(xn, labels), rel=1e-9)
    assert calinski_harabasz(st) == pytest.approx(calinski_harabasz_score(xn, labels), rel=1e-9)


def test_pca_from_covariance_equals_sklearn(data):
    xn, xd = data
    on_the_session_scheduler = assign_stats(xd, xn[:3])  # the distributed client's, in a full run
    for source, x in [(on_the_session_scheduler, xn), (None, xn * 3.0 + 1000.0)]:
        # The 1000 offset costs a one-pass covariance (Σxxᵀ − n·m·mᵀ, sklearn's 'covariance_eigh' too) about six
        # digits: there the reference is sklearn's PCA of the centred rows (the two-pass covariance), which our
        # exactly summed Σxxᵀ (fused.moments) meets at 3e-9 and sklearn's own one-pass fit at 2.6e-8 only.
        centre = x.mean(axis=0) if source is None else np.zeros(x.shape[1])
        ours = fit_pca(source if source is not None else x, 2)
        ref = PCA(n_components=2).fit(x - centre)
        np.testing.assert_allclose(ours.transform(x), ref.transform(x - centre), rtol=0, atol=1e-8)
        for attr in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_"):
            np.testing.assert_allclose(getattr(ours, attr), getattr(ref, attr), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ours.mean_, ref.mean_ + centre, rtol=1e-12, atol=1e-12)
        assert ours.noise_variance_ == pytest.approx(ref.noise_variance_, rel=1e-8)
        assert (ours.n_components_, ours.n_features_in_, ours.n_samples_) == (2, 8, len(x))


def test_simplified_silhouette_formula(data):
    xn, _ = data
    centers = xn[[1, 2, 3]]
    got = simplified_silhouette(xn, centers)
    dist = np.sqrt(((xn[:, None, :] - centers[None]) ** 2).sum(-1))
    dist.sort(axis=1)
    a, b = dist[:, 0], dist[:, 1]
    np.testing.assert_allclose(got, (b - a) / np.maximum(a, b), rtol=1e-12)
    assert got.shape == (len(xn),) and simplified_silhouette(xn[:0], centers).shape == (0,)
    with pytest.raises(ValueError):
        simplified_silhouette(xn, centers[:1])


def test_stratified_silhouette_allocation_and_values():
    rng = np.random.default_rng(0)
    sizes = [3000, 800, 60, 5]  # shares: 77%, 21%, 1.5% (≥1%: floor applies), 0.13% (< 1%)
    x = np.vstack([rng.normal(4 * j, 1, (n, 3)) for j, n in enumerate(sizes)])
    labels = np.repeat(np.arange(4), sizes)
    overall, by_cluster, per = stratified_silhouette(x, labels, 500, 100, seed=3)
    drawn = np.flatnonzero(~np.isnan(per))
    counts = np.bincount(labels[drawn], minlength=4)
    assert len(drawn) == 500
    assert counts[2] == 60 and counts[0] >= 100 and counts[1] >= 100  # floors (all 60 of cluster 2)
    np.testing.assert_allclose(per[drawn], silhouette_samples(x[drawn], labels[drawn]), rtol=0, atol=1e-13)
    for j in range(4):
        np.testing.assert_array_equal(by_cluster[j], per[drawn][labels[drawn] == j])
    share = np.array(sizes) / sum(sizes)
    means = np.array([by_cluster[j].mean() if len(by_cluster[j]) else 0 for j in range(4)])
    used = counts > 0
    assert overall == pytest.approx((share[used] * means[used]).sum() / share[used].sum(), rel=1e-12)
    again = stratified_silhouette(x, labels, 500, 100, seed=3)
    np.testing.assert_array_equal(again[2], per)  # seeded


@pytest.mark.parametrize("block", [7, 32, 1000])
def test_silhouette_values_equal_sklearns_silhouette_samples(block):
    """Blocks of rows, labels that are not 0..k-1, a point alone in its cluster, and duplicate points
    (a = b = 0) all give sklearn's values."""
    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(3 * j, 1, (n, 4)) for j, n in enumerate([40, 25, 1, 30])])
    x[5] = x[6] = x[7]
    labels = np.repeat([9, 2, 5, 11], [40, 25, 1, 30])
    got = silhouette_values(x, labels, block=block)
    np.testing.assert_allclose(got, silhouette_samples(x, labels), rtol=0, atol=1e-13)
    assert got[65] == 0.0  # the singleton
    twins = np.vstack([np.zeros((3, 2)), np.ones((3, 2))])
    np.testing.assert_allclose(silhouette_values(twins, [0, 0, 0, 1, 1, 1]),
                               silhouette_samples(twins, [0, 0, 0, 1, 1, 1]), atol=1e-13)


def test_stratified_silhouette_on_everything_is_the_plain_mean():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (120, 2)), rng.normal(5, 1, (80, 2))])
    labels = np.repeat([0, 1], [120, 80])
    overall, _, per = stratified_silhouette(x, labels, 1000, 50, seed=0)
    assert not np.isnan(per).any()
    assert overall == pytest.approx(silhouette_score(x, labels), rel=1e-12)
    # Population counts re-weight the clusters: 9:1 instead of the sample's 3:2.
    weighted, by_cluster, _ = stratified_silhouette(x, labels, 1000, 50, seed=0, population_counts={0: 900, 1: 100})
    assert weighted == pytest.approx(0.9 * by_cluster[0].mean() + 0.1 * by_cluster[1].mean(), rel=1e-12)


def test_bootstrap_stability_jaccard():
    rng = np.random.default_rng(2)
    blobs = np.vstack([rng.normal(c, 0.3, (150, 2)) for c in ([0, 0], [5, 0], [0, 5])])
    ref = KMeans(3, n_init=3, random_state=0).fit(blobs).cluster_centers_
    stable = bootstrap_stability(blobs, 3, ref, rounds=3, seed=1, n_init=3)
    assert min(stable.values()) > 0.95
    # each id is its reference cluster's: a reference centre no point is nearest to has no stability (NaN)
    far = bootstrap_stability(blobs, 4, np.vstack([ref[:1], [[50.0, 50.0]], ref[1:]]), rounds=2, seed=1, n_init=3)
    assert [np.isnan(far[j]) for j in range(4)] == [False, True, False, False]
    # Same computation spelled out with sets, round by round.
    reference = _labels(blobs, ref)
    draw = np.random.default_rng(1)
    expected = np.zeros(3)
    for r in range(3):
        idx = draw.integers(0, len(blobs), len(blobs))
        boot = KMeans(3, n_init=3, random_state=1 + r).fit(blobs[idx]).predict(blobs)
        for j in range(3):
            a = set(np.flatnonzero(reference == j))
            expected[j] += max(len(a & set(np.flatnonzero(boot == c))) / len(a | set(np.flatnonzero(boot == c)))
                               for c in range(3)) / 3
    np.testing.assert_allclose([stable[j] for j in range(3)], expected, rtol=1e-12)
    noise = rng.uniform(0, 1, (450, 2))
    shaky = bootstrap_stability(noise, 8, KMeans(8, n_init=3, random_state=0).fit(noise).cluster_centers_, 3, 1, 3)
    assert min(shaky.values()) < min(stable.values())
    assert [stability_level(v) for v in (0.5, 0.7, 0.9)] == ["unstable", "stable", "highly stable"]


def test_nearest_handles_empty_blocks():
    labels, sq = nearest(np.zeros((0, 3)), np.eye(3))
    assert labels.shape == (0,) and sq.shape == (0,)

