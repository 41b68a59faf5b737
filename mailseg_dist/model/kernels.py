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


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, exact squared distance) of each row's nearest centre."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    # Expanded form ‖x‖² − 2x·c + ‖c‖² (one GEMM, as sklearn) picks the label; the distance is then recomputed exactly.
    d2 = -2.0 * x @ centers.T + (centers ** 2).sum(axis=1)
    labels = np.argmin(d2, axis=1)
    sq = ((x - centers[labels]) ** 2).sum(axis=1)
    return labels, sq


def _layout(d: int, ks: list[int]) -> int:
    return 1 + d + d * d + sum(k * (d + 3) for k in ks)


def block_partials(x: np.ndarray, centers_list: list[np.ndarray]) -> np.ndarray:
    """Flat sums of one chunk: n, Σx, Σxxᵀ, then per centre set: counts, Σx per cluster, Σd², Σd."""
    x = np.asarray(x, dtype=np.float64)
    parts = [np.array([x.shape[0]], dtype=np.float64), x.sum(axis=0), (x.T @ x).ravel()]
    for centers in centers_list:
        k = centers.shape[0]
        labels, sq = nearest(x, centers)
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(x.shape[1])], axis=1)
        parts += [np.bincount(labels, minlength=k).astype(np.float64), sums.ravel(),
                  np.bincount(labels, weights=sq, minlength=k), np.bincount(labels, weights=np.sqrt(sq), minlength=k)]
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


def unpack(total: np.ndarray, centers_list: list[np.ndarray]) -> list[ClusterStats]:
    d = centers_list[0].shape[1]
    n, pos = int(round(total[0])), 1
    sum_x, pos = total[pos:pos + d], pos + d
    sum_xx, pos = total[pos:pos + d * d].reshape(d, d), pos + d * d
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


def stats_many(x, centers_list: list[np.ndarray]) -> list[ClusterStats]:
    """ClusterStats for several centre sets from ONE compute (partials tree-summed on the workers)."""
    x = as_array(x)
    centers_list = [np.ascontiguousarray(c, dtype=np.float64) for c in centers_list]
    width = _layout(x.shape[1], [c.shape[0] for c in centers_list])
    partials = x.map_blocks(block_partials, centers_list, chunks=(1, width), dtype=np.float64)
    (total,) = compute(partials.sum(axis=0, split_every=16))
    return unpack(np.asarray(total), centers_list)


def assign_stats(x, centers: np.ndarray) -> ClusterStats:
    return stats_many(x, [centers])[0]
