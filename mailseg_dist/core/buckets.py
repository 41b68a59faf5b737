"""Hash buckets: rows that share a key meet in one task, without a Dask shuffle.

Two jobs need every row with a given Id in one place: the repeated Ids of a month
(inputs.duplicates) and the users of two months joined on Id (model.drift.transitions).
Dask's shuffle (behind `value_counts` and `merge`) costs more than the work at our
sizes (bench/bench_clean.py: the duplicate-Id pass over 10M users 17.9 s that way,
12.8 s this way; 53.2 s against 28.2 s when 1% of the Ids repeat). Instead each partition splits its few key columns into B pieces by a hash
of the key (`pd.util.hash_array`: the same key lands in the same bucket from any
partition) and one task per bucket gets the matching piece of every partition.
B ≈ √(partitions): the graph has partitions × B edges, not partitions², and a bucket
holds about √(partitions) partitions' worth of key columns.
"""

from __future__ import annotations

import math

import dask
import numpy as np
import pandas as pd


def bucket_count(n_parts: int) -> int:
    """Buckets for `n_parts` partitions: about their square root, at least one."""
    return max(1, math.isqrt(max(n_parts, 1)))


def split_by_hash(frame: pd.DataFrame, key: str, buckets: int) -> list[pd.DataFrame]:
    """`frame` cut into `buckets` pieces by the hash of column `key` (the pieces keep every column)."""
    if buckets == 1 or len(frame) == 0:
        return [frame] + [frame.iloc[:0]] * (buckets - 1)
    which = pd.util.hash_array(frame[key].to_numpy()) % np.uint64(buckets)
    return [frame[which == b] for b in range(buckets)]


def _prepare_and_split(part: pd.DataFrame, prepare, key: str, buckets: int) -> list[pd.DataFrame]:
    return split_by_hash(prepare(part), key, buckets)


def bucketed(parts: list, prepare, key: str, buckets: int) -> list[list]:
    """For each bucket, the delayed pieces of every partition: `prepare(part)` (a module-level function
    keeping the few columns needed) cut by the hash of `key`."""
    split = [dask.delayed(_prepare_and_split, nout=buckets)(part, prepare, key, buckets) for part in parts]
    return [[pieces[b] for pieces in split] for b in range(buckets)]
