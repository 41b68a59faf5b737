"""Wiring of `mailseg run` (and `update`): which data, then ingest → fit → write, with one summary.

Stage functions live in their own modules; this file only decides their order,
times them and reconciles the counts that the summary reports.
"""

from __future__ import annotations

import contextlib
import logging
import time

from pathlib import Path

from mailseg_dist.core.atomic import folder_lock, write_json
from mailseg_dist.core.catalog import REPORT_HTML, SUMMARY_JSON, Catalog, check_month
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.stages import Stages
from mailseg_dist.core.storage import as_location
from mailseg_dist.inputs.ingest import ingest, read_manifest
from mailseg_dist.segments.texts import k_reason_text

log = logging.getLogger("mailseg")


def ensure_default_input(cfg: dict, catalog: Catalog) -> Path:
    """The bundled default data: generated deterministically the first time it is needed."""
    path = catalog.default_input()
    if not path.exists():
        from mailseg_dist.inputs.generate import write_generated

        spec = cfg["default_data"]
        log.info("generating the default data: %d users, seed %d → %s", spec["rows"], spec["seed"], path)
        write_generated(path, spec["rows"], spec["format"], seed=spec["seed"])
    return path


def is_frame(data) -> bool:
    """A pandas or Dask DataFrame given as input (rather than a path)."""
    import pandas as pd

    return isinstance(data, pd.DataFrame) or type(data).__module__.startswith("dask")


def resolve_month(cfg: dict, catalog: Catalog, client, data, month, replace) -> dict:
    """Ingest `data` (a path or a DataFrame) if given; else model --month, the latest month, or the default data."""
    if is_frame(data):
        from mailseg_dist.inputs.ingest import ingest_frame

        return ingest_frame(data, cfg, catalog, month=month, replace=replace, client=client)
    if data is None and month is None and catalog.months():
        month = catalog.months()[-1]
    if data is None and month is not None:
        manifest = read_manifest(catalog, check_month(month))
        if manifest is None:
            raise InputDataError(f"{catalog.users(month)}: month {month} has not been ingested; "
                                 "run `mailseg ingest FILE --month " + month + "` first")
        return {**manifest, "skipped": True, "timings": {}}
    if data is None:
        data = ensure_default_input(cfg, catalog)
    return ingest(data, cfg, catalog, month=month, replace=replace, client=client)


def _check_enough_rows(manifest: dict, cfg: dict) -> None:
    model = cfg["model"]
    needed = model["k_max"] if model["k"] == "auto" else model["k"]
    if manifest["rows_kept"] < needed:
        raise InputDataError(
            f"{manifest['source']}: n_samples={manifest['rows_kept']} kept rows should be >= n_clusters={needed} "
            f"(rows read {manifest['rows_in']}, rejected {manifest['rows_rejected']}: see {manifest['rejects_path']})")


def ingest_stage(cfg: dict, catalog: Catalog, client, data=None, month=None, replace=False) -> dict:
    """The month's users, ingested if need be, with rows read = kept + rejected said on stderr."""
    stage = Stages()
    with stage("ingest", "reading and cleaning the input"):
        manifest = resolve_month(cfg, catalog, client, data, month, replace)
    log.info("month %s: %d rows read = %d kept + %d rejected", manifest["month"], manifest["rows_in"],
             manifest["rows_kept"], manifest["rows_rejected"])
    return manifest


def _blend_from(previous, manifest: dict, cfg: dict):
    """The previous model as the blend update's anchors (update.mode: blend), else None (refit)."""
    if previous is None or cfg["update"]["mode"] != "blend":
        return None
    from mailseg_dist.model.blend import months_between

    previous.months_elapsed = months_between(previous.month, manifest["month"])
    return previous


def fit_stage(manifest: dict, cfg: dict, client, previous=None) -> tuple:
    """(ModelResult, segment table): the fit on the month's users, then every segment's profile, name and action."""
    from mailseg_dist.model.modelling import fit_segments
    from mailseg_dist.outputs.publish import describe_segments

    _check_enough_rows(manifest, cfg)
    stage = Stages()
    with stage("model", f"fitting segments on {manifest['users_path']}"):
        result = fit_segments(manifest["users_path"], cfg, client,
                              start=None if previous is None else previous.centers,
                              blend=_blend_from(previous, manifest, cfg))
    log.info("k=%d with engine %s: inertia %.1f, silhouette %.3f", result.k, result.engine, result.inertia,
             result.silhouette)
    with stage("profiles", "profiling and naming the segments (one pass over all users)"):
        table = describe_segments(result, manifest["users_path"], cfg)
    result.timings.update({f"stage_{k}": v for k, v in stage.timings.items()})
    return result, table


