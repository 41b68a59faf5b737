"""The `blend` monthly update: last month's centres carry a decaying weight into exact weighted Lloyd passes.

Why: a `refit` gives the new month its own scaler and lets Lloyd move the
centres wherever the month's data pulls them, so a segment's id and meaning
follow the data but also its month-to-month noise. `blend` treats the previous
centres as `w_j` pseudo-users sitting at `a_j` (their users last month times a
decay with a half-life in months) and minimises, in the PREVIOUS month's
scaled space (the scaler is not refitted; its drift is reported elsewhere),

    J(c) = Σ_x ‖x − c_label(x)‖²  +  Σ_j w_j ‖c_j − a_j‖²

with exact Lloyd passes over the new month: assign each user to the nearest
centre, then c_j = (w_j·a_j + Σ_{x in j} x) / (w_j + n_j). Each pass is ONE
Dask compute that returns k×d sums (kernels.stats_many); no row reaches the
client. Centre j starts at a_j and is only ever updated from cluster j, so ids
need no matching; `swapped_ids` still asks the Hungarian matching whether an
id would have changed hands, and the caller reports it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np

from mailseg_dist.core.numeric import significant
from mailseg_dist.model.engines.lloyd import EngineResult
from mailseg_dist.model.kernels import ClusterStats, stats_many
from mailseg_dist.model.matching import matching

log = logging.getLogger("mailseg")


def months_between(previous_month: str | None, month: str) -> int:
    """Whole months from `previous_month` to `month` ("YYYY-MM"), at least 1.

    At least 1 because an update always adds a month's worth of evidence: a month
    rebuilt (`--replace`) or a model without a recorded month decays like one month
    rather than not at all (which would let old weight pile up)."""
    if not previous_month:
        return 1
    (y0, m0), (y1, m1) = (map(int, previous_month.split("-")), map(int, month.split("-")))
    return max(1, (y1 - y0) * 12 + (m1 - m0))


def decay(months_elapsed: float, half_life_months: float) -> float:
    """0.5 ** (months / half-life): the share of its weight a month-old centre keeps."""
    if half_life_months <= 0:
        raise ValueError(f"update.half_life_months must be > 0, found {half_life_months!r}")
    return float(0.5 ** (float(months_elapsed) / float(half_life_months)))


def prior_weights(counts, months_elapsed: float, half_life_months: float) -> np.ndarray:
    """w_j = users of segment j last month × decay: the previous centres count as that many users."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts < 0).any():
        raise ValueError("previous segment counts must be >= 0")
    return counts * decay(months_elapsed, half_life_months)


def blended_centres(stats: ClusterStats, anchor: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(w_j·a_j + Σx_j) / (w_j + n_j): the minimiser of J for the current labels.

    A cluster with neither weight nor users keeps its current centre (as plain Lloyd's
    `means`); with weight and no users it goes back to its anchor."""
    mass = weights + stats.counts
    safe = np.where(mass > 0, mass, 1.0)[:, None]
    return np.where(mass[:, None] > 0, (weights[:, None] * anchor + stats.sums) / safe, stats.centers)


def objective(stats: ClusterStats, anchor: np.ndarray, weights: np.ndarray) -> float:
    """J for the centres `stats` measured: the data's inertia plus the anchors' pull.

    The stopping test uses J, not the data inertia alone: weighted Lloyd decreases J at
    every pass, while the data inertia may rise as the anchors hold centres back."""
    pull = float((weights * ((stats.centers - anchor) ** 2).sum(axis=1)).sum())
    return float(significant(stats.inertia + pull))


def weighted_lloyd(x, anchor: np.ndarray, weights: np.ndarray, tol: float, max_passes: int) -> EngineResult:
    """Weighted Lloyd from the anchors; one compute per pass; returns the centres the last pass measured.

    Stops after a pass whose J improved on the previous one by less than `tol` (relative), when
    the centres no longer change, or after `max_passes` passes (so max_passes=1 returns the
    anchors, measured). Centres are rounded as in engines.lloyd: same bits on any partitioning."""
    anchor = np.ascontiguousarray(anchor, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (anchor.shape[0],):
        raise ValueError(f"expected {anchor.shape[0]} weights, found shape {weights.shape}")
    if int(max_passes) < 1:
        raise ValueError(f"update.max_passes must be >= 1, found {max_passes!r}")
    state, history, totals = anchor.copy(), [], None
    for it in range(1, int(max_passes) + 1):
        (st,) = stats_many(x, [state], totals)
        totals = (st.sum_x, st.sum_xx)  # the same rows every pass: later passes skip them
        history.append(objective(st, anchor, weights))
        new = significant(blended_centres(st, anchor, weights))
        stalled = it > 1 and history[-2] - history[-1] <= tol * history[-2]
        if stalled or it == int(max_passes) or np.array_equal(new, state):
            return EngineResult(state, it, history, st.inertia, st)
        state = new
    raise AssertionError("unreachable")


def swapped_ids(anchor: np.ndarray, centres: np.ndarray) -> list[int]:
    """Ids the Hungarian matching would give to another centre (empty when every id continues itself)."""
    order = matching(np.asarray(anchor, dtype=np.float64), np.asarray(centres, dtype=np.float64))
    return [int(j) for j in np.flatnonzero(order != np.arange(len(order)))]


def fit_blend(data, previous: SimpleNamespace, ucfg: dict, tol: float) -> tuple[EngineResult, dict]:
    """The blend update of `previous` (update.previous_segments + months_elapsed) on the scaled month `data`.

    `data` must be scaled with previous.scaler. Returns the engine result and what the summary
    reports: months elapsed, decay, weights, J per pass and any id the matching would have swapped."""
    months = getattr(previous, "months_elapsed", None)
    if months is None:
        raise ValueError("blend update: `months_elapsed` is missing (use model.blend.months_between)")
    scaler = previous.scaler
    anchor = (np.asarray(previous.centers, dtype=np.float64) - scaler.mean_) / scaler.scale_
    weights = prior_weights(previous.counts, months, ucfg["half_life_months"])
    result = weighted_lloyd(data, anchor, weights, tol, int(ucfg["max_passes"]))
    swapped = swapped_ids(anchor, result.centers)
    if swapped:
        log.warning("blend update: the matching would have given ids %s to other centres; ids kept as fitted",
                    swapped)
    info = {"months_elapsed": int(months), "half_life_months": float(ucfg["half_life_months"]),
            "decay": decay(months, ucfg["half_life_months"]), "weights": [float(w) for w in weights],
            "passes": result.n_iter, "objective": result.history, "swapped_ids": swapped}
    return result, info
