"""dask_ml.cluster.KMeans: Lloyd on the Dask array.

Initialisation: with model.init = sample (the default) the same k-means++ start
on the hashed sample as lloyd; with model.init = native, dask-ml's own
k-means||. On seed-like data (heavy-tailed counts) k-means|| often finds fewer
than k clusters ("Found fewer than 6 clusters in init") and ends ~10% above
sklearn's inertia, which is why it is not the default.

We never read its `inertia_`: in dask-ml 2025.1.0, `_kmeans_single_lloyd`
recomputes the distances WITHOUT squaring them when it stops on max_iter (or
with a centre shift above 1e-7), so `inertia_` is then the sum of distances,
not of squared distances. The inertia is always recomputed here from the
centres in one pass (quality.assign_stats). Also note: dask-ml's `tol` is an
absolute bound on the squared centre shift (not a relative inertia gain as in
lloyd), and an empty cluster gets its centre at the origin there; such a
cluster is moved to a far sample point here and reported in `history`.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from mailseg_dist.model.engines.lloyd import (
    EngineResult,
    check_k,
    initial_centers,
    relocate_empty,
)
from mailseg_dist.model.kernels import as_array, assign_stats


def _known_nonempty_chunks(x: da.Array) -> da.Array:
    """dask-ml needs known chunk sizes and chokes on zero-row chunks: drop those."""
    if any(np.isnan(c) for c in x.chunks[0]):
        x = x.compute_chunk_sizes()
    keep = [x.blocks[i] for i, rows in enumerate(x.chunks[0]) if rows > 0]
    return keep[0] if len(keep) == 1 else da.concatenate(keep, axis=0)


def _optional_int(value):
    return None if value is None else int(value)  # None: dask-ml's own default


def fit(X, k: int, mcfg: dict, init_centers=None, sample=None) -> EngineResult:
    from dask_ml.cluster import KMeans

    x = _known_nonempty_chunks(as_array(X))
    k = check_k(k, int(x.shape[0]))
    if init_centers is None and mcfg["init"] == "sample" and sample is not None:
        init_centers = initial_centers(sample, k, mcfg)
    model = KMeans(n_clusters=k, init="k-means||" if init_centers is None else np.asarray(init_centers),
                   random_state=int(mcfg["seed"]), init_max_iter=_optional_int(mcfg["daskml_init_max_iter"]),
                   max_iter=int(mcfg["max_iter"]), tol=float(mcfg["tol"]))
    model.fit(x)
    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    stats = assign_stats(x, centers)
    history = []
    if (stats.counts == 0).any():
        history.append(f"empty clusters {np.flatnonzero(stats.counts == 0).tolist()} moved to far sample points")
        centers = relocate_empty(centers, stats.counts, None if sample is None else np.asarray(sample, np.float64))
        stats = assign_stats(x, centers)
    return EngineResult(centers, int(model.n_iter_), history, stats.inertia, stats)
