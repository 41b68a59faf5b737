"""StandardScaler fitted out of core, and the lazily scaled feature matrix the engines read.

`fit_scaler` makes ONE pass: each partition returns (n, mean, M2) of its
features and the client merges them with Chan et al.'s pairwise formula,
which keeps full precision where "sum of squares minus square of sums" loses
digits on large counts. The result is a genuine sklearn StandardScaler.

`ScaledData` is the matrix of scaled features, one Dask chunk per Parquet row
group, with row counts read from the Parquet footers (no pass needed). Workers
read the files; nothing but small aggregates comes back to the client.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.numeric import significant
from mailseg_dist.core.parquet import parquet_files, parquet_units, read_group_table, table_columns
from mailseg_dist.core.progress import compute
from mailseg_dist.model.features import feature_frame, feature_matrix, feature_names, feature_sources, raw_columns
from mailseg_dist.model.kernels import block_partials, flat_partials

_EPS = np.finfo(np.float64).eps


def moments_row(x: np.ndarray) -> np.ndarray:
    """[n, mean..., M2...] of the rows of x (zeros when it has none)."""
    n = x.shape[0]
    mean = x.mean(axis=0) if n else np.zeros(x.shape[1])
    m2 = ((x - mean) ** 2).sum(axis=0)
    return np.concatenate([[n], mean, m2])


def _moments(part: pd.DataFrame, fcfg: dict) -> pd.DataFrame:
    return pd.DataFrame([moments_row(feature_frame(part, fcfg).to_numpy())])


def merge_moments(rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, mean, M2) of the union of partitions from rows [n, mean..., M2...] (Chan et al. 1979)."""
    d = (rows.shape[1] - 1) // 2
    n, mean, m2 = 0, np.zeros(d), np.zeros(d)
    for row in rows:
        nb, mb, m2b = int(row[0]), row[1:1 + d], row[1 + d:]
        if nb == 0:
            continue
        total = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta ** 2 * (n * nb / total)
        n = total
    return n, mean, m2


def scaler_from_moments(n: int, mean: np.ndarray, var: np.ndarray, names: list[str]) -> StandardScaler:
    """A fitted StandardScaler with every attribute sklearn's own fit sets."""
    scaler = StandardScaler()
    # Rounded (numeric.significant): k-means++ on the sample would amplify last-bit differences between partitionings.
    scaler.mean_ = significant(np.asarray(mean, dtype=np.float64))
    scaler.var_ = significant(np.asarray(var, dtype=np.float64))
    # sklearn's near-constant rule (preprocessing._data._is_constant_feature): such features keep scale 1.
    constant = scaler.var_ <= n * _EPS * scaler.var_ + (n * scaler.mean_ * _EPS) ** 2
    scaler.scale_ = np.where(constant, 1.0, np.sqrt(scaler.var_))
    scaler.n_samples_seen_ = int(n)
    scaler.n_features_in_ = len(names)
    scaler.feature_names_in_ = np.asarray(names, dtype=object)
    return scaler


def fit_scaler(ddf, fcfg: dict) -> StandardScaler:
    """StandardScaler of `feature_frame(ddf)`, in one compute; equals sklearn's fit on the whole table."""
    names = feature_names(fcfg)
    meta = pd.DataFrame([np.zeros(1 + 2 * len(names))])
    (rows,) = compute(ddf[raw_columns(fcfg)].map_partitions(_moments, fcfg, meta=meta))
    n, mean, m2 = merge_moments(rows.to_numpy(np.float64))
    if n == 0:
        raise InputDataError("cannot fit the scaler: the users table has no rows")
    return scaler_from_moments(n, mean, m2 / n, names)


def scale(df, scaler: StandardScaler, fcfg: dict) -> np.ndarray:
    """Scaled features as a Fortran-ordered float64 array; same arithmetic as scaler.transform
    (x - mean_) / scale_, done in place on `feature_matrix`'s fresh array: a 100,000-row unit in ~3 ms
    (feature_matrix's 2.2 ms included) instead of ~14 through a DataFrame and two new arrays.
    `df`: as feature_matrix's."""
    features = feature_matrix(df, fcfg)
    features -= scaler.mean_
    features /= scaler.scale_
    return features


# --- the scaled matrix, read from Parquet by the workers ---------------------------------------


GROUP_PARTS = 16          # features kept in worker memory: this many blocks, whatever the units,
GROUP_ROWS = 1 << 20      # ... of about at most this many rows (8 MiB a feature) each


def scaled_unit(unit, scaler: StandardScaler, fcfg: dict) -> np.ndarray:
    return scaled_units([unit], scaler, fcfg)


def _raw_columns_of(group: list, fcfg: dict) -> dict:
    """The users-table columns the features need, of consecutive units, as NumPy arrays (one read)."""
    columns = raw_columns(fcfg)
    return table_columns(read_group_table(group, columns), columns)


def scaled_units(group: list, scaler: StandardScaler, fcfg: dict) -> np.ndarray:
    """The scaled features of consecutive units, as one block."""
    return scale(_raw_columns_of(group, fcfg), scaler, fcfg)


