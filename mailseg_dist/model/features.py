"""Model inputs from clean-layer columns: the seed's 8 features plus optional transforms.

`features.columns` lists clean-layer columns in model order. Options (config
`features`) rewrite that list in place, so the order is always predictable:

- log1p: count columns (send, bounce, open, click, Total, engagement_score)
  become log1p(x), named ``log1p_<column>``; their heavy right tails otherwise
  dominate the Euclidean distance.
- cyclical: hour → hour_sin, hour_cos (period 24) and day_of_week → dow_sin,
  dow_cos (period 7), so 23h is near 0h and Sunday near Monday.
- rates: open_rate = open/send, click_rate = click/open (0 when open = 0),
  bounce_rate = bounce/send (0 when send = 0), appended at the end. They are
  computed from the raw counts, whatever log1p says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.settings import FEATURE_COLUMNS
from mailseg_dist.inputs.schema import USER_COLUMNS

LOG1P_COLUMNS = ("send", "bounce", "open", "click", "Total", "engagement_score")
CYCLES = {"hour": (24.0, "hour"), "day_of_week": (7.0, "dow")}
RATES = ("open_rate", "click_rate", "bounce_rate")
RATE_INPUTS = ("send", "bounce", "open", "click")
# Model inputs may be any numeric clean-layer column but the Id (declared with the config table).
ALLOWED = FEATURE_COLUMNS


def _columns(fcfg: dict) -> list[str]:
    columns = list(fcfg.get("columns") or [])
    if not columns:
        raise UsageError("features.columns expected at least one clean-layer column, found none")
    unknown = [c for c in columns if c not in ALLOWED]
    if unknown:
        raise UsageError(f"features.columns: unknown column(s) {unknown}; allowed: {', '.join(ALLOWED)}")
    if len(set(columns)) != len(columns):
        raise UsageError(f"features.columns lists a column twice: {columns}")
    return columns


def feature_names(fcfg: dict) -> list[str]:
    """Names of the model's input columns, in model order."""
    names: list[str] = []
    for column in _columns(fcfg):
        if fcfg.get("cyclical") and column in CYCLES:
            prefix = CYCLES[column][1]
            names += [f"{prefix}_sin", f"{prefix}_cos"]
        elif fcfg.get("log1p") and column in LOG1P_COLUMNS:
            names.append(f"log1p_{column}")
        else:
            names.append(column)
    if fcfg.get("rates"):
        names += list(RATES)
    return names


def raw_columns(fcfg: dict) -> list[str]:
    """Users-table columns `feature_frame` reads (in clean-layer order, event-log extras last)."""
    needed = set(_columns(fcfg))
    if fcfg.get("rates"):
        needed.update(RATE_INPUTS)
    return [c for c in USER_COLUMNS if c in needed]


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(len(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def feature_sources(df, fcfg: dict) -> list:
    """The model's inputs in `feature_names` order, unscaled: the column itself where a feature is a
    clean-layer column (its own dtype: the fused pass reads int64 counts as they are), a float64 array
    where a feature is computed. `df`: a DataFrame, or a dict of column arrays (core.parquet.table_columns)."""
    missing = [c for c in raw_columns(fcfg) if c not in df]
    if missing:
        raise UsageError(f"feature columns missing from the users table: {missing}")
    out: dict[str, object] = {}
    for column in _columns(fcfg):
        if fcfg.get("cyclical") and column in CYCLES:
            period, prefix = CYCLES[column]
            angle = 2.0 * np.pi * np.asarray(df[column], dtype=np.float64) / period
            out[f"{prefix}_sin"], out[f"{prefix}_cos"] = np.sin(angle), np.cos(angle)
        elif fcfg.get("log1p") and column in LOG1P_COLUMNS:
            out[f"log1p_{column}"] = np.log1p(np.asarray(df[column], dtype=np.float64))
        else:
            out[column] = df[column]
    if fcfg.get("rates"):
        out["open_rate"] = _ratio(df["open"], df["send"])
        out["click_rate"] = _ratio(df["click"], df["open"])
        out["bounce_rate"] = _ratio(df["bounce"], df["send"])
    return [out[name] for name in feature_names(fcfg)]


def feature_matrix(df, fcfg: dict) -> np.ndarray:
    """The model's float64 inputs as one writable Fortran-ordered array (columns in `feature_names` order):
    a column per feature is what the kernels read (model/kernels.py), and the first pass scales it in place.

    `df`: a DataFrame, or a dict of column arrays (core.parquet.table_columns)."""
    sources = feature_sources(df, fcfg)
    matrix = np.empty((len(sources[0]), len(sources)), dtype=np.float64, order="F")
    for j, source in enumerate(sources):
        matrix[:, j] = np.asarray(source, dtype=np.float64)
    return matrix


def feature_frame(df: pd.DataFrame, fcfg: dict) -> pd.DataFrame:
    """The model's float64 inputs (columns in `feature_names` order, index kept); works on empty frames."""
    return pd.DataFrame(feature_matrix(df, fcfg), index=df.index, columns=feature_names(fcfg), copy=False)
