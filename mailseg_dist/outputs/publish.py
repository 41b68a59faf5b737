"""Publish: everything a marketer receives, from a fitted ModelResult.

Order matters (names need profiles, profiles need every user's cluster):
`describe_segments`: per-user scores (lazy) → profiles → segment table (names, levels, actions);
`publish`: workbook (one worker task, in the background, from the users layer; an update's Cambios sheet
reaches it through a ChangesChannel once the drift is measured) → per-user Parquet (workers) with the
figures drawn beside them on the client → drift (update) → model files → report. Every file is written
atomically.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from mailseg_dist.core.catalog import REPORT_HTML, USERS_SUBDIR, XLSX_NAME
from mailseg_dist.core.stages import Stages
from mailseg_dist.core.storage import as_location
from mailseg_dist.model.model_files import write_model_files
from mailseg_dist.outputs.changes import change_figures
from mailseg_dist.outputs.export import scored_parts, user_scoring, write_user_results
from mailseg_dist.outputs.figures import make_all_figures
from mailseg_dist.outputs.later_changes import ChangesChannel
from mailseg_dist.outputs.report import report_context, write_report
from mailseg_dist.outputs.segment_files import save_segment_table
from mailseg_dist.outputs.workbook import cancelled_on_error, write_workbook_task
from mailseg_dist.segments.profiles import segment_profiles
from mailseg_dist.segments.recommend import segment_table as build_segment_table
from mailseg_dist.segments.texts import k_reason_text

log = logging.getLogger("mailseg")


def describe_segments(result, users_path, cfg: dict) -> pd.DataFrame:
    """Profiles of every segment over all users (one pass on the workers), then names, levels and actions."""
    profiles = segment_profiles(scored_parts(users_path, result, cfg), result.k)
    return build_segment_table(profiles, cfg, cfg["report"]["lang"])


def segments_summary(table: pd.DataFrame) -> list[dict]:
    return [{"cluster": int(c), "name": row["nombre"], "level": row["nivel"], "users": int(row["size"]),
             "share": round(float(row["share"]), 4), "action": row["accion_corta"]} for c, row in table.iterrows()]


def publish(result, manifest: dict, table: pd.DataFrame, cfg: dict, out_dir, client,
            changes: dict | None = None) -> dict:
    """Write every output of a run into `out_dir`; returns file paths, segments and timings.

    `changes` (an update's drift block plus its `months`, see outputs.changes) adds the "what changed"
    figures, report section and workbook sheet. It may be a function of the new per-user results folder
    that computes that block: the transitions then read each user's segment from those results instead of
    scoring every user once more (at 10M users the drift stage scored them all again)."""
    out, lang = as_location(out_dir), cfg["report"]["lang"]
    users, xlsx = manifest["users_path"], out / XLSX_NAME
    scoring = user_scoring(users, result, table, cfg, lang)

    def start_workbook(changes_block):
        # Computed from the users layer by the code that writes the per-user results, on a worker that
        # goes on with other tasks beside it (workbook.write_workbook_task): not on the critical path.
        return client.submit(write_workbook_task, out / USERS_SUBDIR, xlsx, table, result.k_table, cfg, lang,
                             k_reason_text(result.k_reason, lang), changes=changes_block, scoring=scoring,
                             sample_rows=(result.k_reason or {}).get("search_rows"), pure=False)

    channel = ChangesChannel(client) if callable(changes) else None  # an update: Cambios waits for the drift
    workbook = start_workbook(channel.later if channel else changes)
    try:
        return _outputs(result, manifest, table, cfg, out, changes, channel, workbook, scoring)
    finally:
        if channel is not None:
            channel.close(workbook)


def _outputs(result, manifest: dict, table: pd.DataFrame, cfg: dict, out, changes, channel, workbook,
             scoring) -> dict:
    """publish's outputs once the workbook task is started: per-user results with the figures beside them,
    the drift of an update (handed to the workbook through `channel`), model files, report."""
    lang, stage, users, xlsx = cfg["report"]["lang"], Stages("publish "), manifest["users_path"], out / XLSX_NAME
    with ThreadPoolExecutor(1, thread_name_prefix="mailseg-figures") as drawing:
        # The figures need only the model and the segment table: the client draws them while the workers
        # write the per-user results (one after the other: 1.6 + 3.3 s at 212,292 users on a slow machine).
        figures = drawing.submit(make_all_figures, out, result, table, cfg, lang)
        with stage("user_results", "writing per-user results (workers) and drawing the figures"), \
                cancelled_on_error(workbook):
            results_dir = write_user_results(users, out, result, table, cfg, lang, scoring=scoring)
        with stage("figures", "finishing the figures"):
            figures = figures.result()
    if channel is not None:  # the Cambios sheet needs the drift, which needs the new results
        with stage("drift", "measuring what changed since the previous version"), cancelled_on_error(workbook):
            changes = changes(results_dir)
        channel.send(changes)
    meta = {"seed": cfg["model"]["seed"], "month": manifest["month"], "input": manifest["source"],
            "input_sha256": manifest["sha256"], "rows_kept": manifest["rows_kept"]}
    with stage("model_files", "writing the model, scaler and segment files"):
        files = {k: str(v) for k, v in write_model_files(out, result, meta).items()}
        files["segments"] = str(save_segment_table(out, table))
    if changes is not None:
        with stage("change_figures", "drawing the figures of what changed"):
            figures.update(change_figures(out, changes, lang))
    files.update({"user_results": str(results_dir), "xlsx": str(xlsx), "report": str(out / REPORT_HTML),
                  "figures": {k: str(v) for k, v in figures.items()}})
    with stage("report", "writing the report"):
        context = report_context(manifest, result, table, figures, cfg, lang=lang,
                                 timings={**result.timings, **stage.timings}, outputs=files, changes=changes)
        write_report(out / REPORT_HTML, context)
    with stage("xlsx_wait", f"finishing the workbook {XLSX_NAME}"):
        workbook.result()
    return {"files": files, "segments": segments_summary(table), "timings": stage.timings, "changes": changes}
