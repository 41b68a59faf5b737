"""Drift between a version's month and a new month: what moved, by how much, and whether to refit.

An `update` keeps the parent version's segments: right while the population looks like the
one they were fitted on, wrong once it does not. Everything here works from small inputs,
so no old month is re-read: `drift_reference` (stored with each version: per column the
month's quantile bins and their shares, mean, std), `feature_drift` (PSI over those bins,
mean and spread shift), `share_psi` / `segment_rows` (the segments), `transitions` (who
moved where, joined on Id on the workers), `verdict` (stable | watch | act and the numbers
that decided) and `drift_block`, all of it as run_summary.json's `update` block.

PSI = Σ_b (p_now,b − p_ref,b) · ln(p_now,b / p_ref,b); usual reading < 0.1 stable,
0.1–0.25 watch, > 0.25 act (config `drift`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mailseg_dist.model.pair_counts import months_pair_counts

# A bin (or segment) empty in one month counts as this proportion, so ln(p_now / p_ref) stays finite.
# Reference bins are never empty (see `drift_reference`): the floor only applies to the new month,
# where emptying a bin that held 10 % of users adds (0.1 − 1e-4) · ln(0.1 / 1e-4) ≈ 0.69: "act".
EPSILON = 1e-4
BANDS = ("stable", "watch", "act")


def _finite(value) -> float | None:
    """A float for JSON, or None when the number is undefined (NaN, ±inf)."""
    return float(value) if value is not None and np.isfinite(value) else None


def _values(sample: pd.DataFrame, column: str) -> np.ndarray:
    if column not in sample.columns:
        raise ValueError(f"drift: column {column!r} not in the sample (has {list(sample.columns)})")
    values = pd.to_numeric(sample[column], errors="coerce").to_numpy(np.float64)
    return values[np.isfinite(values)]


def _quantile_cuts(values: np.ndarray, bins: int) -> np.ndarray:
    """Distinct quantiles at 1/bins … (bins−1)/bins, taken as data values, above the minimum."""
    if bins < 2:
        return np.zeros(0)
    cuts = np.unique(np.quantile(values, np.arange(1, bins) / bins, method="inverted_cdf"))
    return cuts[cuts > values.min()]


def _cuts(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges of a column: its quantiles, so each bin holds about 1/bins of the users.

    `inverted_cdf` makes every cut a value that occurs, so bin [cut_i, cut_i+1) holds at least
    cut_i; repeated cuts are merged and a cut equal to the minimum dropped, so no bin is empty.
    A discrete column piles users on a few values (most users never click), which leaves
    fewer distinct quantiles; the cuts left over go to the users above the last cut (the
    next value up, then their own quantiles), so the few who click still have bins of
    their own and a change among them shows in the PSI.
    """
    if len(values) == 0:
        return np.zeros(0)
    cuts = _quantile_cuts(values, bins)
    above = values[values > (cuts[-1] if len(cuts) else values.min())]
    room = bins - 1 - len(cuts)
    if room > 0 and len(above):
        cuts = np.unique(np.concatenate([cuts, [above.min()], _quantile_cuts(above, room)]))
    return cuts


def _proportions(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Share of `values` in each bin (−inf, c1), [c1, c2), …, [c_last, +inf)."""
    counts = np.bincount(np.searchsorted(cuts, values, side="right"), minlength=len(cuts) + 1)
    return counts / counts.sum() if counts.sum() else counts.astype(np.float64)


def _moments(values: np.ndarray) -> tuple[float | None, float | None]:
    mean = values.mean() if len(values) else np.nan
    std = values.std(ddof=1) if len(values) > 1 else np.nan
    return _finite(mean), _finite(std)


def drift_reference(sample: pd.DataFrame, columns: list[str], bins: int) -> dict:
    """What a version keeps so that a later month can be compared without re-reading this one.

    Parameters
    ----------
    sample : DataFrame
        The month's hashed sample (ModelResult.sample: up to ~50k users chosen by a hash of the
        Id, the same whatever the partitioning); non-finite values are ignored.
    columns : list of str
        Clean-layer columns to follow (e.g. ``features.raw_columns(cfg["features"])``).
    bins : int
        Quantile bins per column (config ``drift.bins``); discrete columns may get fewer.

    Returns
    -------
    dict
        ``{"bins", "columns": {column: {"edges", "proportions", "mean", "std", "n"}}}``, plain JSON.
        ``edges`` are the inner cuts: the outer edges are open (−inf, +inf), left implicit so
        that the JSON holds no Infinity.
    """
    out = {}
    for column in columns:
        values = _values(sample, column)
        cuts = _cuts(values, int(bins))
        mean, std = _moments(values)
        out[column] = {"edges": [float(c) for c in cuts],
                       "proportions": [float(p) for p in _proportions(values, cuts)],
                       "mean": mean, "std": std, "n": len(values)}
    return {"bins": int(bins), "columns": out}


def band(psi: float | None, psi_watch: float, psi_act: float) -> str:
    """stable when psi < psi_watch, act when psi > psi_act, watch in between (both ends included)."""
    if psi is None or psi < psi_watch:
        return "stable"
    return "act" if psi > psi_act else "watch"


def psi(p_ref, p_now, epsilon: float = EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins (floored at `epsilon`)."""
    ref = np.maximum(np.asarray(p_ref, np.float64), epsilon)
    now = np.maximum(np.asarray(p_now, np.float64), epsilon)
    return float(((now - ref) * np.log(now / ref)).sum())


