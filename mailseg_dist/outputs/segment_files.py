"""segmentos.json: names, levels and actions per cluster, saved beside the model so `score` can label new users."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mailseg_dist.core.atomic import write_json
from mailseg_dist.core.catalog import SEGMENTS_JSON
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.storage import as_location


def save_segment_table(out_dir: Path, table: pd.DataFrame) -> Path:
    """Names, levels and actions per cluster, beside the model: `score` labels new users with them."""
    path = out_dir / SEGMENTS_JSON
    records = [{"cluster": int(c), **row} for c, row in table.to_dict(orient="index").items()]
    population = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.attrs.get("population", {}).items()}
    write_json(path, {"segments": records, "population": population})
    return path


def load_segment_table(model_dir: Path) -> pd.DataFrame:
    path = as_location(model_dir) / SEGMENTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = pd.DataFrame(data["segments"]).set_index("cluster")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{path}: segment table not readable ({exc}); run `mailseg run` first") from None
    table.attrs["population"] = data.get("population", {})
    return table
