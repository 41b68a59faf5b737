"""The k-means arithmetic every engine and quality measure shares: nearest centre and per-cluster sums.

`stats_many` sends every chunk through `block_partials`, which assigns each
row to its nearest centre and returns a flat vector of sums; Dask adds the
vectors in a tree and the client receives only O(k·d + d²) numbers. The Lloyd
engine's passes are these sums, so its last pass yields the quality stats for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from mailseg_dist.core.numeric import significant
from mailseg_dist.core.progress import compute


def _columns(x) -> list[np.ndarray]:
    """x's columns as float64 arrays: views of a Fortran-ordered block (the scaled blocks are: feature_matrix
    builds them so), one copy a column otherwise (made here once, not by each loop that reads them)."""
    x = np.asarray(x, dtype=np.float64)
    return [np.ascontiguousarray(x[:, f]) for f in range(x.shape[1])]


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, exact squared distance) of each row's nearest centre, by the rule of the passes' sums
    (fused.py: Σ(x − c)² feature by feature, the first centre on a tie), so the labels the k table and the
    quality measures draw agree with the cluster sizes the passes count."""
    from mailseg_dist.model.fused import nearest_rows  # numba: imported by the processes that use it

    return nearest_rows(_columns(x), centers)


def _layout(d: int, ks: list[int], totals: bool) -> int:
    return 1 + (d + d * d if totals else 0) + sum(k * (d + 3) for k in ks)


def block_partials(x: np.ndarray, centers_list: list[np.ndarray], totals: bool = True) -> np.ndarray:
    """Flat sums of one chunk: n, Σx and Σxxᵀ (with `totals`), then per centre set: counts, Σx per
    cluster, Σd², Σd.

    The per-cluster sums come from the compiled loop (fused.cluster_sums) over x's columns: 2.3 ms for a
    100,000 × 8 block and k = 6, against 4.9 ms for the NumPy steps it replaced (a GEMM for the labels and
    one against their indicator). Σx and Σxxᵀ (fused.moments, in a fixed order), the same on every pass
    over the same rows, are another 1.7 ms: Lloyd asks for them once (`stats_many`)."""
    from mailseg_dist.model.fused import cluster_sums, moments  # numba: imported by the workers that run a pass

    x = np.asarray(x, dtype=np.float64)
    columns, zeros, ones = _columns(x), np.zeros(x.shape[1]), np.ones(x.shape[1])
    sums = cluster_sums(columns, zeros, ones, centers_list)
    return flat_partials(x.shape[0], sums, moments(columns, zeros, ones) if totals else None)


def flat_partials(n: int, sums: list[np.ndarray], totals=None) -> np.ndarray:
    """The 1 × width row `unpack` reads: n, then Σx and Σxxᵀ when `totals` is given, then per centre set
    (a k × (d + 3) array of count, Σx, Σd², Σd per cluster) its columns one after the other."""
    parts = [np.array([n], dtype=np.float64)]
    if totals is not None:
        parts += [totals[0], np.asarray(totals[1]).ravel()]
    for acc in sums:
        d = acc.shape[1] - 3
        parts += [acc[:, 0], acc[:, 1:d + 1].ravel(), acc[:, d + 1], acc[:, d + 2]]
    return np.concatenate(parts)[None, :]


@dataclass
class ClusterStats:
    """Sums over all rows for one set of centres (labels = nearest centre)."""

    centers: np.ndarray   # k × d, the centres rows were assigned to
    n: int
    counts: np.ndarray    # k, rows per cluster
    sums: np.ndarray      # k × d, Σx per cluster
    sq_dist: np.ndarray   # k, Σ‖x − c_j‖² per cluster
    dist: np.ndarray      # k, Σ‖x − c_j‖ per cluster
    sum_x: np.ndarray     # d, Σx over all rows
    sum_xx: np.ndarray    # d × d, Σxxᵀ over all rows

    @property
    def inertia(self) -> float:
        return float(significant(self.sq_dist.sum()))  # partition-independent bits (numeric.py)

    @property
    def means(self) -> np.ndarray:
        """Mean of each cluster's rows (the centre itself for an empty cluster)."""
        safe = np.maximum(self.counts, 1)[:, None]
        return np.where(self.counts[:, None] > 0, self.sums / safe, self.centers)


def unpack(total: np.ndarray, centers_list: list[np.ndarray], totals=None) -> list[ClusterStats]:
    """ClusterStats from the summed partials; `totals` = (Σx, Σxxᵀ) when the blocks left them out."""
    d = centers_list[0].shape[1]
    n, pos = int(round(total[0])), 1
    if totals is None:
        sum_x, pos = total[pos:pos + d], pos + d
        sum_xx, pos = total[pos:pos + d * d].reshape(d, d), pos + d * d
    else:
        sum_x, sum_xx = totals
    out = []
    for centers in centers_list:
        k = centers.shape[0]
        counts, pos = np.rint(total[pos:pos + k]).astype(np.int64), pos + k
        sums, pos = total[pos:pos + k * d].reshape(k, d), pos + k * d
        sq, pos = total[pos:pos + k], pos + k
        dist, pos = total[pos:pos + k], pos + k
        out.append(ClusterStats(np.asarray(centers, dtype=np.float64), n, counts, sums, sq, dist, sum_x, sum_xx))
    return out


def as_array(x) -> da.Array:
    """A Dask array with a single column chunk, from a Dask array, ScaledData, Dask DataFrame or NumPy array."""
    x = getattr(x, "array", x)
    if hasattr(x, "to_dask_array"):
        x = x.to_dask_array(lengths=True)
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x, dtype=np.float64), chunks=(max(len(x), 1), -1))
    return x.rechunk({1: -1}) if x.numblocks[1] > 1 else x


def _reads_parquet(x) -> bool:
    return bool(getattr(x, "reads_parquet", False))  # a ScaledData whose chunks are still read lazily


def pass_input(x):
    """What `stats_many` is best given on every pass: a ScaledData still read from Parquet as it is (each
    pass is then one task a chunk that reads, scales and sums: ScaledData.pass_partials), else `as_array`."""
    return x if _reads_parquet(x) else as_array(x)


def stats_many(x, centers_list: list[np.ndarray], totals=None) -> list[ClusterStats]:
    """ClusterStats for several centre sets from ONE compute (partials tree-summed on the workers).

    `totals`: (Σx, Σxxᵀ) of these same rows from an earlier pass (ClusterStats.sum_x, .sum_xx), which the
    blocks then skip."""
    centers_list = [np.ascontiguousarray(c, dtype=np.float64) for c in centers_list]
    array = as_array(x)
    width = _layout(array.shape[1], [c.shape[0] for c in centers_list], totals is None)
    if _reads_parquet(x):
        partials = x.pass_partials(centers_list, totals is None, width)
    else:
        partials = array.map_blocks(block_partials, centers_list, totals is None, chunks=(1, width),
                                    dtype=np.float64)
    (total,) = compute(partials.sum(axis=0, split_every=16))
    return unpack(np.asarray(total), centers_list, totals)


def assign_stats(x, centers: np.ndarray) -> ClusterStats:
    return stats_many(x, [centers])[0]
