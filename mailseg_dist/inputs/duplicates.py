"""Repeated Ids among the valid rows of a month, found by hash buckets on the workers.

`cleaning.duplicate_ids: keep_first` keeps, for an Id on several valid rows, the
row that came first in the file (lowest source row) and rejects the others. To
know which rows lose, every valid (Id, source row) pair must meet the others
with the same Id, wherever they were read: core.buckets puts them in one task per
bucket, which returns only the repeated Ids with their first row (small; usually
empty). It replaces a Dask `value_counts` on the Id column, which shuffled every Id and
needed a second pass to place the repeated ones. `python bench/bench_clean.py` (LocalCluster of
2 single-thread workers, median of 3; bench/results/clean_<rows>.json): 1M users 2.9 s → 1.9 s,
with 1% of Ids repeated across parts 5.4 s → 2.1 s; 10M users 17.9 s → 12.8 s, and 53.2 s →
28.2 s with 1% repeated (the machine also running the test suite).
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import pandas as pd

from mailseg_dist.core.buckets import bucket_count, bucketed
from mailseg_dist.core.progress import compute
from mailseg_dist.inputs.schema import ID, SOURCE_ROW


def _valid_pairs(coerced: pd.DataFrame) -> pd.DataFrame:
    """The partition's valid (Id, source row) pairs."""
    return coerced.loc[coerced["_reason"].isna(), [ID, SOURCE_ROW]]


def _bucket_first_rows(pieces: list[pd.DataFrame]) -> pd.Series:
    """Id → lowest source row, for the Ids of one bucket that occur on more than one valid row."""
    pairs = pd.concat(pieces, ignore_index=True)
    repeated = pairs[pairs[ID].duplicated(keep=False)]
    return repeated.groupby(ID)[SOURCE_ROW].min()


def duplicate_first_rows(coerced: dd.DataFrame) -> pd.Series:
    """Id → lowest source row among the valid rows, for every Id on more than one of them (small)."""
    parts = coerced.to_delayed()
    buckets = bucketed(parts, _valid_pairs, ID, bucket_count(len(parts)))
    results = [r for r in compute(*[dask.delayed(_bucket_first_rows)(pieces) for pieces in buckets]) if len(r)]
    if not results:
        return pd.Series(dtype="int64", name=SOURCE_ROW)
    return pd.concat(results).sort_index()
