"""Users counted by (segment before, segment now), two months joined on Id on the workers.

An update's "who moved where" needs every user of both months matched on Id. A Dask outer
merge does it with a full shuffle of both tables; only the counts are wanted, so here each
part is split by a hash of the Id into `buckets` pieces (one task per part, pieces kept on
its worker), and one task per bucket matches its pieces of both months with a hash index and
counts the pairs. Only {(before, now): users} comes back: -1 stands for "not in that month".
`months_pair_counts` does it for two results folders, with buckets sized to the months.
Two months of 10M users on 2 workers (10 buckets): 3.7 s against 8.3 s for the outer merge, same counts
(`python bench/bench_transitions.py`, bench/results/transitions_10000000.json).
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from mailseg_dist.core import id_buckets
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.id_buckets import joined, split_by_id
from mailseg_dist.core.parquet import parquet_files
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import parquet_metadata
from mailseg_dist.inputs.schema import ID

ABSENT = -1  # the cluster of a user missing from one of the months
BUCKET_ROWS = 1_000_000  # users of one month a bucket holds at most (~140 MB a month while matching)


def _ids(part: pd.DataFrame, as_text: bool) -> np.ndarray:
    ids = part[ID].to_numpy()
    return ids.astype(str).astype(object) if as_text else ids


def _split(part: pd.DataFrame, buckets: int, as_text: bool) -> tuple:
    """(ids, clusters) of `part` for each bucket of hash(Id) (core.id_buckets)."""
    return split_by_id(_ids(part, as_text), buckets, part["cluster"].to_numpy(np.int64))


def _tally(then: np.ndarray, now: np.ndarray) -> dict:
    """{(then, now): count} of paired cluster arrays (ABSENT included): one bincount, clusters being few."""
    if len(then) == 0:
        return {}
    width = int(max(then.max(), now.max())) + 2  # ids -1..max, shifted to 0..max+1
    counts = np.bincount((then + 1) * width + (now + 1), minlength=width * width)
    return {(int(code // width) - 1, int(code % width) - 1): int(counts[code]) for code in np.flatnonzero(counts)}


def _unique(ids: np.ndarray, name: str) -> pd.Index:
    """The Ids of one bucket of one month as an index, refused when one repeats (the match would be ambiguous;
    the clean layer keeps Ids unique, a results folder made by hand may not)."""
    index = pd.Index(ids)
    if not index.is_unique:
        repeated = index[index.duplicated()][0]
        raise InputDataError(f"{name}: Id {repeated!r} appears more than once; months are matched on Id, "
                             "which must be unique within a month")
    return index


def _count_bucket(before: list, now: list, names: tuple[str, str]) -> dict:
    """{(cluster before, cluster now): users} of one bucket."""
    ids_before, clusters_before = joined(before, 2)
    ids_now, clusters_now = joined(now, 2)
    _unique(ids_now, names[1])
    where = _unique(ids_before, names[0]).get_indexer(ids_now)  # -1: new this month
    found = where >= 0
    then = np.full(len(ids_now), ABSENT, dtype=np.int64)
    then[found] = clusters_before[where[found]]
    gone = np.ones(len(ids_before), dtype=bool)
    gone[where[found]] = False
    return _tally(np.concatenate([then, clusters_before[gone]]),
                  np.concatenate([clusters_now, np.full(int(gone.sum()), ABSENT, dtype=np.int64)]))


def _pieces(frame: dd.DataFrame, buckets: int, as_text: bool) -> list[list]:
    """Per bucket, the delayed (ids, clusters) pieces of every partition of `frame`."""
    split = [dask.delayed(_split, nout=buckets, pure=True)(part, buckets, as_text) for part in frame.to_delayed()]
    return [[parts[b] for parts in split] for b in range(buckets)]


def default_buckets(rows: int = 0) -> int:
    """core.id_buckets.default_buckets with at most BUCKET_ROWS users of a month a bucket: a bucket task holds
    its rows of both months at ~140 bytes a row while matching. At 10M users (2 × 100 parts, 2 threads),
    measured with fixed counts before this rule, 4 buckets took 2.9-3.0 s, 8 took 3.2 s and 16 took 4.2 s
    (the outer merge then 9.2 s); the rule's 10 buckets took 3.7 s against 8.3 s for the merge
    (bench/results/transitions_10000000.json)."""
    return id_buckets.default_buckets(rows, BUCKET_ROWS)


def pair_counts(before: dd.DataFrame, now: dd.DataFrame, buckets: int | None = None,
                names: tuple[str, str] = ("the previous month", "the new month")) -> dict[tuple[int, int], int]:
    """{(cluster before, cluster now): users} over the union of both months' Ids (columns Id, cluster);
    ABSENT marks the month a user is missing from. An Id read as text one month and as a number the
    other is matched as text; an Id repeated within a month is an InputDataError naming `names`' month.
    `buckets`: default_buckets(). One compute; each bucket's counts are a few dozen numbers."""
    buckets = buckets or default_buckets()
    as_text = before[ID].dtype != now[ID].dtype or not (pd.api.types.is_integer_dtype(before[ID].dtype))
    tasks = [dask.delayed(_count_bucket, pure=True)(b, n, names)
             for b, n in zip(_pieces(before, buckets, as_text), _pieces(now, buckets, as_text))]
    total: dict[tuple[int, int], int] = {}
    for counts in compute(*tasks):
        for pair, users in counts.items():
            total[pair] = total.get(pair, 0) + users
    return total


def _labels(users) -> dd.DataFrame:
    """Id and cluster only, from a results folder (Parquet parts) or a Dask DataFrame."""
    if isinstance(users, dd.DataFrame):
        return users[[ID, "cluster"]]
    return dd.read_parquet([str(p) for p in parquet_files(users)], columns=[ID, "cluster"])


def _rows(users) -> int:
    """Users in a results folder, from the Parquet footers (0 for a Dask DataFrame: not known before reading)."""
    if isinstance(users, dd.DataFrame):
        return 0
    return sum(parquet_metadata(p).num_rows for p in parquet_files(users))


def months_pair_counts(previous_users, users) -> dict[tuple[int, int], int]:
    """pair_counts of two months' per-user results (folders or Dask DataFrames), buckets sized to the larger."""
    months = (previous_users, users)
    names = tuple(default if isinstance(m, dd.DataFrame) else str(m)
                  for m, default in zip(months, ("the previous month", "the new month")))
    return pair_counts(_labels(previous_users), _labels(users), default_buckets(max(map(_rows, months))), names)