def group_partials(group: list, scaler: StandardScaler, fcfg: dict, centers_list: list[np.ndarray],
                   totals: bool) -> np.ndarray:
    """`block_partials(scaled_units(group, ...))` without the scaled block: the units are read one at a time
    (a unit's memory, not a group's) and the compiled loop scales their columns as Arrow hands them over
    (fused.py), adding row after row as over the kept block, so the sums have the same bits. The first
    pass, which also wants Σx and Σxxᵀ (`totals`), builds each unit's block instead.

    Why a group a task: 10M users in 100 units, k = 6, 2 workers: a pass from Parquet took 1.11 s against
    0.39 s for a pyarrow scan of the columns (2.84×) with a NumPy block a unit, 0.64 s with the compiled
    loop a unit, of which ~0.3 s went to scheduling 300 tasks (a part, its sum, the tree)."""
    from mailseg_dist.model.fused import ClusterSums  # numba: imported by the workers that run a pass

    if totals:
        return sum(block_partials(scaled_unit(unit, scaler, fcfg), centers_list, True) for unit in group)
    sums, rows = ClusterSums(centers_list, len(scaler.mean_)), 0
    for unit in group:
        sources = feature_sources(_raw_columns_of([unit], fcfg), fcfg)
        sums.add(sources, scaler.mean_, scaler.scale_)
        rows += len(sources[0])
    return flat_partials(rows, sums.per_set())


def units_rows(units: list) -> int:
    """Rows of a list of (path, row group, rows) units."""
    return sum(unit[2] for unit in units)


def unit_groups(units: list, parts: int = GROUP_PARTS) -> list[list]:
    """Consecutive units gathered into `parts` groups of about equal rows (more when a group would pass
    GROUP_ROWS; a unit is never split, so a group holds at least one).

    Why: a Lloyd pass is one task per block, and distributed spends ~4 ms on each here (2 cores shared with
    the scheduler): 100 blocks of 100,000 users took 0.38-0.60 s with a kernel that does nothing, against
    ~0.5 s of arithmetic. Used where the features are kept in worker memory, which already bounds a block."""
    total = units_rows(units)
    parts = max(parts, -(-total // GROUP_ROWS))
    groups: dict[int, list] = {}
    start = 0
    for unit in units:
        groups.setdefault(start * parts // max(total, 1), []).append(unit)  # by the unit's first row
        start += unit[2]
    return list(groups.values())


def chunk_units(units: list, grouped: bool) -> list[list]:
    """The units of each chunk of the scaled array: `unit_groups` when `grouped` (features kept in memory),
    else one unit a chunk."""
    return unit_groups(units) if grouped else [[unit] for unit in units]


@dataclass(frozen=True)
class ScaledData:
    """Scaled features of every user: a lazy (or persisted) Dask array plus where it comes from."""

    array: da.Array                      # n_rows × d float64, one chunk per unit or per group of them
    units: list                          # (path, row group, rows) in array order (no empty ones); a chunk holds
                                         # one of them or a group of consecutive ones (chunk_units)
    scaler: StandardScaler
    fcfg: dict
    reads_parquet: bool = False          # `array` reads the units lazily (not persisted or replaced)

    @property
    def names(self) -> list[str]:
        return feature_names(self.fcfg)

    @property
    def n_rows(self) -> int:
        return int(self.array.shape[0])

    def persist(self) -> "ScaledData":
        return replace(self, array=self.array.persist(), reads_parquet=False)

    def with_array(self, array: da.Array) -> "ScaledData":
        return replace(self, array=array, reads_parquet=False)

    def pass_partials(self, centers_list: list[np.ndarray], totals: bool, width: int) -> da.Array:
        """`kernels.block_partials` summed over each `unit_groups` group (a row each), one task a group
        that reads, scales and sums its units one by one (`group_partials`); for `reads_parquet` data."""
        rows = [da.from_delayed(dask.delayed(group_partials, pure=True)(g, self.scaler, self.fcfg, centers_list,
                                                                         totals), shape=(1, width), dtype=np.float64)
                for g in unit_groups(self.units)]
        return da.concatenate(rows, axis=0) if rows else da.zeros((0, width), dtype=np.float64)


def nonempty_units(users_path: str | Path) -> list:
    """The Parquet units of a users folder, empty row groups and files left out: they add nothing, and
    Dask drops zero-row chunks anyway."""
    return [u for u in parquet_units(parquet_files(users_path)) if u[2] > 0]


def scaled_from_parquet(users_path: str | Path, scaler: StandardScaler, fcfg: dict, units=None,
                        grouped: bool = False) -> ScaledData:
    """One chunk per unit, or per `unit_groups` group when `grouped` (features to keep in memory)."""
    units = nonempty_units(users_path) if units is None else units
    d = len(feature_names(fcfg))
    blocks = [da.from_delayed(dask.delayed(scaled_units, pure=True)(group, scaler, fcfg),
                              shape=(units_rows(group), d), dtype=np.float64) for group in chunk_units(units, grouped)]
    array = da.concatenate(blocks, axis=0) if blocks else da.zeros((0, d), dtype=np.float64)
    return ScaledData(array, units, scaler, fcfg, reads_parquet=True)


def scaled_from_ddf(ddf, scaler: StandardScaler, fcfg: dict) -> da.Array:
    """Scaled features of a Dask DataFrame as an array with known chunk sizes (costs one pass for lengths)."""
    names = feature_names(fcfg)
    meta = pd.DataFrame({n: pd.Series(dtype=np.float64) for n in names})
    frame = ddf.map_partitions(lambda p: pd.DataFrame(scale(p, scaler, fcfg), columns=names), meta=meta)
    return frame.to_dask_array(lengths=True)
