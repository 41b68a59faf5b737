"""Model inputs (features.py) and the Id-hash sample (sampling.py)."""

from __future__ import annotations

import subprocess
import sys

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_clean_users, split_with_empty

from mailseg_dist.core.errors import UsageError
from mailseg_dist.inputs import sampling
from mailseg_dist.inputs.sampling import U_COLUMN, draw_sample, hash_uniform
from mailseg_dist.core.parquet import table_columns
from mailseg_dist.model.features import feature_frame, feature_matrix, feature_names, raw_columns

SEED8 = ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]


def fcfg(**options) -> dict:
    return {"columns": list(SEED8), "log1p": False, "rates": False, "cyclical": False, **options}


# --- features ---------------------------------------------------------------------------------


def test_default_features_are_the_seed_eight_in_order(clean_users):
    frame = feature_frame(clean_users, fcfg())
    assert feature_names(fcfg()) == SEED8
    assert list(frame.columns) == SEED8
    assert (frame.dtypes == np.float64).all()
    np.testing.assert_array_equal(frame.to_numpy(), clean_users[SEED8].to_numpy(np.float64))


def test_log1p_applies_to_counts_only():
    df = make_clean_users(50)
    frame = feature_frame(df, fcfg(log1p=True))
    assert list(frame.columns) == ["log1p_send", "log1p_bounce", "log1p_open", "log1p_click", "log1p_Total",
                                   "hour", "day_of_week", "log1p_engagement_score"]
    np.testing.assert_allclose(frame["log1p_Total"], np.log1p(df["Total"].astype(float)))
    np.testing.assert_array_equal(frame["hour"], df["hour"])