def feature_drift(reference: dict, sample: pd.DataFrame, *, psi_watch: float, psi_act: float) -> list[dict]:
    """Per column of `reference`: PSI over its bins, mean shift and spread ratio, and the band.

    `reference` is the parent month's `drift_reference`, `sample` the new month's hashed sample;
    the band thresholds (config ``drift``) are passed in so the bands always match the config.

    Returns
    -------
    list of dict
        Per column: ``feature``, ``psi``, ``band``, ``mean_ref``, ``mean_now``, ``mean_shift_sd``
        ((mean_now − mean_ref) / std_ref: how far the population's centre moved, in the parent's
        spread), ``std_ref``, ``std_now``, ``spread_ratio`` (std_now / std_ref), ``n_ref``,
        ``n_now``, ``proportions_ref``, ``proportions_now``; None where undefined (std_ref = 0).
    """
    rows = []
    for column, ref in reference["columns"].items():
        values = _values(sample, column)
        now = _proportions(values, np.asarray(ref["edges"], np.float64))
        value = psi(ref["proportions"], now) if len(values) else None
        mean, std = _moments(values)
        sd = ref["std"]
        shift = (mean - ref["mean"]) / sd if None not in (mean, ref["mean"], sd) and sd > 0 else None
        ratio = std / sd if None not in (std, sd) and sd > 0 else None
        rows.append({"feature": column, "psi": _finite(value), "band": band(value, psi_watch, psi_act),
                     "mean_ref": ref["mean"], "mean_now": mean, "mean_shift_sd": _finite(shift),
                     "std_ref": sd, "std_now": std, "spread_ratio": _finite(ratio),
                     "n_ref": ref["n"], "n_now": len(values),
                     "proportions_ref": list(ref["proportions"]), "proportions_now": [float(p) for p in now]})
    return rows


def _by_id(mapping: dict | None) -> dict:
    """Segment-id keyed dict with int keys (JSON gives them back as strings)."""
    return {int(k): v for k, v in (mapping or {}).items()}


def share_psi(previous: dict[int, float], now: dict[int, float]) -> float:
    """PSI of the segment shares as a whole: each segment id is a bin (an id missing in a month: share 0)."""
    previous, now = _by_id(previous), _by_id(now)
    ids = sorted(set(previous) | set(now))
    return psi([previous.get(i, 0.0) for i in ids], [now.get(i, 0.0) for i in ids])


def segment_rows(*, shares_then: dict, shares_now: dict, center_shift: dict | None = None,
                 silhouette_then: dict | None = None, silhouette_now: dict | None = None,
                 names_then: dict | None = None, names_now: dict | None = None) -> list[dict]:
    """One row per segment id of either month, from per-id dicts (missing values are None).

    ``psi_term`` is the segment's own term of `share_psi`: the terms add up to it, so the
    segment that grew or shrank most stands out.
    """
    maps = {name: _by_id(m) for name, m in [("share_then", shares_then), ("share_now", shares_now),
                                            ("center_shift", center_shift), ("silhouette_then", silhouette_then),
                                            ("silhouette_now", silhouette_now), ("name_then", names_then),
                                            ("name_now", names_now)]}
    rows = []
    for j in sorted(set(maps["share_then"]) | set(maps["share_now"])):
        row = {"cluster": j}
        for name, m in maps.items():
            value = m.get(j)
            row[name] = value if value is None or name.startswith("name") else _finite(float(value))
        then, now = row["share_then"] or 0.0, row["share_now"] or 0.0
        row["share_change"] = now - then
        row["psi_term"] = psi([then], [now])
        row["renamed"] = row["name_then"] is not None and row["name_now"] is not None \
            and row["name_then"] != row["name_now"]
        rows.append(row)
    return rows


