"""One compiled loop for a Lloyd pass: scale each feature, find the nearest centre, add to its sums.

Why compiled (numba, which dask-ml already installs): a pass from Parquet read
a 100,000-user unit in 3.4-5 ms on a worker, then spent 2.6 ms building the
scaled float64 matrix (three passes over 6.4 MB) and 3.6 ms in the NumPy kernel
(a GEMM, k comparisons, an indicator GEMM). This loop reads the unit's columns
as Arrow hands them over (int64 counts, float64 hours), scales BLOCK rows at a
time into a buffer that stays in L1 cache, and adds the sums: 1.7 ms for the
same unit and k = 6 (against 6.0 ms for scale + `block_partials`), so a pass is
no longer three times a scan of the columns.

Same numbers as NumPy where it matters: a row's scaled value is
(float64(v) − mean) / scale, the same two IEEE operations `scaler.scale` does
(no fastmath), so a block read from Parquet and one kept in memory give each
row the same features, label and distance. The label is the nearest centre by
the exact squared distance Σ(x − c)², the first one on a tie (as argmin).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np
from numba import literal_unroll, njit

BLOCK = 512  # rows scaled into the buffer at a time: d × 512 float64 = 32 KiB for d = 8
# numba is imported with this module (0.24 s), which callers import only when a pass runs, so a worker that
# never runs one does not pay it. cache=True keeps the machine code beside this file (or in numba's user
# cache when the install is read-only): 1.0 s to compile a signature the first time, 0.15 s to load it after.


def _compiled(function):
    """njit with the on-disk cache where numba finds a writable place for it; without it (it raises
    RuntimeError at decoration when no place is writable, e.g. a read-only install and home) it compiles
    in every process."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return njit(nogil=True)(function)


def _inlined(function):
    """A helper numba inlines into the loops that call it: no machine code of its own to load."""
    return njit(inline="always")(function)


@_compiled
def _fill_block(columns, mean, scale, start, stop, buf):
    """buf[f, :stop − start] = (float64(columns[f][start:stop]) − mean[f]) / scale[f]."""
    f = 0
    for column in literal_unroll(columns):  # one compiled body per column dtype
        mf, sf = mean[f], scale[f]
        for i in range(start, stop):
            buf[f, i - start] = (np.float64(column[i]) - mf) / sf
        f += 1


@_inlined
def _label_block(buf, m, centers, first, stop, dist, best, labels):
    """Nearest of centers[first:stop] for the first m rows of buf (d × BLOCK): the exact squared distance
    Σ(x − c)², added feature by feature; the first centre wins a tie, and keeps a row whose distances are
    all NaN (with a NaN distance, as NumPy's running minimum in `nearest` did)."""
    d = buf.shape[0]
    for j in range(first, stop):
        dist[:m] = 0.0
        for f in range(d):  # feature by feature over contiguous rows: the compiler vectorises it
            c = centers[j, f]
            for i in range(m):
                t = buf[f, i] - c
                dist[i] += t * t
        if j == first:
            best[:m] = dist[:m]
            labels[:m] = first
            continue
        for i in range(m):
            if dist[i] < best[i]:  # strict: the first centre wins a tie
                best[i] = dist[i]
                labels[i] = j


@_inlined
def _add_block(buf, m, centers, offsets, acc, dist, best, labels):
    """Adds the first m rows of buf (d × BLOCK, scaled) to acc for every centre set, row after row."""
    d = buf.shape[0]
    for s in range(offsets.shape[0] - 1):
        _label_block(buf, m, centers, offsets[s], offsets[s + 1], dist, best, labels)
        for i in range(m):
            j = labels[i]
            acc[j, 0] += 1.0
            for f in range(d):
                acc[j, 1 + f] += buf[f, i]
            acc[j, d + 1] += best[i]
            acc[j, d + 2] += np.sqrt(best[i])


