"""Publish: everything a marketer receives, from a fitted ModelResult.

Order matters (names need profiles, profiles need every user's cluster):
per-user scores (lazy) → profiles → segment table (names, levels, actions)
→ per-user Parquet (workers) → workbook (one worker task, in the background)
→ model files → figures → report. Every file is written atomically.
"""

from __future__ import annotations

import logging
import time

from mailseg_dist.core.catalog import REPORT_HTML, XLSX_NAME
from mailseg_dist.model.model_files import write_model_files
from mailseg_dist.outputs.export import (
    scored_users,
    write_results_xlsx,
    write_user_results,
)
from mailseg_dist.outputs.figures import make_all_figures
from mailseg_dist.outputs.report import report_context, write_report
from mailseg_dist.outputs.segment_files import save_segment_table
from mailseg_dist.segments.profiles import segment_profiles
from mailseg_dist.segments.recommend import segment_table as build_segment_table

log = logging.getLogger("mailseg")


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
