"""Default engine: k-means++ (sklearn, n_init runs) on the hashed sample, then exact Lloyd passes over all rows.

Each pass is ONE Dask compute: every chunk returns k×d sums, counts and
squared distances (kernels.block_partials), tree-summed on the workers; the
client only sees those small vectors. `fit_many` runs several k in the same
passes (one GEMM against all centre sets), so the k search reads the data
max_iter times at most, not once per k.

Stopping: after a pass whose inertia improved on the previous one by less
than `tol` (relative), or when the labels no longer change, or at max_iter.
The returned centres are the ones that pass measured, so `inertia` and
`stats` are exact for them. An empty cluster is moved to the sample point
farthest from its nearest centre (never left at the origin); the pass after
a move does not count for the stopping test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask
import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from mailseg_dist.core.numeric import significant
from mailseg_dist.core.progress import compute
from mailseg_dist.model.kernels import ClusterStats, as_array, nearest, pass_input, stats_many


@dataclass
class EngineResult:
    centers: np.ndarray                 # k × d, in scaled feature space
    n_iter: int                         # passes over the data (or minibatch steps, or dask-ml iterations)
    history: list = field(default_factory=list)  # lloyd: full-data inertia of each pass
    inertia: float | None = None        # full-data inertia of `centers` when the engine measured it
    stats: ClusterStats | None = None   # full-data stats of `centers` when measured


def check_k(k: int, rows: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k expected an integer >= 2, found {k!r}")
    if rows < k:
        raise ValueError(f"k={k} clusters need at least {k} rows, found {rows}")
    return int(k)


def initial_centers(sample: np.ndarray, k: int, mcfg: dict) -> np.ndarray:
    """sklearn KMeans (k-means++, n_init runs, seeded) on the first init_sample rows of the sample, then
    polished by one Lloyd run from there on the first refine_sample rows (cheaper than n_init runs on those)."""
    if sample is None:
        raise ValueError("lloyd needs the scaled hashed sample (or init_centers) to seed its centres")
    sample = np.asarray(sample, dtype=np.float64)
    rows = sample[: int(mcfg["init_sample"])]
    check_k(k, len(rows))
    seed = int(mcfg["seed"])
    # One OpenMP thread: the same floats on any machine, and no spin-wait fight with Dask workers for the cores.
    with threadpool_limits(limits=1):
        centers = KMeans(n_clusters=k, n_init=int(mcfg["n_init"]), random_state=seed).fit(rows).cluster_centers_
        more = sample[: int(mcfg["refine_sample"])]
        if len(more) > len(rows):
            centers = KMeans(n_clusters=k, init=centers, n_init=1, random_state=seed).fit(more).cluster_centers_
    return centers


def seed_centers(sample: np.ndarray | None, ks: list[int], mcfg: dict) -> dict[int, np.ndarray]:
    """`initial_centers` for every k, one task per k, free to run side by side on the workers (or threads).

    Each start is single-threaded (the same floats wherever it runs): nine of them take 5.4 s one after the
    other at 212,292 users. As graph tasks they gained nothing measurable on two workers (k search 5.8 s
    either way, bench/bench_e2e.py): the scheduler keeps most of them with the worker that holds the sample
    key. Scattering the sample to every worker first balanced them (3.2 s) but distributed 2026.8 then
    logged a serialization traceback when the LocalCluster closed. The sample as one graph key also means a
    worker lost meanwhile costs a recomputation, not the run."""
    if len(ks) <= 1:
        return {k: initial_centers(sample, k, mcfg) for k in ks}
    shared = dask.delayed(sample, pure=True)
    largest_first = sorted(ks, reverse=True)  # the longest starts first, so the workers finish together
    # The 200,000-row start sample is 12 MB of graph, over distributed's 10 MB warning ("Sending large graph
    # ...", five lines to the user on every run over 200,000 users). Its advice, a scattered future, is what
    # a lost worker cannot recompute: test_worker_killed_during_fit failed with it. Declined knowingly.
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64MB"}):
        starts = compute(*[dask.delayed(initial_centers, pure=True)(shared, k, mcfg) for k in largest_first])
    return {k: starts[largest_first.index(k)] for k in ks}


def relocate_empty(centers: np.ndarray, counts: np.ndarray, sample: np.ndarray | None) -> np.ndarray:
    """Move each empty cluster's centre to the sample point farthest from every other centre."""
    centers = centers.copy()
    filled = list(np.flatnonzero(counts > 0))
    for j in np.flatnonzero(counts == 0):
        if sample is not None and len(sample):
            _, sq = nearest(sample, centers[filled])
            centers[j] = sample[int(np.argmax(sq))]  # argmax: first of ties, deterministic
        else:
            # No sample: split the largest cluster by nudging a copy of its centre (deterministic).
            big = int(np.argmax(counts))
            centers[j] = centers[big] + 1e-3 * (1 + np.arange(centers.shape[1])) / centers.shape[1]
        filled.append(j)
    return centers


def fit_many(X, ks, mcfg: dict, init_centers: dict | None = None, sample=None) -> dict[int, EngineResult]:
    """Lloyd for every k in `ks` at once; each pass is one compute covering all k still running."""
    x = pass_input(X)
    rows = as_array(x).shape[0]
    ks = sorted({check_k(k, int(rows) if not np.isnan(rows) else k) for k in ks})
    sample = None if sample is None else np.asarray(sample, dtype=np.float64)
    init_centers = init_centers or {}
    seeded = seed_centers(sample, [k for k in ks if k not in init_centers], mcfg)
    state = {k: np.asarray(init_centers[k], dtype=np.float64) if k in init_centers else seeded[k] for k in ks}
    history: dict[int, list] = {k: [] for k in ks}
    moved = {k: False for k in ks}
    done: dict[int, EngineResult] = {}
    max_iter, tol, totals = int(mcfg["max_iter"]), float(mcfg["tol"]), None
    for it in range(1, max_iter + 1):
        running = [k for k in ks if k not in done]
        if not running:
            break
        passed = stats_many(x, [state[k] for k in running], totals)
        totals = (passed[0].sum_x, passed[0].sum_xx)  # the same rows every pass: later passes skip them
        for k, st in zip(running, passed):
            history[k].append(st.inertia)
            new = significant(st.means)  # same bits on any partitioning (numeric.py)
            stalled = len(history[k]) > 1 and not moved[k] and history[k][-2] - st.inertia <= tol * history[k][-2]
            moved[k] = bool((st.counts == 0).any())
            if moved[k]:
                new = relocate_empty(new, st.counts, sample)
            if stalled or it == max_iter or (not moved[k] and np.array_equal(new, state[k])):
                done[k] = EngineResult(state[k], it, history[k], st.inertia, st)
            else:
                state[k] = new
    return {k: done[k] for k in ks}


def fit(X, k: int, mcfg: dict, init_centers=None, sample=None) -> EngineResult:
    init = None if init_centers is None else {int(k): init_centers}
    return fit_many(X, [k], mcfg, init_centers=init, sample=sample)[int(k)]
