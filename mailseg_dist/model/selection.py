"""Choosing k with a written-down rule instead of by eye.

Rule (documented in the README as well):

1. Knee of the inertia curve (Kneedle, Satopää et al. 2011): scale k and
   inertia to [0, 1]; the knee is the k whose point lies farthest below the
   chord from the first to the last point, i.e. maximising
   (1 − k̂) − înertia for a decreasing convex curve. Distances within
   `knee_tolerance` (0.01) of the largest count as a tie, and ties go to the
   smaller k: on data like the seed's the curve has two near-equal knees
   (212,292 users: k=5 0.2755, k=6 0.2764; 10M users: 0.2797/0.2788 on all
   rows, 0.2784/0.2793 on the 2M-row hashed sample the k search runs on),
   and without the tolerance the sample and all rows picked different k
   (5 and 4). Sampling moved these distances by at most 0.0013; the seed
   notebook's knee (0.2152 against 0.1996) stays a clear one.
2. Among the k within ±`knee_window` of the knee (and in the table), drop those
   whose smallest segment holds less than `min_share` of the users (a segment
   too small to act on is usually a handful of outliers, and bootstrap shows it
   unstable); if that drops them all, keep them all.
3. Of the rest, take the one with the highest silhouette; ties → smaller k.

With fewer than 3 candidates there is no knee: the highest silhouette wins.
Rows whose silhouette is missing (NaN) only win when all are missing.
"""

from __future__ import annotations

import math

import numpy as np


def _validated(table: list[dict]) -> list[dict]:
    if not table:
        raise ValueError("choose_k: the k table is empty")
    rows = sorted(table, key=lambda row: row["k"])
    ks = [row["k"] for row in rows]
    if len(set(ks)) != len(ks):
        raise ValueError(f"choose_k: k repeated in the table: {ks}")
    for row in rows:
        if not np.isfinite(row["inertia"]):
            raise ValueError(f"choose_k: inertia of k={row['k']} is not a finite number: {row['inertia']!r}")
    return rows


def below_chord(ks: list[int], inertia: list[float]) -> np.ndarray | None:
    """Kneedle's distance of each point below the chord, k and inertia scaled to [0, 1] (None when the
    curve is flat or has fewer than 3 points: no knee)."""
    k_arr, y = np.asarray(ks, dtype=np.float64), np.asarray(inertia, dtype=np.float64)
    if len(k_arr) < 3 or y.max() == y.min():
        return None
    x_hat = (k_arr - k_arr.min()) / (k_arr.max() - k_arr.min())
    y_hat = (y - y.min()) / (y.max() - y.min())
    return (1.0 - x_hat) - y_hat


def near_knees(ks: list[int], inertia: list[float], tolerance: float = 0.0) -> list[int]:
    """The k (ks in increasing order) whose distance below the chord is within `tolerance` of the largest,
    smallest first; [ks[0]] when the curve is flat or too short."""
    distances = below_chord(ks, inertia)
    if distances is None:
        return [int(ks[0])]
    return [int(k) for k, d in zip(ks, distances) if d >= distances.max() - tolerance]


def knee(ks: list[int], inertia: list[float], tolerance: float = 0.0) -> int:
    """Kneedle knee of a decreasing inertia curve: the smallest of `near_knees` (ties go to the smaller k)."""
    return near_knees(ks, inertia, tolerance)[0]


def _silhouette(row: dict) -> float:
    value = row.get("silhouette")
    return -math.inf if value is None or not np.isfinite(value) else float(value)


def _smallest_share(row: dict) -> float:
    sizes = row.get("sizes")
    if not sizes:
        return 1.0
    counts = list(sizes.values()) if isinstance(sizes, dict) else list(sizes)
    return min(counts) / max(1, sum(counts))


def _actionable(window: list[dict], min_share: float) -> tuple[list[dict], dict, bool]:
    """The k of the window whose smallest segment is big enough to act on; when none is, all of them
    (and say so: `guard_kept` False), since some k must be chosen."""
    kept = [row for row in window if _smallest_share(row) >= min_share]
    under = {int(row["k"]): round(_smallest_share(row), 6) for row in window if row not in kept}
    if not kept:
        return window, under, False
    return kept, under, True


def choose_k(table: list[dict], knee_window: int = 1, min_share: float = 0.0,
             knee_tolerance: float = 0.01) -> tuple[int, dict]:
    """(k, why) from rows {"k", "inertia", "silhouette", "sizes", ...}; see the module docstring.

    `why` is data, not prose (rendered in the report's language by `segments.texts.k_reason_text`):
    rule ("knee" or "no_knee"), knee, the k tied with it within `knee_tolerance`, window, the silhouettes
    compared, the k set aside for a segment under `min_share` and whether that guard could be kept, and
    the k picked.
    """
    rows = _validated(table)
    ks, inertia = [int(row["k"]) for row in rows], [row["inertia"] for row in rows]
    if len(rows) < 3:
        window, why = rows, {"rule": "no_knee", "candidates": len(rows)}
    else:
        elbow, *tied = near_knees(ks, inertia, knee_tolerance)
        window = [row for row in rows if abs(int(row["k"]) - elbow) <= knee_window]
        why = {"rule": "knee", "knee": elbow, "tied": tied, "tolerance": knee_tolerance, "window": knee_window}
    compared = {int(row["k"]): (_silhouette(row) if _silhouette(row) > -math.inf else None) for row in window}
    window, under, guard_kept = _actionable(window, min_share)
    best = max(window, key=lambda row: (_silhouette(row), -int(row["k"])))  # ties → smaller k
    why.update(silhouettes=compared, min_segment_share=min_share, under_min_share=under, guard_kept=guard_kept,
               k=int(best["k"]))
    return int(best["k"]), why
