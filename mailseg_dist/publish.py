"""Publish: everything a marketer receives, from a fitted ModelResult.

Order matters (names need profiles, profiles need every user's cluster):
per-user scores (lazy) → profiles → segment table (names, levels, actions)
→ per-user Parquet (workers) → workbook (one worker task, in the background)
→ model files → figures → report. Every file is written atomically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from .atomic import write_json
from .export import XLSX_NAME, scored_users, write_results_xlsx, write_user_results
from .figures import make_all_figures
from .model_files import write_model_files
from .profiles import segment_profiles
from .recommend import segment_table as build_segment_table
from .report import report_context, write_report
from .storage import as_location

log = logging.getLogger("mailseg")
SEGMENTS_JSON = "segmentos.json"
REPORT_HTML = "informe.html"


def save_segment_table(out_dir: Path, table: pd.DataFrame) -> Path:
    """Names, levels and actions per cluster, beside the model: `score` labels new users with them."""
    path = out_dir / SEGMENTS_JSON
    records = [{"cluster": int(c), **row} for c, row in table.to_dict(orient="index").items()]
    population = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.attrs.get("population", {}).items()}
    write_json(path, {"segments": records, "population": population})
    return path


def load_segment_table(model_dir: Path) -> pd.DataFrame:
    import json

    from .errors import InputDataError

    path = as_location(model_dir) / SEGMENTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = pd.DataFrame(data["segments"]).set_index("cluster")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{path}: segment table not readable ({exc}); run `mailseg run` first") from None
    table.attrs["population"] = data.get("population", {})
    return table


def publish(result, manifest: dict, cfg: dict, catalog, client) -> dict:
    """Write every output of a run into catalog.out_dir; returns file paths, segments and timings."""
    out, lang = catalog.out_dir, cfg["report"]["lang"]
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    users = manifest["users_path"]
    profiles = segment_profiles(scored_users(users, result, cfg), result.k)
    table = build_segment_table(profiles, cfg, lang)
    lap("profiles")
    results_dir = write_user_results(users, out, result, table, cfg, lang)
    lap("user_results")
    xlsx = out / XLSX_NAME
    # The workbook is one long sequential write on a worker: let it run while the client draws.
    workbook = client.submit(write_results_xlsx, results_dir, xlsx, table, result.k_table, cfg, lang,
                             result.k_reason, pure=False)
    meta = {"seed": cfg["model"]["seed"], "month": manifest["month"], "input": manifest["source"],
            "input_sha256": manifest["sha256"], "rows_kept": manifest["rows_kept"]}
    files = {k: str(v) for k, v in write_model_files(out, result, meta).items()}
    files["segments"] = str(save_segment_table(out, table))
    lap("model_files")
    figures = make_all_figures(out, result, table, cfg, lang)
    lap("figures")
    files.update({"user_results": str(results_dir), "xlsx": str(xlsx), "report": str(out / REPORT_HTML),
                  "figures": {k: str(v) for k, v in figures.items()}})
    context = report_context(manifest, result, table, figures, cfg, lang=lang,
                             timings={**result.timings, **timings}, outputs=files)
    write_report(out / REPORT_HTML, context)
    lap("report")
    workbook.result()
    lap("xlsx_wait")
    segments = [{"cluster": int(c), "name": row["nombre"], "level": row["nivel"], "users": int(row["size"]), "share": round(float(row["share"]), 4),
                 "action": row["accion_corta"]} for c, row in table.iterrows()]
    return {"files": files, "segments": segments, "timings": timings}