def transitions(previous_users, users) -> dict:
    """Who moved from which segment to which, between two months' per-user results.

    Runs on the workers: only Id and cluster are read, both months split by a hash of the Id and
    each bucket matched on Id there (`model.pair_counts`, no shuffle of the months); only the
    counts per (previous, new) pair come back to the client.

    Returns
    -------
    dict
        ``clusters`` (ids seen in either month: rows and columns), ``counts`` (row id before →
        column id now, list of lists), ``shares`` (each row over its total), ``stayers``,
        ``movers``, ``common`` (in both months), ``new`` (only now), ``gone`` (only before),
        ``new_by_cluster``, ``gone_by_cluster`` (aligned with ``clusters``).
    """
    sizes = months_pair_counts(previous_users, users)
    clusters = sorted({c for pair in sizes for c in pair if c >= 0})
    counts = np.array([[sizes.get((a, b), 0) for b in clusters] for a in clusters], np.int64).reshape(len(clusters), -1)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    stayers = int(np.trace(counts))
    return {"clusters": clusters, "counts": counts.tolist(), "shares": shares.tolist(),
            "stayers": stayers, "movers": int(counts.sum()) - stayers, "common": int(counts.sum()),
            "new": sum(n for (a, _), n in sizes.items() if a < 0),
            "gone": sum(n for (_, b), n in sizes.items() if b < 0),
            "new_by_cluster": [sizes.get((-1, c), 0) for c in clusters],
            "gone_by_cluster": [sizes.get((c, -1), 0) for c in clusters]}


def verdict(features: list[dict], segment_share_psi: float | None, cfg_drift: dict) -> dict:
    """stable | watch | act, whether to refit, and the numbers that decided.

    Each feature's PSI and the segment shares' PSI are read with the same bands (config
    ``drift``). A full refit (`mailseg run`) is advised, status act, in two cases (``rule``):
    ``any_act``, some PSI above psi_act: the population (or its split into the segments) is
    no longer the one they were fitted on; ``watch_features_and_shares``, a feature and the
    segment split both in watch: the change in who the users are already shows in the
    segments, so it is not noise in one variable (tripling the bouncing users of a generated
    month gives bounce ≈ 0.22, shares ≈ 0.13: both watch, none act). Otherwise the worst band:
    watch (one side moved a little: look again next month) or stable.

    Returns
    -------
    dict
        ``status``, ``refit_advised``, ``rule`` (the above, ``watch`` or ``stable``), ``psi_watch``,
        ``psi_act``, ``because``: the items that decided, largest PSI first, each ``{"what":
        "feature" | "segment_shares", "name", "psi", "band"}`` (stable: the largest PSI alone).
    """
    watch, act = float(cfg_drift["psi_watch"]), float(cfg_drift["psi_act"])
    items = [{"what": "feature", "name": f["feature"], "psi": f["psi"]} for f in features if f["psi"] is not None]
    if segment_share_psi is not None:
        items.append({"what": "segment_shares", "name": "segment_shares", "psi": float(segment_share_psi)})
    for item in items:
        item["band"] = band(item["psi"], watch, act)
    items.sort(key=lambda i: -i["psi"])
    moved = [i for i in items if i["band"] != "stable"]
    sides = {i["what"] for i in moved}
    if any(i["band"] == "act" for i in items):
        status, rule, because = "act", "any_act", [i for i in items if i["band"] == "act"]
    elif sides == {"feature", "segment_shares"}:
        status, rule, because = "act", "watch_features_and_shares", moved
    elif moved:
        status, rule, because = "watch", "watch", moved
    else:
        status, rule, because = "stable", "stable", items[:1]
    return {"status": status, "refit_advised": status == "act", "rule": rule, "psi_watch": watch, "psi_act": act,
            "because": because}


def drift_block(reference: dict, sample: pd.DataFrame, cfg_drift: dict, *, shares_then: dict, shares_now: dict,
                center_shift: dict | None = None, silhouette_then: dict | None = None,
                silhouette_now: dict | None = None, names_then: dict | None = None, names_now: dict | None = None,
                transitions: dict | None = None, month_then: str | None = None,
                month_now: str | None = None) -> dict:
    """The drift report of an update as one JSON-ready dict (run_summary.json's ``update`` block).

    ``{"month_then", "month_now", "bins", "features": feature_drift(...), "segments": segment_rows(...),
    "share_psi": share_psi(...), "share_band", "transitions": transitions(...) or None,
    "verdict": verdict(...)}``.
    """
    features = feature_drift(reference, sample, psi_watch=cfg_drift["psi_watch"], psi_act=cfg_drift["psi_act"])
    segments = segment_rows(shares_then=shares_then, shares_now=shares_now, center_shift=center_shift,
                            silhouette_then=silhouette_then, silhouette_now=silhouette_now,
                            names_then=names_then, names_now=names_now)
    share = share_psi(shares_then, shares_now)
    return {"month_then": month_then, "month_now": month_now, "bins": reference["bins"], "features": features,
            "segments": segments, "share_psi": share,
            "share_band": band(share, cfg_drift["psi_watch"], cfg_drift["psi_act"]),
            "transitions": transitions, "verdict": verdict(features, share, cfg_drift)}
