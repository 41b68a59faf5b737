"""A deterministic sample of users chosen by a hash of their Id, the same on any partitioning.

Each user gets u = hash(Id, seed) in [0, 1); the sample of size m is the m
users with the smallest u (ties broken by Id). That set depends only on the
Ids and the seed, never on partition order, worker count or file layout, and
any prefix of it is itself a uniform random sample (used for nested samples).

Workers keep rows with u below a threshold chosen with a safety margin, so
only about m rows come back to the client, where they are sorted and cut.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mailseg_dist.core.progress import compute
from mailseg_dist.inputs.schema import ID

U_COLUMN = "_u"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads consecutive seeds apart


def hash_uniform(ids: pd.Series, seed: int) -> np.ndarray:
    """u in [0, 1) per Id: pandas' stable hash of the value, mixed with the seed and hashed again.

    pandas hashes strings with SipHash under a fixed key and integers
    arithmetically, so the value is identical across processes and machines.
    """
    ids = pd.Series(ids).reset_index(drop=True)
    first = pd.util.hash_pandas_object(ids, index=False, categorize=False).to_numpy(np.uint64)
    with np.errstate(over="ignore"):
        mixed = first ^ (np.uint64(int(seed) % 2**64) * _GOLDEN)
    second = pd.util.hash_array(mixed)
    # Top 53 bits → a double in [0, 1) with no rounding up to 1.0.
    return (second >> np.uint64(11)).astype(np.float64) / float(2**53)


def below_threshold(part: pd.DataFrame, threshold: float, seed: int, columns: list[str]) -> pd.DataFrame:
    u = hash_uniform(part[ID], seed)
    keep = part.loc[u < threshold, columns].copy()
    keep[U_COLUMN] = u[u < threshold]
    return keep


def table_hashes(table, seed: int) -> np.ndarray:
    """`hash_uniform` of the Id column of a pyarrow Table or RecordBatch, seen as pandas would give it (the
    same u as the users' pandas frames get)."""
    return hash_uniform(table.column(ID).to_pandas(), seed)


def table_below_threshold(table, threshold: float, seed: int) -> pd.DataFrame:
    """`below_threshold` of a pyarrow Table (every column kept): only the rows under the cut-off, about
    size/total of them, are converted to pandas (`table_hashes`)."""
    u = table_hashes(table, seed)
    under = u < threshold
    keep = table.filter(under).to_pandas()
    keep[U_COLUMN] = u[under]
    return keep


def sample_threshold(size: int, total: int, factor: float) -> float:
    """u cut-off that keeps `size` rows with a margin of ~6 standard deviations of Binomial(total, t)."""
    expected = size + 6.0 * math.sqrt(size) + 10.0
    return min(1.0, factor * expected / max(total, 1))


def draw_sample(ddf, size: int, seed: int, columns: list[str] | None = None,
                total: int | None = None) -> pd.DataFrame:
    """The `size` users with the smallest hash (all users when fewer), sorted by (u, Id), index 0..m-1.

    `columns` are the columns to return (Id always first); `total` is the row
    count when already known (saves one pass). The result holds `_u`.
    """
    if size < 0:
        raise ValueError(f"sample size expected >= 0, found {size}")
    columns = [ID] + [c for c in (columns if columns is not None else list(ddf.columns)) if c != ID]
    total = int(len(ddf)) if total is None else int(total)
    meta = ddf._meta[columns].assign(**{U_COLUMN: np.float64(0)})
    factor = 1.0
    while True:
        threshold = sample_threshold(size, total, factor)
        (kept,) = compute(ddf.map_partitions(below_threshold, threshold, seed, columns, meta=meta))
        if len(kept) >= min(size, total) or threshold >= 1.0:
            break
        factor *= 2.0  # a ~1e-9 event: fewer rows than needed under the cut-off, widen it
    kept = kept.sort_values([U_COLUMN, ID], kind="mergesort").head(size)
    return kept.reset_index(drop=True)
