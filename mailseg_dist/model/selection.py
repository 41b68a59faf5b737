"""Choosing k with a written-down rule instead of by eye.

Rule (documented in the README as well):

1. Knee of the inertia curve (Kneedle, Satopää et al. 2011): scale k and
   inertia to [0, 1]; the knee is the k whose point lies farthest below the
   chord from the first to the last point, i.e. maximising
   (1 − k̂) − înertia for a decreasing convex curve (ties → smaller k).
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


def knee(ks: list[int], inertia: list[float]) -> int:
    """Kneedle knee of a decreasing inertia curve (the first k when the curve is flat or too short)."""
    k_arr, y = np.asarray(ks, dtype=np.float64), np.asarray(inertia, dtype=np.float64)
    if len(k_arr) < 3 or y.max() == y.min():
        return int(ks[0])
    x_hat = (k_arr - k_arr.min()) / (k_arr.max() - k_arr.min())
    y_hat = (y - y.min()) / (y.max() - y.min())
    below_chord = (1.0 - x_hat) - y_hat
    return int(ks[int(np.argmax(below_chord))])  # argmax: first (smallest k) of ties


def _silhouette(row: dict) -> float:
    value = row.get("silhouette")
    return -math.inf if value is None or not np.isfinite(value) else float(value)


def _smallest_share(row: dict) -> float:
    sizes = row.get("sizes")
    if not sizes:
        return 1.0
    counts = list(sizes.values()) if isinstance(sizes, dict) else list(sizes)
    return min(counts) / max(1, sum(counts))


REASONS = {
    "en": {"no_knee": "{n} candidate(s), no inertia knee", "knee": "inertia knee (Kneedle) at k={k}; silhouettes within ±{w}",
           "aside": "; set aside for a segment under {share:.0%} of users: {ks}",
           "pick": "; picked k={k} (highest silhouette, ties to the smaller k)"},
    "es": {"no_knee": "{n} candidata(s), sin codo de inercia", "knee": "codo de la inercia (Kneedle) en k={k}; siluetas a ±{w}",
           "aside": "; descartadas por tener un segmento con menos del {share:.0%} de los usuarios: {ks}",
           "pick": "; elegida k={k} (la silueta más alta; en empate, la k menor)"},
}


def _actionable(window: list[dict], min_share: float, words: dict) -> tuple[list[dict], str]:
    kept = [row for row in window if _smallest_share(row) >= min_share]
    dropped = [f"k={row['k']} ({_smallest_share(row):.2%})" for row in window if row not in kept]
    if not kept or not dropped:
        return window, ""
    return kept, words["aside"].format(share=min_share, ks=", ".join(dropped))


def choose_k(table: list[dict], knee_window: int = 1, min_share: float = 0.0, lang: str = "en") -> tuple[int, str]:
    """(k, reason) from rows {"k", "inertia", "silhouette", "sizes", ...}; see the module docstring."""
    rows = _validated(table)
    words = REASONS[lang]
    ks = [int(row["k"]) for row in rows]
    if len(rows) < 3:
        window, head = rows, words["no_knee"].format(n=len(rows))
    else:
        elbow = knee(ks, [row["inertia"] for row in rows])
        window = [row for row in rows if abs(int(row["k"]) - elbow) <= knee_window]
        head = words["knee"].format(k=elbow, w=knee_window)
    compared = ", ".join(f"k={row['k']}: " + (f"{_silhouette(row):.3f}" if _silhouette(row) > -math.inf else "n/a")
                         for row in window)
    window, set_aside = _actionable(window, min_share, words)
    best = max(window, key=lambda row: (_silhouette(row), -int(row["k"])))  # ties → smaller k
    return int(best["k"]), f"{head}: {compared}{set_aside}" + words["pick"].format(k=best["k"])