def test_rates_with_zero_denominators():
    df = make_clean_users(5)
    df.loc[:, ["send", "open", "click", "bounce"]] = [[4, 2, 1, 1], [3, 0, 0, 2], [0, 0, 0, 0], [10, 5, 5, 0], [1, 1, 0, 1]]
    frame = feature_frame(df, fcfg(rates=True))
    assert list(frame.columns[-3:]) == ["open_rate", "click_rate", "bounce_rate"]
    np.testing.assert_allclose(frame["open_rate"], [0.5, 0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(frame["click_rate"], [0.5, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(frame["bounce_rate"], [0.25, 2 / 3, 0.0, 0.0, 1.0])


def test_cyclical_replaces_hour_and_day_in_place():
    df = make_clean_users(4)
    df["hour"] = [0.0, 6.0, 23.9, 24.0]
    df["day_of_week"] = [0.0, 1.75, 3.5, 7.0]
    frame = feature_frame(df, fcfg(cyclical=True))
    assert list(frame.columns) == ["send", "bounce", "open", "click", "Total", "hour_sin", "hour_cos",
                                   "dow_sin", "dow_cos", "engagement_score"]
    np.testing.assert_allclose(frame["hour_sin"], np.sin(2 * np.pi * df["hour"] / 24))
    np.testing.assert_allclose(frame["hour_cos"], np.cos(2 * np.pi * df["hour"] / 24))
    np.testing.assert_allclose(frame["dow_sin"], np.sin(2 * np.pi * df["day_of_week"] / 7))
    # 0h and 24h (Monday and next Monday) land on the same point.
    np.testing.assert_allclose(frame.iloc[0][["hour_sin", "hour_cos"]], frame.iloc[3][["hour_sin", "hour_cos"]], atol=1e-12)
    np.testing.assert_allclose(frame.loc[1, "dow_sin"], 1.0)


def test_all_options_and_empty_frame():
    cfg = fcfg(log1p=True, rates=True, cyclical=True)
    names = feature_names(cfg)
    assert len(names) == 13 and names[-3:] == ["open_rate", "click_rate", "bounce_rate"]
    empty = feature_frame(make_clean_users(10).iloc[0:0], cfg)
    assert list(empty.columns) == names and len(empty) == 0 and (empty.dtypes == np.float64).all()


@pytest.mark.parametrize("rows", [0, 50])
def test_feature_matrix_from_arrow_columns_equals_from_the_frame(rows):
    """The uncached passes build the features from Arrow's arrays (core.parquet.table_columns), not from a
    DataFrame: the same bits with every option on, and for an empty unit."""
    cfg = fcfg(log1p=True, rates=True, cyclical=True)
    df = make_clean_users(50, seed=3).iloc[:rows]
    df.loc[df.index[:5], "open"] = 0  # click_rate's zero denominator
    table = pa.Table.from_pandas(df, preserve_index=False)
    got = feature_matrix(table_columns(table, raw_columns(cfg)), cfg)
    np.testing.assert_array_equal(got, feature_frame(df, cfg).to_numpy())
    assert got.shape == (rows, 13) and got.flags.f_contiguous and got.flags.writeable


def test_raw_columns_and_errors():
    assert raw_columns({"columns": ["hour"], "rates": True}) == ["send", "bounce", "open", "click", "hour"]
    with pytest.raises(UsageError, match="unknown column"):
        feature_names({"columns": ["send", "nope"]})
    with pytest.raises(UsageError, match="at least one"):
        feature_names({"columns": []})
    with pytest.raises(UsageError, match="missing"):
        feature_frame(make_clean_users(5).drop(columns=["hour"]), fcfg())


def test_feature_frame_keeps_index():
    df = make_clean_users(20).iloc[5:12]
    assert feature_frame(df, fcfg()).index.equals(df.index)


# --- hash sample ------------------------------------------------------------------------------


def test_hash_uniform_range_determinism_and_seed():
    ids = pd.Series(np.arange(20000, dtype="int64"))
    u = hash_uniform(ids, 42)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(u, hash_uniform(ids.iloc[::-1], 42)[::-1])  # per value, not per position
    assert not np.array_equal(u, hash_uniform(ids, 43))
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.mean(u < 0.1) - 0.1) < 0.01  # roughly uniform
    assert len(np.unique(u)) == len(u)


def test_hash_uniform_strings_and_across_processes():
    ids = pd.Series(["a1", "B-22", "user 3", "ñandú"], dtype="str")
    local = hash_uniform(ids, 7)
    assert local.min() >= 0 and local.max() < 1
    code = ("import pandas as pd; from mailseg_dist.inputs.sampling import hash_uniform;"
            "print(repr(hash_uniform(pd.Series(['a1','B-22','user 3','ñandú'], dtype='str'), 7).tolist()),"
            " repr(hash_uniform(pd.Series([5, 10**12], dtype='int64'), 7).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.split("] [")
    assert eval(out[0] + "]") == local.tolist()
    assert eval("[" + out[1]) == hash_uniform(pd.Series([5, 10**12], dtype="int64"), 7).tolist()


def _reference_sample(df: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    u = hash_uniform(df["Id"], seed)
    return df.assign(**{U_COLUMN: u}).sort_values([U_COLUMN, "Id"]).head(size).reset_index(drop=True)


@pytest.mark.parametrize("nparts", [1, 4, 7])
def test_draw_sample_is_the_smallest_hashes_whatever_the_partitioning(nparts):
    df = make_clean_users(900, seed=3)
    ddf = split_with_empty(df, nparts) if nparts > 1 else dd.from_pandas(df, npartitions=1)
    got = draw_sample(ddf, 100, seed=5, columns=["send", "hour"])
    want = _reference_sample(df, 100, 5)[["Id", "send", "hour", U_COLUMN]]
    pd.testing.assert_frame_equal(got, want)


def test_draw_sample_all_rows_when_size_exceeds_and_string_ids():
    df = make_clean_users(60, seed=1)
    df["Id"] = ("u" + df["Id"].astype(str)).astype("str")
    got = draw_sample(split_with_empty(df, 3), 1000, seed=1, columns=["send"])
    assert len(got) == 60 and set(got["Id"]) == set(df["Id"])
    assert got[U_COLUMN].is_monotonic_increasing


@pytest.mark.parametrize("ids", ["int", "str"])
def test_table_below_threshold_equals_the_frame_cut(ids):
    """The first pass cuts the sample from the Arrow table: the same users, columns and dtypes as
    `below_threshold` on the pandas frame, and an empty frame when no user is under the cut-off."""
    df = make_clean_users(400, seed=2)
    if ids == "str":
        df["Id"] = "u" + df["Id"].astype(str)
    table = pa.Table.from_pandas(df, preserve_index=False)
    for threshold in (0.1, 0.0):
        got = sampling.table_below_threshold(table, threshold, seed=5)
        want = sampling.below_threshold(df, threshold, 5, list(df.columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
    assert 20 < len(sampling.table_below_threshold(table, 0.1, seed=5)) < 60


def test_draw_sample_widens_a_too_tight_threshold(monkeypatch):
    df = make_clean_users(500, seed=2)
    calls = []

    def tight(size, total, factor):
        calls.append(factor)
        return min(1.0, factor * 0.01)  # keeps ~5 rows at first: not enough

    monkeypatch.setattr(sampling, "sample_threshold", tight)
    got = draw_sample(split_with_empty(df, 4), 50, seed=9, columns=["send"], total=500)
    assert len(calls) > 1
    pd.testing.assert_frame_equal(got, _reference_sample(df, 50, 9)[["Id", "send", U_COLUMN]])


def test_draw_sample_returns_only_about_size_rows_from_workers(monkeypatch):
    """Workers filter: the concatenated partitions hold ~size rows, not the table."""
    df = make_clean_users(5000, seed=4)
    seen = []
    original = sampling.below_threshold

    def spy(part, threshold, seed, columns):
        out = original(part, threshold, seed, columns)
        seen.append(len(out))
        return out

    monkeypatch.setattr(sampling, "below_threshold", spy)
    with dask.config.set(scheduler="sync"):
        draw_sample(split_with_empty(df, 4), 100, seed=1, columns=["send"])
    assert 100 <= sum(seen) < 200
