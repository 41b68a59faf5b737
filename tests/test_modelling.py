"""The modelling stage end to end: users Parquet → ModelResult, checked against scikit-learn."""

from __future__ import annotations

import copy
import pickle

import dask
import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.model.features import feature_frame
from mailseg_dist.model.modelling import ModelResult, build_model, fit_segments
from mailseg_dist.model.selection import choose_k
from mailseg_dist.segments.texts import k_reason_text


def write_users(folder, df: pd.DataFrame, nparts: int):
    """The clean layer on disk: `nparts` part files plus an empty one."""
    folder.mkdir(parents=True)
    for i, idx in enumerate(np.array_split(np.arange(len(df)), nparts)):
        df.iloc[idx].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    df.iloc[0:0].to_parquet(folder / f"part-{nparts:05d}.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def users():
    return make_clean_users(3000, seed=21)


@pytest.fixture(scope="module")
def folder4(tmp_path_factory, users):
    return write_users(tmp_path_factory.mktemp("m") / "users4", users, 4)


@pytest.fixture(scope="module")
def two_workers():
    """2 workers × 1 thread over TCP (conftest's dask_client fails to start here: inproc + host="127.0.0.1")."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp") as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def cfg():
    cfg = load_config()
    cfg["model"].update(k_min=2, k_max=5, n_init=4)
    cfg["selection"].update(silhouette_sample=800, silhouette_min_per_cluster=50)
    cfg["quality"].update(bootstrap_rounds=2, bootstrap_sample=1500)
    return cfg


def scaled_all(result: ModelResult, df: pd.DataFrame, cfg) -> np.ndarray:
    return result.scaler.transform(feature_frame(df, cfg["features"])[result.feature_names])


@pytest.fixture(scope="module")
def auto(folder4, cfg):
    with dask.config.set(scheduler="threads"):
        return fit_segments(folder4, cfg)


def test_auto_k_result_is_consistent_with_sklearn(auto, users, cfg):
    r = auto
    x = scaled_all(r, users, cfg)
    labels = r.model.predict(x)
    assert r.n_rows == 3000 and r.engine == "lloyd" and r.k == choose_k(r.k_table, 1)[0]
    assert [row["k"] for row in r.k_table] == [2, 3, 4, 5] and r.k_reason["rule"] == "knee" and r.k_reason["k"] == r.k
    assert r.cluster_sizes == {j: int(c) for j, c in enumerate(np.bincount(labels, minlength=r.k))}
    np.testing.assert_array_equal(r.model.cluster_centers_, r.centers)
    np.testing.assert_array_equal(r.model.predict(r.centers), np.arange(r.k))
    assert r.inertia == pytest.approx(-r.model.score(x), rel=1e-10) and r.model.inertia_ == r.inertia
    assert r.model.n_iter_ == r.n_iter >= 1
    assert r.calinski_harabasz == pytest.approx(calinski_harabasz_score(x, labels), rel=1e-9)
    assert r.davies_bouldin == pytest.approx(davies_bouldin_score(x, labels), rel=1e-3)  # exact at a fixed point
    chosen = next(row for row in r.k_table if row["k"] == r.k)
    assert chosen["inertia"] == r.inertia and chosen["silhouette"] == r.silhouette
    assert sum(chosen["sizes"]) == 3000
    np.testing.assert_allclose(r.pca.transform(x), PCA(2).fit(x).transform(x), atol=1e-8)
    assert sorted(r.silhouette_by_cluster) == np.unique(labels).tolist()  # the clusters users fall in
    assert all(0 <= v <= 1 for v in r.stability.values()) and -1 <= r.silhouette <= 1
    assert set(r.timings) >= {"read", "k_search", "final_fit", "quality"}  # one read: scaler, sample, cache


def test_sample_frame_for_figures(auto, users, cfg):
    s = auto.sample
    assert len(s) == 3000  # small table: the whole of it (init_sample is 100,000)
    assert {"Id", "Comprador", "label", "silhouette", "pca1", "pca2", *auto.feature_names} <= set(s.columns)
    assert "_u" not in s.columns and s["Id"].is_unique
    x = auto.scaler.transform(s[auto.feature_names])
    np.testing.assert_array_equal(s["label"], auto.model.predict(x))
    np.testing.assert_allclose(s[["pca1", "pca2"]], auto.pca.transform(x), atol=1e-12)
    assert s["silhouette"].notna().sum() == 800
    pickle.loads(pickle.dumps((auto.model, auto.scaler, auto.pca)))  # the export stage joblib-dumps these


def test_same_result_on_any_partitioning_and_scheduler(tmp_path, users, cfg, auto, two_workers):
    small = copy.deepcopy(cfg)
    one = write_users(tmp_path / "users1", users, 1)
    with dask.config.set(scheduler="sync"):
        single = fit_segments(one, small)
    from distributed import get_task_stream

    with get_task_stream(two_workers) as stream:
        distributed = fit_segments(tmp_path / "users1", small, client=two_workers)
    assert len({t["worker"] for t in stream.data}) == 2  # the work really ran on both workers
    x = scaled_all(auto, users, cfg)
    for other in (single, distributed):
        assert other.k == auto.k
        np.testing.assert_allclose(other.centers, auto.centers, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(other.model.predict(x), auto.model.predict(x))
        assert [row["k"] for row in other.k_table] == [row["k"] for row in auto.k_table]
    assert distributed.cached  # auto: tiny data fits easily in the workers' memory


@pytest.mark.parametrize("engine", ["lloyd", "minibatch", "daskml"])
def test_each_engine_within_one_percent_of_sklearn(folder4, users, cfg, engine):
    fixed = copy.deepcopy(cfg)
    fixed["model"].update(engine=engine, k=3, minibatch_batch_size=256)
    with dask.config.set(scheduler="threads"):
        r = fit_segments(folder4, fixed)
    x = scaled_all(r, users, fixed)
    best = KMeans(3, n_init=10, random_state=0).fit(x).inertia_
    assert r.engine == engine and r.k == 3 and r.k_reason == {"rule": "fixed", "k": 3} and len(r.k_table) == 1
    assert r.inertia == pytest.approx(-r.model.score(x), rel=1e-10)
    assert r.inertia <= best * 1.01
    assert r.cluster_sizes == {j: int(c) for j, c in enumerate(np.bincount(r.model.predict(x), minlength=3))}


def test_string_ids_and_cache_off(tmp_path, users, cfg):
    df = users.assign(Id=("u" + users["Id"].astype(str)).astype("str"))
    folder = write_users(tmp_path / "users", df, 3)
    off = copy.deepcopy(cfg)
    off["model"].update(k=3, cache_features=False)
    with dask.config.set(scheduler="threads"):
        r = fit_segments(folder, off)
    assert not r.cached and r.sample["Id"].str.startswith("u").all()
    assert r.inertia <= KMeans(3, n_init=10, random_state=0).fit(scaled_all(r, df, off)).inertia_ * 1.01


def test_input_errors(tmp_path, users, cfg):
    with pytest.raises(InputDataError, match="not found"):
        fit_segments(tmp_path / "missing", cfg)
    no_hour = write_users(tmp_path / "nohour", users.drop(columns=["hour"]), 2)
    with pytest.raises(InputDataError, match="hour"):
        fit_segments(no_hour, cfg)
    tiny = write_users(tmp_path / "tiny", users.head(4), 2)
    with pytest.raises(InputDataError, match="cannot make 5 clusters"):
        fit_segments(tiny, cfg)
    clones = write_users(tmp_path / "clones", pd.concat([users.head(1)] * 50).assign(Id=np.arange(50)), 2)
    with pytest.raises(InputDataError, match="distinct"):
        fit_segments(clones, cfg)
    bad = copy.deepcopy(cfg)
    bad["model"]["engine"] = "spectral"
    with pytest.raises(ValueError, match="model.engine"):
        fit_segments(tiny, bad)


def test_build_model_refuses_duplicate_centres():
    centers = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    model = build_model(centers, 12.5, 4, seed=0)
    assert model.inertia_ == 12.5 and model.n_iter_ == 4 and not hasattr(model, "labels_")
    np.testing.assert_array_equal(model.predict(centers), [0, 1, 2])
    with pytest.raises(RuntimeError, match="distinct"):
        build_model(np.array([[0.0, 0.0], [0.0, 0.0]]), 1.0, 1, seed=0)


def test_k_searched_on_a_hashed_sample_then_fitted_on_every_user(tmp_path, cfg, two_workers):
    """Above selection.search_rows users the k search runs on that many hashed-sample rows and only the chosen
    k is fitted on every user: its inertia within 0.1% of that k fitted on every user from the start, the
    search's per-user inertia within 2% of the full search's for every k, the same result on any partitioning
    and on two workers. (Which k wins a near tie of silhouettes may differ from a search on every user.)"""
    users = make_clean_users(40_000, seed=5)
    folder = write_users(tmp_path / "users5", users, 5)
    small = copy.deepcopy(cfg)
    small["model"].update(init_sample=2000, refine_sample=2000)
    on_sample = copy.deepcopy(small)
    on_sample["selection"]["search_rows"] = 4000
    with dask.config.set(scheduler="threads"):
        every = fit_segments(folder, small)
        sampled = fit_segments(folder, on_sample)
        fixed = copy.deepcopy(small)
        fixed["model"]["k"] = sampled.k
        same_k = fit_segments(folder, fixed)
    assert "search_rows" not in every.k_reason
    assert sampled.k_reason["search_rows"] == 4000 and sampled.k_reason["n_rows"] == 40_000
    assert "hashed sample of 4,000 of the 40,000 users" in k_reason_text(sampled.k_reason, "en")
    assert "muestra (por hash) de 4,000 de los 40,000" in k_reason_text(sampled.k_reason, "es")
    assert abs(sampled.inertia - same_k.inertia) <= 1e-3 * same_k.inertia
    assert [sum(row["sizes"]) for row in sampled.k_table] == [4000] * 4  # the table is the search's
    for mine, theirs in zip(sampled.k_table, every.k_table):
        assert mine["k"] == theirs["k"]
        assert abs(mine["inertia"] / 4000 - theirs["inertia"] / 40_000) <= 0.02 * theirs["inertia"] / 40_000
    x = scaled_all(sampled, users, cfg)
    assert sampled.inertia == pytest.approx(-sampled.model.score(x), rel=1e-10)  # the final fit: every user
    assert sampled.cluster_sizes == dict(enumerate(np.bincount(sampled.model.predict(x)).tolist()))
    other = fit_segments(write_users(tmp_path / "users1", users, 1), on_sample, client=two_workers)
    assert other.k == sampled.k and other.k_reason == sampled.k_reason
    np.testing.assert_allclose(other.centers, sampled.centers, rtol=0, atol=1e-10)