def write_stage(result, table, manifest: dict, cfg: dict, out_dir, client, previous=None, monitor=None,
                started: float | None = None, kind: str = "run", parent: str | None = None,
                changes=None) -> dict:
    """Every output into a new version folder, sealed; then that version made current (top-level copies,
    meses/<month>/, pointer, run_summary.json last). Returns the top-level summary. `changes`: an update's
    drift block, or the function of the new per-user results that computes it (see outputs.publish)."""
    from mailseg_dist.outputs.publish import publish
    from mailseg_dist.workflows import versions

    out_dir = as_location(out_dir)
    version = versions.next_version(out_dir, manifest["month"])
    vdir = versions.version_dir(out_dir, version)
    t_publish = time.perf_counter()
    outputs = publish(result, manifest, table, cfg, vdir, client, changes=changes)
    timings = {**{f"ingest_{k}": v for k, v in manifest.get("timings", {}).items()},
               **{f"model_{k}": round(v, 3) for k, v in result.timings.items() if not k.startswith("stage_")},
               "model": result.timings.get("stage_model"), "profiles": result.timings.get("stage_profiles"),
               "publish": round(time.perf_counter() - t_publish, 3)}
    summary = build_summary(manifest, result, outputs, timings, cfg)
    summary.update(version=version, parent_version=parent)
    if previous is not None:
        from mailseg_dist.workflows.update import update_block

        summary["update"] = update_block(previous, result.scaler, result.centers, summary["segments"],
                                         result.ids_reordered)
        if outputs["changes"] is not None:
            summary["update"]["drift"] = {key: value for key, value in outputs["changes"].items()
                                          if key != "months"}
    if monitor is not None:
        summary["cluster"] = monitor.report()
    summary["timings"]["total"] = round(time.perf_counter() - (started or t_publish), 3)
    write_json(vdir / SUMMARY_JSON, summary)
    versions.seal(out_dir, version, version_record(summary, kind, parent, cfg, result))
    with Stages()("promote", f"making version {version} current"):
        top = versions.promote(out_dir, version)
    versions.prune_months(out_dir, int(cfg["versions"]["keep_months"]))
    log.info("done in %.1f s: results in %s; open %s first", summary["timings"]["total"], out_dir,
             out_dir / REPORT_HTML)
    return top


def config_digest(cfg: dict) -> str:
    """SHA-256 of the settings that shape a model and its texts (not paths or cluster settings): the same
    month and content under other settings is not "the same update again"."""
    import hashlib
    import json

    shaping = {key: cfg[key] for key in ("cleaning", "features", "model", "selection", "quality", "recommend",
                                          "update")}
    shaping["lang"] = cfg["report"]["lang"]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


def version_record(summary: dict, kind: str, parent: str | None, cfg: dict, result) -> dict:
    """What `mailseg models` lists, and what the next month compares with (no old data re-read): the
    month's quantile bins per feature column and each segment's silhouette (see model.drift)."""
    from mailseg_dist.model.drift import drift_reference
    from mailseg_dist.model.features import raw_columns

    from mailseg_dist.workflows.update import segment_silhouettes

    return {"drift_reference": drift_reference(result.sample, raw_columns(cfg["features"]), cfg["drift"]["bins"]),
            "silhouette_by_segment": segment_silhouettes(result),"kind": kind, "month": summary["month"], "parent": parent, "input": summary["input"],
            "input_sha256": summary["input_sha256"], "k": summary["k"], "engine": summary["engine"],
            "update_mode": cfg["update"]["mode"] if kind == "update" else None,
            "metrics": {key: summary[key] for key in ("inertia", "silhouette", "calinski_harabasz", "davies_bouldin")},
            "rows_kept": summary["rows_kept"], "features": summary["features"], "config_sha256": config_digest(cfg),
            "segments": [{key: s[key] for key in ("cluster", "name", "share", "users")} for s in summary["segments"]]}


def run_job(cfg: dict, catalog: Catalog, client, data=None, month=None, replace=False, monitor=None,
            locked: bool = False, previous=None) -> dict:
    """The whole job; returns the run summary (also written to <out>/run_summary.json).

    run_summary.json is the run's commit mark: it is removed before the first
    output changes and written last, so when it exists every output beside it
    comes from the run it describes. `locked`: the caller already holds
    folder_lock(catalog.out_dir) (the API's `run` takes it before starting a cluster).
    `previous`: update.previous_segments(...) for a monthly update (k and start from that model).
    """
    from mailseg_dist.workflows.versions import current_version

    started = time.perf_counter()
    with contextlib.nullcontext() if locked else folder_lock(catalog.out_dir, "mailseg run"):
        manifest = ingest_stage(cfg, catalog, client, data, month, replace)
        result, table = fit_stage(manifest, cfg, client, previous)
        return write_stage(result, table, manifest, cfg, catalog.out_dir, client, previous, monitor, started,
                           kind="run", parent=current_version(catalog.out_dir))


def build_summary(manifest: dict, result, outputs: dict, timings: dict, cfg: dict) -> dict:
    return {
        "status": "ok", "month": manifest["month"], "input": manifest["source"], "input_sha256": manifest["sha256"],
        "ingest_skipped": manifest.get("skipped", False),
        "rows_in": manifest["rows_in"], "rows_kept": manifest["rows_kept"], "rows_rejected": manifest["rows_rejected"],
        "rows_reconciled": manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"],
        "rejects_by_reason": manifest["rejects_by_reason"], "rejects_path": manifest["rejects_path"],
        "parquet_path": manifest["users_path"],
        "k": result.k, "k_reason": k_reason_text(result.k_reason, cfg["report"]["lang"]), "k_choice": result.k_reason,
        "k_table": result.k_table, "engine": result.engine,
        "features": result.feature_names, "seed": cfg["model"]["seed"], "n_iter": result.n_iter,
        "inertia": result.inertia, "silhouette": result.silhouette,
        "calinski_harabasz": result.calinski_harabasz, "davies_bouldin": result.davies_bouldin,
        "stability": {str(c): v for c, v in result.stability.items()},
        "segments": outputs.get("segments", []), "outputs": outputs["files"], "timings": timings,
    }
