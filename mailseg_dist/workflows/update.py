"""Monthly update: refit on the new month from last month's segments, keeping their ids.

The previous model (verified by SHA-256, read from plain JSON, never unpickled)
gives k and its centres in feature units. The new month gets its own scaler;
the old centres are put in the new scaled space and Lloyd starts from them, so
centre j of the new model grew out of centre j of the old one. An optimal
one-to-one matching of old and new centres (Hungarian, squared distances)
checks that: if Lloyd let two segments swap places, the new centres are
reordered so that each id keeps following its segment. The summary's `update`
block says, per id, how far the centre moved and how name and share changed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mailseg_dist.core.catalog import PLAIN_JSON
from mailseg_dist.core.storage import as_location, file_sha256


def previous_segments(model_dir: Path, cfg: dict, trust_unverified: bool) -> SimpleNamespace:
    """k, centres in feature units, names and shares of the model in `model_dir` (verified, not unpickled)."""
    from mailseg_dist.workflows.score import load_scoring_model

    saved = load_scoring_model(model_dir, cfg, trust_unverified)
    centers = saved.model.cluster_centers_ * saved.scaler.scale_ + saved.scaler.mean_
    table = saved.segments
    return SimpleNamespace(k=saved.k, centers=np.asarray(centers, dtype=np.float64), model_dir=str(model_dir),
                           sha256=file_sha256(as_location(model_dir) / PLAIN_JSON), names={int(c): str(n) for c, n in table["nombre"].items()},
                           shares={int(c): float(s) for c, s in table["share"].items()})


def update_block(previous: SimpleNamespace, scaler, centers: np.ndarray, segments: list[dict],
                 reordered: bool) -> dict:
    """What changed since the previous model, per segment id (centre shift in the new scaled units)."""
    old_scaled = (previous.centers - scaler.mean_) / scaler.scale_
    shift = np.sqrt(((old_scaled - centers) ** 2).sum(axis=1))
    now = {s["cluster"]: s for s in segments}
    return {"previous_model": previous.model_dir, "previous_modelo_json_sha256": previous.sha256,
            "ids_reordered": reordered,
            "segments": [{"cluster": j, "previous_name": previous.names.get(j), "name": now.get(j, {}).get("name"),
                          "previous_share": _rounded(previous.shares.get(j)), "share": now.get(j, {}).get("share"),
                          "center_shift": round(float(shift[j]), 4)} for j in range(previous.k)]}


def _rounded(share):
    return None if share is None else round(share, 4)
