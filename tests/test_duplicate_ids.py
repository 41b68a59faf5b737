"""The cross-part duplicate-Id check and the Id buckets it shares with the month-to-month pair counts,
against pandas on the same rows."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

from mailseg_dist.core import id_buckets
from mailseg_dist.core.id_buckets import default_buckets, joined, repeated_ids, split_by_id
from mailseg_dist.inputs.duplicate_ids import _repeated_across
from mailseg_dist.inputs.schema import ID, SOURCE_ROW


def users_parts(tmp_path, id_kind: str) -> tuple[list[str], pd.DataFrame]:
    """Five written users parts (one empty) of 900 rows whose Ids repeat inside and across parts."""
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 700, 900)  # ~250 Ids seen twice or more, some three or four times
    rows = rng.permutation(np.arange(2, 902))  # source rows in no order across parts
    whole = pd.DataFrame({ID: ids if id_kind == "int" else [f"u{i:04d}" for i in ids], SOURCE_ROW: rows})
    bounds = [0, 300, 300, 520, 610, 900]  # part 1 is empty
    files = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        files.append(str(tmp_path / f"part-{i:05d}.parquet"))
        whole.iloc[lo:hi].to_parquet(files[-1], index=False)
    return files, whole


def pandas_first_rows(whole: pd.DataFrame) -> pd.Series:
    counts = whole[ID].value_counts()
    repeated = whole[whole[ID].isin(counts[counts > 1].index)]
    return repeated.groupby(ID)[SOURCE_ROW].min()


@pytest.mark.parametrize("id_kind", ["int", "text"])
@pytest.mark.parametrize("buckets", [1, 3, 16])
def test_repeated_ids_across_parts_equal_pandas_for_any_bucket_count(tmp_path, id_kind, buckets):
    files, whole = users_parts(tmp_path, id_kind)
    with dask.config.set(scheduler="sync"):
        found = _repeated_across(files, len(whole), buckets)
    expected = pandas_first_rows(whole)
    assert 200 < len(expected) < 400  # the data holds what the check is for
    pd.testing.assert_series_equal(found.sort_index(), expected.sort_index(), check_names=False)


def test_repeated_ids_on_a_distributed_client_with_default_buckets(tmp_path, dask_client):
    files, whole = users_parts(tmp_path, "int")
    found = _repeated_across(files, len(whole))
    pd.testing.assert_series_equal(found.sort_index(), pandas_first_rows(whole).sort_index(), check_names=False)


@pytest.mark.parametrize("as_text", [False, True])
def test_repeated_ids_of_parts_given_as_arrays_and_series_equal_pandas(as_text):
    """As the event-log check hands them over: each part's ids a Series (or an array), one part empty."""
    rng = np.random.default_rng(5)
    parts = [rng.integers(0, 400, n) for n in (250, 0, 120, 300)]
    if as_text:
        parts = [pd.Series([f"e{i}" for i in part], dtype=object) for part in parts]
    whole = pd.concat([pd.Series(p) for p in parts], ignore_index=True)
    expected = sorted(whole[whole.duplicated()].unique())
    with dask.config.set(scheduler="sync"):
        for buckets in (1, 5):
            found = repeated_ids(parts, len(whole), buckets)
            assert sorted(found) == expected and len(found) == len(set(found))
    assert len(expected) > 100


def test_part_groups_are_consecutive_runs_of_about_the_rows_asked():
    parts = list(range(10))
    for rows, per_group, count in ((1000, 2000, 1), (1000, 250, 4), (1000, 1, 10), (0, 100, 1)):
        groups = id_buckets.part_groups(parts, rows, per_group)
        assert [p for g in groups for p in g] == parts and len(groups) == count
        assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert id_buckets.part_groups([], 0, 10) == []


@pytest.mark.parametrize("scheduler", ["sync", "distributed"])
def test_repeated_ids_split_in_runs_of_parts_equal_pandas(scheduler, monkeypatch, request):
    """Runs of several parts (BUCKET_IDS lowered so that 12 parts, two of them empty, make 5 runs) find the
    same repeated Ids as pandas, with text and integer Ids."""
    monkeypatch.setattr(id_buckets, "BUCKET_IDS", 500)
    rng = np.random.default_rng(11)
    sizes = (250, 0, 120, 300, 180, 0, 260, 90, 310, 200, 150, 240)
    numbers = [rng.integers(0, 1500, n) for n in sizes]
    client = request.getfixturevalue("dask_client") if scheduler == "distributed" else None
    for parts in (numbers, [pd.Series([f"u{i}" for i in part], dtype=object) for part in numbers]):
        whole = pd.concat([pd.Series(p) for p in parts], ignore_index=True)
        assert len(id_buckets.part_groups(parts, len(whole), id_buckets.BUCKET_IDS)) == 5
        expected = sorted(whole[whole.duplicated()].unique())
        with dask.config.set(scheduler=client or "sync"):
            for buckets in (1, 7, None):
                found = repeated_ids(parts, len(whole), buckets)
                assert sorted(found) == expected and len(found) == len(set(found))
        assert len(expected) > 200


def test_parts_without_repeats_give_none(tmp_path):
    files, whole = users_parts(tmp_path, "int")
    unique = whole.drop_duplicates(ID)
    unique.to_parquet(files[0], index=False)
    with dask.config.set(scheduler="sync"):
        assert len(_repeated_across(files[:1], len(unique), 4)) == 0


@pytest.mark.parametrize("ids", [np.arange(50, dtype=np.int64) * 7919, np.array([f"id{i}" for i in range(50)],
                                                                                   dtype=object)])
def test_split_by_id_puts_each_id_in_one_bucket_and_keeps_row_order(ids):
    part_a, part_b = ids[:30], ids[20:]  # Ids 20..29 in both parts
    split_a = split_by_id(part_a, 4, np.arange(30))
    split_b = split_by_id(part_b, 4, np.arange(30))
    assert sum(len(piece[0]) for piece in split_a) == 30  # every row in exactly one bucket
    for piece in split_a:
        assert list(piece[0]) == list(part_a[piece[1]])  # the rows' other columns travel with them
        assert list(piece[1]) == sorted(piece[1])  # in their order within the part
    bucket_of = {v: b for b, piece in enumerate(split_a) for v in piece[0]}
    assert all(bucket_of.get(v, b) == b for b, piece in enumerate(split_b) for v in piece[0])
    assert [len(c) for c in joined([], 2)] == [0, 0]


def test_default_buckets_grow_with_the_rows_beyond_the_threads():
    base = default_buckets()  # by the threads of the client, if one is running
    assert default_buckets(base * 1000, rows_per_bucket=1000) == base
    assert default_buckets(base * 1000 + 1, rows_per_bucket=1000) == base + 1
