"""Wiring of `mailseg run` (and `update`): which data, then ingest → model → publish, with one summary.

Stage functions live in their own modules; this file only decides their order,
times them and reconciles the counts that the summary reports.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from mailseg_dist.core.atomic import folder_lock, write_json
from mailseg_dist.core.catalog import SUMMARY_JSON, Catalog, check_month
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.inputs.ingest import ingest, read_manifest

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


def resolve_month(cfg: dict, catalog: Catalog, client, input_path, month, replace) -> dict:
    """Ingest INPUT if given; else model --month, the latest month, or the default data."""
    if input_path is None and month is None and catalog.months():
        month = catalog.months()[-1]
    if input_path is None and month is not None:
        manifest = read_manifest(catalog, check_month(month))
        if manifest is None:
            raise InputDataError(f"{catalog.users(month)}: month {month} has not been ingested; "
                                 "run `mailseg ingest FILE --month " + month + "` first")
        return {**manifest, "skipped": True, "timings": {}}
    if input_path is None:
        input_path = ensure_default_input(cfg, catalog)
    return ingest(input_path, cfg, catalog, month=month, replace=replace, client=client)


def _check_enough_rows(manifest: dict, cfg: dict) -> None:
    model = cfg["model"]
    needed = model["k_max"] if model["k"] == "auto" else model["k"]
    if manifest["rows_kept"] < needed:
        raise InputDataError(
            f"{manifest['source']}: n_samples={manifest['rows_kept']} kept rows should be >= n_clusters={needed} "
            f"(rows read {manifest['rows_in']}, rejected {manifest['rows_rejected']}: see {manifest['rejects_path']})")


def run_job(cfg: dict, catalog: Catalog, client, input_path=None, month=None, replace=False, monitor=None,
            locked: bool = False, previous=None) -> dict:
    """The whole job; returns the run summary (also written to <out>/run_summary.json).

    run_summary.json is the run's commit mark: it is removed before the first
    output changes and written last, so when it exists every output beside it
    comes from the run it describes. `locked`: the caller already holds
    folder_lock(catalog.out_dir) (the CLI takes it before starting a cluster).
    `previous`: update.previous_segments(...) for a monthly update (k and start from that model).
    """
    from mailseg_dist.model.modelling import fit_segments
    from mailseg_dist.outputs.publish import publish

    started = time.perf_counter()
    summary_path = catalog.out_dir / SUMMARY_JSON
    with contextlib.nullcontext() if locked else folder_lock(catalog.out_dir, "mailseg run"):
        manifest = resolve_month(cfg, catalog, client, input_path, month, replace)
        log.info("month %s: %d rows read = %d kept + %d rejected", manifest["month"], manifest["rows_in"],
                 manifest["rows_kept"], manifest["rows_rejected"])
        _check_enough_rows(manifest, cfg)
        t_model = time.perf_counter()
        log.info("fitting segments on %s", manifest["users_path"])
        result = fit_segments(manifest["users_path"], cfg, client,
                              start=None if previous is None else previous.centers)
        log.info("k=%d with engine %s: inertia %.1f, silhouette %.3f", result.k, result.engine, result.inertia,
                 result.silhouette)
        t_publish = time.perf_counter()
        summary_path.unlink(missing_ok=True)  # from here on the folder mixes runs until the new mark
        outputs = publish(result, manifest, cfg, catalog, client)
        timings = {**{f"ingest_{k}": v for k, v in manifest.get("timings", {}).items()},
                   **{f"model_{k}": round(v, 3) for k, v in result.timings.items()},
                   "model": round(t_publish - t_model, 3), "publish": round(time.perf_counter() - t_publish, 3),
                   "total": round(time.perf_counter() - started, 3)}
        summary = build_summary(manifest, result, outputs, timings, cfg)
        if previous is not None:
            from mailseg_dist.workflows.update import update_block

            summary["update"] = update_block(previous, result.scaler, result.centers, summary["segments"],
                                             result.ids_reordered)
        if monitor is not None:
            summary["cluster"] = monitor.report()
        write_json(summary_path, summary)
    return summary


def build_summary(manifest: dict, result, outputs: dict, timings: dict, cfg: dict) -> dict:
    return {
        "status": "ok", "month": manifest["month"], "input": manifest["source"], "input_sha256": manifest["sha256"],
        "ingest_skipped": manifest.get("skipped", False),
        "rows_in": manifest["rows_in"], "rows_kept": manifest["rows_kept"], "rows_rejected": manifest["rows_rejected"],
        "rows_reconciled": manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"],
        "rejects_by_reason": manifest["rejects_by_reason"], "rejects_path": manifest["rejects_path"],
        "parquet_path": manifest["users_path"],
        "k": result.k, "k_reason": result.k_reason, "k_table": result.k_table, "engine": result.engine,
        "features": result.feature_names, "seed": cfg["model"]["seed"], "n_iter": result.n_iter,
        "inertia": result.inertia, "silhouette": result.silhouette,
        "calinski_harabasz": result.calinski_harabasz, "davies_bouldin": result.davies_bouldin,
        "stability": {str(c): v for c, v in result.stability.items()},
        "segments": outputs.get("segments", []), "outputs": outputs["files"], "timings": timings,
    }
