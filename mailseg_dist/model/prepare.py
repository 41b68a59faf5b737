"""What every fit of one users folder shares: the scaler, the hashed sample and the scaled features.

`prepare` reads the users once (model/first_pass.py): the scaler's moments, the users under the
sample's hash cut-off and, when they fit in worker memory, the features, scaled there in place.
A blend update keeps the previous scaler: it only draws the sample and, when they fit, keeps the
scaled features. Rows are counted from the Parquet footers before anything is read, so k, the
k search's sample size and the cache are decided up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.stages import Stages
from mailseg_dist.core.storage import parquet_metadata
from mailseg_dist.inputs.sampling import draw_sample
from mailseg_dist.inputs.schema import ID, USER_COLUMNS
from mailseg_dist.model.features import feature_names, raw_columns
from mailseg_dist.model.first_pass import first_pass
from mailseg_dist.model.scaler import ScaledData, nonempty_units, scale, scaled_from_parquet, units_rows

CACHE_SHARE = 0.25  # cache_features: auto keeps the scaled matrix when it needs < 25% of cluster memory


@dataclass
class Prepared:
    """The scaler, the hashed sample and the scaled matrix of one users folder."""

    scaler: StandardScaler
    n_rows: int
    sample: pd.DataFrame        # the first `size` rows of the hashed sample (silhouette, stability, figures)
    xs: np.ndarray              # those rows scaled
    xs_start: np.ndarray        # the engines' start sample, scaled (a prefix-compatible superset of xs)
    data: ScaledData | None
    cached: bool
    xs_search: np.ndarray | None = None  # the k search's rows, scaled, when it runs on a sample (search_rows)


def keep_in_memory(setting, n_rows: int, d: int, client) -> bool:
    """model.cache_features: true, false, or auto (the n_rows × d float64 matrix under CACHE_SHARE of the
    workers' memory, or of this machine's without a client)."""
    if setting is True or setting is False:
        return setting
    if setting != "auto":
        raise ValueError(f"model.cache_features expected auto, true or false, found {setting!r}")
    memory = 0
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
    if not memory:
        import psutil
        memory = psutil.virtual_memory().total
    return n_rows * d * 8 < CACHE_SHARE * memory


def _columns(units: list, fcfg: dict, users_path) -> list[str]:
    """The clean columns the sample keeps (Id first), checked against the features' needs."""
    present = set(parquet_metadata(units[0][0]).schema.to_arrow_schema().names)
    missing = [c for c in [ID, *raw_columns(fcfg)] if c not in present]
    if missing:
        raise InputDataError(f"{users_path}: users table lacks column(s) {missing} needed by the features")
    return [ID] + [c for c in USER_COLUMNS if c in present and c != ID]


def _sizes(cfg: dict, n_rows: int, search: bool) -> tuple[int, int, int]:
    """(sample size, the engines' start rows, the k search's rows or 0 when it runs on every user)."""
    mcfg, qcfg, scfg = cfg["model"], cfg["quality"], cfg["selection"]
    size = max(mcfg["init_sample"], qcfg["bootstrap_sample"], scfg["silhouette_sample"])
    search_rows = int(scfg["search_rows"]) if search and n_rows > scfg["search_rows"] else 0
    return size, max(size, mcfg["refine_sample"]), search_rows


def prepare(users_path: Path, cfg: dict, client, clock: Stages, largest_k: int,
            scaler: StandardScaler | None = None, search: bool = False) -> Prepared:
    """One read for the scaler (none when `scaler` is given: blend), the sample and the cached features.
    With `search` over more than selection.search_rows users, the same draw also gives the k search its
    rows (a hashed sample is ordered by hash: its prefixes are smaller samples)."""
    fcfg, seed = cfg["features"], int(cfg["model"]["seed"])
    units = nonempty_units(users_path)
    n_rows = units_rows(units)
    if n_rows == 0:
        raise InputDataError(f"{users_path}: cannot fit the scaler: the users table has no rows")
    if n_rows <= largest_k:
        raise InputDataError(f"{users_path}: {n_rows} users cannot make {largest_k} clusters (need more rows than k)")
    size, start_rows, search_rows = _sizes(cfg, n_rows, search)
    columns = _columns(units, fcfg, users_path)
    cached = keep_in_memory(cfg["model"]["cache_features"], n_rows, len(feature_names(fcfg)), client)
    drawn = None
    if scaler is None:
        what = "the scaler, the hashed sample" + (" and the features kept in worker memory" if cached else "")
        with clock("read", f"reading the users once: {what}"):
            first = first_pass(users_path, units, fcfg, columns, max(start_rows, search_rows), seed, cached)
        scaler, data, drawn = first.scaler, first.data, first.drawn
    else:
        data = scaled_from_parquet(users_path, scaler, fcfg, units, grouped=cached)
        if cached:
            with clock("cache", "keeping the scaled features in worker memory"):
                data = data.persist()
    if drawn is None:  # a blend update, or the ~1e-9 draw that kept too few users under the cut-off
        with clock("sample", "drawing the hashed sample"):
            import dask.dataframe as dd  # only here: 0.24 s of a fit-only import otherwise (importtime)

            ddf = dd.read_parquet(list(dict.fromkeys(u[0] for u in units)), columns=columns)  # each file once
            drawn = draw_sample(ddf, max(start_rows, search_rows), seed, columns=columns, total=n_rows)
    xs_drawn = scale(drawn, scaler, fcfg)
    xs_start = xs_drawn[:start_rows]
    return Prepared(scaler, n_rows, drawn.iloc[:size], xs_start[:size], xs_start, data, cached,
                    xs_drawn if search_rows else None)