@_compiled
def _columns_sums(columns, mean, scale, centers, offsets, acc):
    """acc[j] += (count, Σx, Σd², Σd) of the rows nearest centre j; `columns`: a tuple of d 1-D arrays of
    any numeric dtypes, the unscaled features in model order."""
    n, d = len(columns[0]), mean.shape[0]
    buf = np.empty((d, BLOCK))
    dist, best = np.empty(BLOCK), np.empty(BLOCK)
    labels = np.zeros(BLOCK, dtype=np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        _fill_block(columns, mean, scale, start, stop, buf)
        _add_block(buf, stop - start, centers, offsets, acc, dist, best, labels)


@_compiled
def _nearest(columns, centers, labels, sq):
    """labels[i], sq[i] = nearest centre of row i and its squared distance (`_label_block`'s rule)."""
    n, d = len(columns[0]), centers.shape[1]
    mean, scale = np.zeros(d), np.ones(d)
    buf = np.empty((d, BLOCK))
    dist, best = np.empty(BLOCK), np.empty(BLOCK)
    block_labels = np.zeros(BLOCK, dtype=np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        _fill_block(columns, mean, scale, start, stop, buf)
        _label_block(buf, stop - start, centers, 0, centers.shape[0], dist, best, block_labels)
        labels[start:stop] = block_labels[:stop - start]
        sq[start:stop] = best[:stop - start]


@_inlined
def _two_best_block(buf, m, centers, dist, best, second):
    """The two smallest exact squared distances Σ(x − c)² from each of the first m rows of buf to the
    centres (equal ones counted twice, as sorting them would)."""
    d = buf.shape[0]
    best[:m] = np.inf
    second[:m] = np.inf
    for j in range(centers.shape[0]):
        dist[:m] = 0.0
        for f in range(d):
            c = centers[j, f]
            for i in range(m):
                t = buf[f, i] - c
                dist[i] += t * t
        for i in range(m):
            if dist[i] < best[i]:
                second[i] = best[i]
                best[i] = dist[i]
            elif dist[i] < second[i]:
                second[i] = dist[i]


@_compiled
def _two_nearest(columns, centers, sq1, sq2):
    """sq1[i], sq2[i] = the squared distances from row i to its nearest and second-nearest centres."""
    n, d = len(columns[0]), centers.shape[1]
    mean, scale = np.zeros(d), np.ones(d)
    buf = np.empty((d, BLOCK))
    dist, best, second = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        _fill_block(columns, mean, scale, start, stop, buf)
        _two_best_block(buf, stop - start, centers, dist, best, second)
        sq1[start:stop] = best[:stop - start]
        sq2[start:stop] = second[:stop - start]


LANES = 8  # independent partial sums per product in `_lane_dot`: one vector register, no dependency chain


@_inlined
def _lane_dot(u, v, m, lanes):
    """Σ u[i]·v[i] over i < m, in LANES strided partial sums added in a fixed order: the same bits on every
    call (unlike BLAS, whose order can follow its threads), as fast as `x.T @ x` and more exact (100,000 × 8
    rows offset by 100: 6e-16 relative error against 9.5e-16 for BLAS, both 1.7-1.9 ms)."""
    lanes[:] = 0.0
    full = m - m % LANES
    for i0 in range(0, full, LANES):
        for lane in range(LANES):
            lanes[lane] += u[i0 + lane] * v[i0 + lane]
    for i in range(full, m):
        lanes[i - full] += u[i] * v[i]
    total = 0.0
    for lane in range(LANES):
        total += lanes[lane]
    return total


@_compiled
def _columns_moments(columns, mean, scale, sum_x, sum_xx):
    """sum_x += Σx, sum_xx += Σxxᵀ of the rows x = (columns − mean) / scale, BLOCK rows at a time."""
    n, d = len(columns[0]), mean.shape[0]
    buf = np.empty((d, BLOCK))
    ones, lanes = np.ones(BLOCK), np.empty(LANES)
    for start in range(0, n, BLOCK):
        m = min(start + BLOCK, n) - start
        _fill_block(columns, mean, scale, start, start + m, buf)
        for a in range(d):
            sum_x[a] += _lane_dot(buf[a], ones, m, lanes)
            for b in range(a, d):
                sum_xx[a, b] += _lane_dot(buf[a], buf[b], m, lanes)
    for a in range(d):
        for b in range(a):
            sum_xx[a, b] = sum_xx[b, a]


_READY: set = set()  # (loop, column types) this process has compiled or loaded from the cache


@contextmanager
def _cache_lock(function):
    """Holds an exclusive lock on the loop's cache folder. Why: numba names a new cache entry from the index
    it read, so two processes compiling different signatures at once (a run's two workers, the first time:
    Arrow's read-only columns on one, a kept block's on the other) can each write entry 1, and the index
    then names the other's machine code (numba issue #4807). Nothing to lock without an on-disk cache or
    fcntl (Windows)."""
    folder = getattr(getattr(function, "_cache", None), "_cache_path", None)
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if folder is None or fcntl is None:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "mailseg-fused.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(function, columns: tuple, *args):
    """function(columns, *args); its first call in this process for these column types (a compile, or a load
    from the cache) under `_cache_lock`, later calls (about 10 µs to check) without it."""
    key = (function.__name__, tuple((c.dtype.str, c.flags.writeable) for c in columns))
    if key in _READY:
        return function(columns, *args)
    with _cache_lock(function):
        result = function(columns, *args)
    _READY.add(key)
    return result


def _numeric(column) -> np.ndarray:
    """A column numba can read as it is (integers, floats, booleans), anything else as float64."""
    column = np.ascontiguousarray(column)
    return column if column.dtype.kind in "biuf" else column.astype(np.float64)


def _checked_columns(columns, d: int) -> tuple:
    """The columns as numba reads them, refused unless there are d of one length: the compiled loops do not
    check their indexes, so a wrong shape would read or write past an array instead of raising."""
    columns = tuple(_numeric(c) for c in columns)
    if len(columns) != d or len({len(c) for c in columns}) > 1 or any(c.ndim != 1 for c in columns):
        raise ValueError(f"expected {d} one-dimensional feature columns of one length, found "
                         f"{[c.shape for c in columns]}")
    return columns


class ClusterSums:
    """Per centre set, per cluster: count, Σx, Σd² and Σd of the rows added so far, each row assigned to its
    nearest centre. Rows are added in the order given, so the rows of several units added one unit after
    the other sum to the same bits as the same rows added as one block (a pass from Parquet against one
    over the kept features).

    >>> sums = ClusterSums([np.array([[0.0], [10.0]])], d=1)
    >>> sums.add([np.array([1, 2, 9])], mean=[0.0], scale=[1.0]).per_set()[0]
    array([[2., 3., 5., 3.],
           [1., 9., 1., 1.]])
    """

    def __init__(self, centers_list: list[np.ndarray], d: int):
        shapes = [np.shape(c) for c in centers_list]
        if not shapes or any(len(s) != 2 or s[0] < 1 or s[1] != d for s in shapes):
            raise ValueError(f"expected centre sets of k >= 1 rows and {d} columns, found {shapes}")
        self.d = d
        self.centers = np.ascontiguousarray(np.concatenate(centers_list), dtype=np.float64)
        self.offsets = np.cumsum([0] + [s[0] for s in shapes]).astype(np.int64)
        self.acc = np.zeros((self.centers.shape[0], d + 3))

    def add(self, columns, mean, scale) -> "ClusterSums":
        """Adds the rows x = (columns − mean) / scale; `columns`: d 1-D arrays (unscaled features in model
        order). An already scaled matrix passes its columns with mean 0 and scale 1 (exact: x − 0 = x,
        x / 1 = x)."""
        columns = _checked_columns(columns, self.d)
        mean, scale = (np.ascontiguousarray(v, dtype=np.float64) for v in (mean, scale))
        if mean.shape != (self.d,) or scale.shape != (self.d,):
            raise ValueError(f"expected mean and scale of {self.d} values, found {mean.shape} and {scale.shape}")
        if len(columns[0]):
            _run(_columns_sums, columns, mean, scale, self.centers, self.offsets, self.acc)
        return self

    def per_set(self) -> list[np.ndarray]:
        """A k × (d + 3) array per centre set: count, Σx (d columns), Σd², Σd."""
        return [self.acc[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def cluster_sums(columns, mean, scale, centers_list: list[np.ndarray]) -> list[np.ndarray]:
    """`ClusterSums` of one block of rows."""
    return ClusterSums(centers_list, len(columns)).add(columns, mean, scale).per_set()


def nearest_rows(columns, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, squared distance) of each row's nearest centre, by the rule the sums use; `columns`: the d
    columns of already scaled rows."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[0] < 1:
        raise ValueError(f"expected centres of k >= 1 rows, found shape {centers.shape}")
    columns = _checked_columns(columns, centers.shape[1])
    n = len(columns[0]) if columns else 0
    labels, sq = np.zeros(n, dtype=np.intp), np.zeros(n)
    if n:
        _run(_nearest, columns, centers, labels, sq)
    return labels, sq


def two_nearest(columns, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared distance to the nearest centre, to the second nearest) of each row; `columns`: the d columns
    of already scaled rows; k >= 2 centres."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[0] < 2:
        raise ValueError(f"expected centres of k >= 2 rows, found shape {centers.shape}")
    columns = _checked_columns(columns, centers.shape[1])
    n = len(columns[0]) if columns else 0
    sq1, sq2 = np.zeros(n), np.zeros(n)
    if n:
        _run(_two_nearest, columns, centers, sq1, sq2)
    return sq1, sq2


def moments(columns, mean, scale) -> tuple[np.ndarray, np.ndarray]:
    """(Σx, Σxxᵀ) of the rows x = (columns − mean) / scale, summed in an order fixed by the rows alone.

    Why not `x.sum(axis=0), x.T @ x`: OpenBLAS sums Σxxᵀ in an order that can change from call to call on
    the same block (test_run_score_and_update_on_a_store_equal_the_same_on_disk saw the PCA of one run
    differ by 2e-16 in 1 run of 12), so the same data gave a different model file.

    >>> moments([np.array([1.0, 2.0]), np.array([0.0, 3.0])], [0.0, 0.0], [1.0, 1.0])[1]
    array([[5., 6.],
           [6., 9.]])
    """
    mean, scale = (np.ascontiguousarray(v, dtype=np.float64) for v in (mean, scale))
    d = mean.shape[0]
    columns = _checked_columns(columns, d)
    sum_x, sum_xx = np.zeros(d), np.zeros((d, d))
    if len(columns[0]):
        _run(_columns_moments, columns, mean, scale, sum_x, sum_xx)
    return sum_x, sum_xx


def warm_up(d: int) -> None:
    """Loads (or compiles) the loops for d float64 feature columns, as a pass over kept blocks and the
    client's `nearest` call them: numba's first call in a process costs ~0.17 s of set-up (after its 0.08 s
    import) even when the code is cached. Also `two_nearest`, which only the workers' scoring calls: on a
    machine's first run the client compiles it here, during the fit, into the cache the workers then load
    (else both workers compiled it at the profiles stage: 3.4 s against 0.5 s for that stage at 212,292
    users)."""
    columns = [np.zeros(1) for _ in range(d)]
    cluster_sums(columns, np.zeros(d), np.ones(d), [np.zeros((1, d))])
    moments(columns, np.zeros(d), np.ones(d))
    nearest_rows(columns, np.zeros((1, d)))
    two_nearest(columns, np.zeros((2, d)))


def warm_up_in_background(d: int) -> None:
    """`warm_up` in a daemon thread of this process."""
    threading.Thread(target=warm_up, args=(d,), name="mailseg-numba-warm-up", daemon=True).start()
