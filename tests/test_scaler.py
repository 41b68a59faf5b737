"""Out-of-core StandardScaler and the lazily scaled matrix read from Parquet."""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users, split_with_empty
from dask.callbacks import Callback
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.parquet import parquet_files, parquet_units
from mailseg_dist.model.features import feature_frame, feature_names
from mailseg_dist.model.scaler import (
    fit_scaler,
    merge_moments,
    scaled_from_ddf,
    scaled_from_parquet,
)

SEED8 = ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]


def fcfg(**options) -> dict:
    return {"columns": list(SEED8), "log1p": False, "rates": False, "cyclical": False, **options}


def _assert_same_scaler(ours: StandardScaler, ref: StandardScaler):
    for attr in ("mean_", "var_", "scale_"):
        np.testing.assert_allclose(getattr(ours, attr), getattr(ref, attr), rtol=1e-9, atol=0)
    assert ours.n_samples_seen_ == ref.n_samples_seen_
    assert ours.n_features_in_ == ref.n_features_in_
    np.testing.assert_array_equal(ours.feature_names_in_, ref.feature_names_in_)


@pytest.mark.parametrize("options", [{}, {"log1p": True}, {"rates": True, "cyclical": True}])
def test_fit_scaler_equals_sklearn_on_pandas(clean_users_ddf, clean_users, options):
    cfg = fcfg(**options)
    ours = fit_scaler(clean_users_ddf, cfg)
    ref = StandardScaler().fit(feature_frame(clean_users, cfg))
    _assert_same_scaler(ours, ref)
    names = feature_names(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "feature names" warning
        got = ours.transform(feature_frame(clean_users, cfg)[names])
    # mean_ is rounded to 12 significant digits (numeric.py): a standardized value near 0 is off by ≤ ~1e-11.
    np.testing.assert_allclose(got, ref.transform(feature_frame(clean_users, cfg)), rtol=1e-9, atol=1e-10)


def test_fit_scaler_is_one_compute(clean_users_ddf):
    starts = []
    with Callback(start=lambda dsk: starts.append(1)), dask.config.set(scheduler="sync"):
        fit_scaler(clean_users_ddf, fcfg())
    assert len(starts) == 1


def test_constant_feature_gets_scale_one_like_sklearn():
    df = make_clean_users(300)
    df["click"] = 0
    df["hour"] = 19.3  # constant but non-zero: float noise must not give a tiny scale
    ours = fit_scaler(split_with_empty(df, 5), fcfg())
    ref = StandardScaler().fit(feature_frame(df, fcfg()))
    _assert_same_scaler(ours, ref)
    assert ours.scale_[SEED8.index("click")] == 1.0 and ours.scale_[SEED8.index("hour")] == 1.0


def test_chan_merge_keeps_precision_with_a_large_offset():
    rng = np.random.default_rng(0)
    x = 1e6 + rng.normal(0, 1.0, (10000, 2))
    parts = np.array_split(x, 7)
    rows = np.array([np.concatenate([[len(p)], p.mean(0), ((p - p.mean(0)) ** 2).sum(0)]) for p in parts])
    n, mean, m2 = merge_moments(rows)
    assert n == 10000
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-13)
    exact = (x - 1e6).var(0)  # subtracting the offset is exact in float64 here
    np.testing.assert_allclose(m2 / n, exact, rtol=1e-9)
    naive = (x ** 2).mean(0) - x.mean(0) ** 2  # the "sums" shortcut loses every digit here
    assert np.all(np.abs(naive / exact - 1) > 1e-7)


def test_empty_table_is_an_input_error():
    empty = dd.from_pandas(make_clean_users(10).iloc[0:0], npartitions=1)
    with pytest.raises(InputDataError, match="no rows"):
        fit_scaler(empty, fcfg())


def test_scaled_from_parquet_matches_transform(users_parquet, clean_users):
    ddf = dd.read_parquet(users_parquet)
    scaler = fit_scaler(ddf, fcfg())
    data = scaled_from_parquet(users_parquet, scaler, fcfg())
    assert data.n_rows == len(clean_users) and data.names == SEED8
    assert data.array.chunks[0] == (200, 200, 200) and [u[2] for u in data.units] == [200, 200, 200]  # empty part skipped
    np.testing.assert_array_equal(data.array.compute(), scaler.transform(clean_users[SEED8]))
    persisted = data.persist()
    np.testing.assert_array_equal(persisted.array.compute(), data.array.compute())


def test_scaled_from_ddf_has_known_chunks(clean_users_ddf, clean_users):
    scaler = fit_scaler(clean_users_ddf, fcfg())
    x = scaled_from_ddf(clean_users_ddf, scaler, fcfg())
    assert not any(np.isnan(c) for c in x.chunks[0])
    np.testing.assert_array_equal(x.compute(), scaler.transform(clean_users[SEED8]))


def test_parquet_files_skip_temporaries_and_report_missing(tmp_path, users_parquet):
    (users_parquet / ".part-x.parquet.tmp.parquet").write_bytes(b"junk")
    (users_parquet / "_metadata.parquet").write_bytes(b"junk")
    files = parquet_files(users_parquet)
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert sum(u[2] for u in parquet_units(files)) == 600
    with pytest.raises(InputDataError, match="not found"):
        parquet_files(tmp_path / "nope")
    (tmp_path / "void").mkdir()
    with pytest.raises(InputDataError, match="no Parquet"):
        parquet_files(tmp_path / "void")


def test_row_groups_become_chunks(tmp_path, clean_users):
    path = tmp_path / "one.parquet"
    clean_users.to_parquet(path, index=False, row_group_size=250)
    scaler = StandardScaler().fit(clean_users[SEED8])
    data = scaled_from_parquet(path, scaler, fcfg())
    assert data.array.chunks[0] == (250, 250, 100)
    np.testing.assert_allclose(data.array.compute(), scaler.transform(clean_users[SEED8]), rtol=1e-12)
    assert isinstance(pd.DataFrame(data.array.compute()), pd.DataFrame)
