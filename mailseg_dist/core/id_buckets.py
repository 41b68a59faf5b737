"""Rows split by a hash of their Id into buckets: a shuffle by hand for work that needs every row of an Id.

Three jobs look at all rows at once by Id: the duplicate-Id checks of the users ingest
(inputs/duplicate_ids.py) and of event logs (inputs/events.py), and an update's "who moved where"
(model/pair_counts.py). Each part's
rows are split into `buckets` pieces by hash(Id) (one task per part, pieces kept on its worker),
and one task per bucket joins its pieces: a row of a given Id lands in the same bucket from every
part, so a bucket sees all rows of its Ids and no other bucket needs them. Dask's own shuffle does
the same with more copies in flight (bench/bench_duplicates.py: at 10M users its task-shuffled
value_counts added 1.3-1.8x the worker memory of `repeated_ids`).
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from mailseg_dist.core.progress import compute

MAX_THREAD_BUCKETS = 64
BUCKET_IDS = 2_000_000  # Ids a `repeated_ids` bucket task holds at most: 8 bytes each, ~4x that while checked


def split_by_id(ids: np.ndarray, buckets: int, *columns: np.ndarray) -> tuple:
    """Per bucket of hash(Id), the tuple (ids, *columns) of its rows, in their order within the part.

    pandas' hash (`pd.util.hash_array`) is the same in every process, so a worker and the next agree on
    the bucket of an Id; a number and its text are different Ids here (callers pick one type)."""
    bucket = (pd.util.hash_array(ids) % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    arrays = [a[order] for a in (ids, *columns)]
    return tuple(tuple(a[lo:hi] for a in arrays) for lo, hi in zip(bounds[:-1], bounds[1:]))


def joined(pieces: list, width: int) -> tuple:
    """One bucket's pieces (tuples of `width` arrays) joined column by column; int64 zeros-length when none."""
    if not pieces:
        return tuple(np.array([], dtype=np.int64) for _ in range(width))
    return tuple(np.concatenate([piece[c] for piece in pieces]) for c in range(width))


def default_buckets(rows: int = 0, rows_per_bucket: int = 1_000_000) -> int:
    """Two buckets per worker thread of the current Dask client (4 without one, at most 64: each bucket is a
    key per part), and more when the rows would put over `rows_per_bucket` in one: a bucket task holds all
    its rows at once, so its memory stays bounded as the data grows. Each part's split costs one key per
    bucket, so more buckets cost time (model/pair_counts.py measures it)."""
    try:
        from distributed import default_client

        by_threads = min(MAX_THREAD_BUCKETS, max(2, 2 * sum(default_client().nthreads().values())))
    except (ImportError, ValueError):
        by_threads = 4
    return max(by_threads, -(-rows // rows_per_bucket))


def _split_ids(parts: list, buckets: int) -> tuple:
    """The Ids of consecutive parts, one piece per bucket for them all: each part split on its own (a part's
    sort and hash in memory at a time, not the run's), then each bucket's pieces joined."""
    pieces = [split_by_id(np.asarray(ids), buckets) for ids in parts]
    return tuple(joined([piece[b] for piece in pieces], 1) for b in range(buckets))


def part_groups(parts: list, rows: int, rows_per_group: int = BUCKET_IDS) -> list[list]:
    """`parts` in runs of consecutive parts of about `rows_per_group` rows in all (`rows` over every part)."""
    if not parts:
        return []
    count = min(len(parts), max(1, -(-rows // rows_per_group)))
    bounds = [len(parts) * g // count for g in range(count + 1)]
    return [parts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _repeated_in_bucket(pieces: list) -> np.ndarray:
    """The Ids seen more than once in one bucket's pieces."""
    (ids,) = joined(pieces, 1)
    return pd.unique(ids[pd.Index(ids).duplicated()])


def repeated_ids(id_parts: list, rows: int, buckets: int | None = None) -> np.ndarray:
    """The Ids seen more than once across `id_parts` (each a part's Ids as a 1-D array or Series, or a Delayed
    that gives one; `rows` of them in all), in one compute: only the repeated Ids come back.

    The Ids of each run of consecutive parts holding about BUCKET_IDS of them (`part_groups`) are split
    into `buckets` pieces (default_buckets(rows, BUCKET_IDS) when not given) and each bucket is checked by
    one task. Why not Dask's value_counts: its task shuffle held the most memory of the whole ingest at 40M
    users with random Ids on 1 GiB workers, and at 10M users took 2.4-3x as long
    (bench/bench_duplicates.py). Why runs of parts, not each part: the pieces are parts x buckets keys, and
    both grow with the rows. On 2 local workers, 600 parts of 20,000 random Ids in 30 buckets took 19-20 s
    split part by part and 2.1 s in 30 runs (1,000 x 50, a 100M-user ingest's counts: 63-72 s, and 9.2 s
    in runs that concatenated their parts first, which also raised the 10M check's worker peak); the
    100M-user ingest's clean went from 145.5 to 86.7 s (bench_e2e.py)."""
    buckets = buckets or default_buckets(rows, BUCKET_IDS)
    split = [dask.delayed(_split_ids, nout=buckets, pure=True)(group, buckets)
             for group in part_groups(list(id_parts), rows, BUCKET_IDS)]
    found = compute(*[dask.delayed(_repeated_in_bucket, pure=True)([parts[b] for parts in split])
                      for b in range(buckets)])
    return np.concatenate(found)
