"""The synthetic generator against the seed's facts (SEED_FACTS.md), its determinism and its writers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mailseg_dist.core.errors import UsageError
from mailseg_dist.inputs import generate as gen
from mailseg_dist.inputs.generate import (
    COLUMNS,
    SEED_CORRELATIONS,
    SEED_MARGINALS,
    SEED_SEGMENTS,
    iter_generated,
    write_generated,
)

ROWS = 200_000
COUNTS = ["send", "bounce", "open", "click", "Total"]


@pytest.fixture(scope="module")
def sample() -> tuple[pd.DataFrame, np.ndarray]:
    """200,000 generated users (seed 42) and their true segments, block by block."""
    blocks = [gen._generate_block(ROWS, 42, b) for b in range(-(-ROWS // gen.BLOCK_ROWS))]
    frame = pd.concat([f for f, _ in blocks], ignore_index=True)
    return frame, np.concatenate([s for _, s in blocks])


@pytest.fixture(scope="module")
def users(sample) -> pd.DataFrame:
    return sample[0]


def test_public_iterator_yields_the_blocks(users):
    assert pd.concat(iter_generated(ROWS, seed=42), ignore_index=True).equals(users)


def test_schema_and_dtypes(users):
    assert list(users.columns) == COLUMNS
    assert all(users[c].dtype == np.int64 for c in COLUMNS[:7])
    assert users["hour"].dtype == np.float64 and users["day_of_week"].dtype == np.float64
    assert len(users) == ROWS


def test_seed_tables_are_consistent():
    assert SEED_SEGMENTS["users"].sum() == 212_292
    assert SEED_SEGMENTS["share"].sum() == pytest.approx(1.0)
    overall_send = (SEED_SEGMENTS["share"] * SEED_SEGMENTS["send"]).sum()
    assert overall_send == pytest.approx(SEED_MARGINALS.loc["mean", "send"], rel=1e-3)


@pytest.mark.parametrize("column", list(SEED_MARGINALS.columns))
def test_overall_means_match_seed(users, column):
    seed_mean = SEED_MARGINALS.loc["mean", column]
    if column == "Comprador":
        assert abs(users[column].mean() - seed_mean) < 0.02
    else:
        assert users[column].mean() == pytest.approx(seed_mean, rel=0.05)


@pytest.mark.parametrize("column", list(SEED_MARGINALS.columns))
def test_overall_stds_match_seed(users, column):
    assert users[column].std() == pytest.approx(SEED_MARGINALS.loc["std", column], rel=0.15)


def test_quartiles_match_seed(users):
    for column in ["send", "Total"]:
        quartiles = users[column].quantile([0.25, 0.5, 0.75]).tolist()
        assert quartiles == SEED_MARGINALS.loc[["25%", "50%", "75%"], column].tolist()
    for column, tol in [("hour", 0.75), ("day_of_week", 0.2)]:
        got = users[column].quantile([0.25, 0.5, 0.75]).to_numpy()
        np.testing.assert_allclose(got, SEED_MARGINALS.loc[["25%", "50%", "75%"], column], atol=tol)


def test_value_constraints(users):
    assert (users[COUNTS] >= 0).all().all()
    assert users["send"].min() == 1 and users["Total"].min() >= 1
    assert set(users["Comprador"].unique()) == {0, 1}
    assert users["hour"].between(0, 23).all() and users["day_of_week"].between(0, 6).all()
    assert (users["Total"] >= users[["send", "bounce", "open", "click"]].sum(axis=1)).all()
    # heavy tails: far beyond the bulk, as the seed's maxima (167, 390) are
    assert users["send"].max() > 60 and users["Total"].max() > 100


def test_averages_are_means_of_total_integer_events(users):
    for column in ["hour", "day_of_week"]:
        event_sum = users[column] * users["Total"]
        assert np.allclose(event_sum, event_sum.round(), atol=1e-6)


def test_other_events_add_about_a_tenth(users):
    extra = users["Total"] - users[["send", "bounce", "open", "click"]].sum(axis=1)
    assert 0.08 < extra.mean() < 0.12


def test_ids_unique_and_spread(users):
    ids = users["Id"]
    assert ids.is_unique
    assert ids.min() >= 0 and ids.max() < 10 * ROWS
    assert ids.mean() == pytest.approx(5 * ROWS, rel=0.02)
    assert ids.quantile(0.25) == pytest.approx(2.5 * ROWS, rel=0.03)


@pytest.mark.parametrize("pair", list(SEED_CORRELATIONS))
def test_correlations_near_seed(users, pair):
    assert users[pair[0]].corr(users[pair[1]]) == pytest.approx(SEED_CORRELATIONS[pair], abs=0.06)


def test_segment_shares(sample):
    _, segment = sample
    shares = np.bincount(segment, minlength=6) / len(segment)
    np.testing.assert_allclose(shares, SEED_SEGMENTS["share"], atol=0.01)


def test_segment_means(sample):
    frame, segment = sample
    columns = ["send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week"]
    got = frame[columns].groupby(segment).mean()
    want = SEED_SEGMENTS[columns]
    # 10 % relative; the absolute 0.01 only matters for means like click 0.001 of segment 3
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0.10, atol=0.01)


def test_deterministic_and_independent_of_chunk_rows():
    small = list(iter_generated(5000, seed=7, chunk_rows=1000))
    assert [len(c) for c in small] == [1000] * 5
    one = pd.concat(small, ignore_index=True)
    assert one.equals(pd.concat(iter_generated(5000, seed=7, chunk_rows=50_000), ignore_index=True))
    assert one.equals(pd.concat(iter_generated(5000, seed=7), ignore_index=True))
    assert not one.equals(pd.concat(iter_generated(5000, seed=8), ignore_index=True))


def test_chunks_cross_internal_blocks_identically():
    rows = gen.BLOCK_ROWS + 30_000
    pieces = list(iter_generated(rows, seed=3, chunk_rows=45_000))
    assert [len(c) for c in pieces] == [45_000, 45_000, 40_000]
    assert all(c.index[0] == 0 for c in pieces)
    whole = pd.concat(iter_generated(rows, seed=3, chunk_rows=rows), ignore_index=True)
    assert pd.concat(pieces, ignore_index=True).equals(whole)


def test_lazy_generation(monkeypatch):
    calls = []
    original = gen._generate_block

    def counting(rows, seed, block):
        calls.append(block)
        return original(rows, seed, block) if block == 0 else pytest.fail("read ahead")

    monkeypatch.setattr(gen, "_generate_block", counting)
    first = next(iter_generated(50_000_000, seed=1, chunk_rows=1000))
    assert len(first) == 1000 and calls == [0]


def _read_back(path, fmt, engine=None) -> pd.DataFrame:
    if fmt == "xlsx":
        return pd.read_excel(path, sheet_name="Sheet1", engine=engine)
    if fmt == "csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt, engine", [("xlsx", "calamine"), ("xlsx", "openpyxl"), ("csv", None),
                                         ("parquet", None)])
def test_formats_round_trip_identical(tmp_path, fmt, engine):
    expected = pd.concat(iter_generated(3000, seed=5), ignore_index=True)
    path = write_generated(tmp_path / f"users.{fmt}", 3000, fmt, seed=5, chunk_rows=700)
    assert path == tmp_path / f"users.{fmt}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"users.{fmt}"]  # no temp file left
    pd.testing.assert_frame_equal(_read_back(path, fmt, engine), expected, check_exact=True)


def test_csv_is_plain_comma_and_dot(tmp_path):
    path = write_generated(tmp_path / "u.csv", 50, "csv", seed=5)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 51
    assert ";" not in path.read_text() and lines[1].count(",") == 8


def test_xlsx_over_excel_limit_refused(tmp_path):
    with pytest.raises(UsageError, match="Excel"):
        write_generated(tmp_path / "big.xlsx", 1_048_576, "xlsx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs", [dict(rows=0), dict(rows=10, fmt="json"), dict(rows=10, chunk_rows=0),
                                    dict(rows=10, seed=-1), dict(rows=2.5)])
def test_bad_arguments_refused(tmp_path, kwargs):
    args = {"path": tmp_path / "x.csv", "fmt": "csv", **kwargs}
    with pytest.raises(UsageError):
        write_generated(**args)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = write_generated(tmp_path / "u.parquet", 100, "parquet")
    before = path.read_bytes()

    def broken(rows, seed, chunk_rows):
        yield from iter_generated(rows, seed, 10)
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "iter_generated", broken)
    with pytest.raises(RuntimeError):
        write_generated(path, 100, "parquet", seed=9)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["u.parquet"]
