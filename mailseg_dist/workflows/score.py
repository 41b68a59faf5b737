"""`mailseg score`: label new users with a saved model, without refitting and without unpickling.

The model folder's files are checked against the SHA-256 recorded in
modelo_metadata.json (a mismatch or a missing record is refused unless
--trust-unverified); the centres, scaler and PCA are then rebuilt from the
plain-data modelo.json, so no code from a file is ever executed. The input
goes through the same readers, cleaning and rejects ledger as `run`, into the
data folder's `scoring/` layers.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from types import SimpleNamespace

from mailseg_dist.core.atomic import folder_lock, write_json
from mailseg_dist.core.catalog import (
    PLAIN_JSON,
    SCORED_SUBDIR,
    SEGMENTS_JSON,
    SUMMARY_JSON,
    USERS_SUBDIR,
    XLSX_NAME,
    Catalog,
)
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.storage import as_location, remove_tree
from mailseg_dist.inputs.ingest import ingest, ingest_frame
from mailseg_dist.model.model_files import load_saved_model
from mailseg_dist.outputs.export import user_scoring, write_user_results
from mailseg_dist.outputs.segment_files import load_segment_table
from mailseg_dist.outputs.workbook import cancelled_on_error, write_workbook_task
from mailseg_dist.workflows.run import is_frame

log = logging.getLogger("mailseg")


def load_scoring_model(model_dir: Path, cfg: dict, trust_unverified: bool) -> SimpleNamespace:
    """The verified model plus its segment table (`.segments`), checked to belong together.

    Cheap (small files only): the CLI calls it before starting a cluster, so a
    refused model folder costs no cluster start.
    """
    model_dir = as_location(model_dir)
    saved = load_saved_model(model_dir, cfg, trust_unverified)
    table = load_segment_table(model_dir)
    clusters = sorted(int(c) for c in table.index)
    if clusters != list(range(saved.k)):
        raise InputDataError(f"{model_dir / SEGMENTS_JSON}: segments {clusters} do not belong to the model in "
                             f"{model_dir / PLAIN_JSON} (k={saved.k}); the run that wrote this folder did not "
                             "finish: rerun `mailseg run`")
    saved.segments = table
    return saved


def _scoring_catalog(cfg: dict, catalog: Catalog) -> Catalog:
    """Same data folder, separate `scoring/` layers so scored files never mix with modelled months."""
    scoring_cfg = copy.deepcopy(cfg)
    for key in ("raw_subdir", "users_subdir", "rejects_subdir", "manifests_subdir"):
        scoring_cfg["paths"][key] = f"scoring/{cfg['paths'][key]}"
    return Catalog(scoring_cfg, data_dir=str(catalog.data_dir), out_dir=str(catalog.out_dir))


def score_file(input_path, cfg: dict, catalog: Catalog, client, out_dir=None, month=None,
               trust_unverified: bool = False, saved: SimpleNamespace | None = None) -> dict:
    """Score `input_path` with the model in catalog.out_dir; `saved`: load_scoring_model's result if already loaded."""
    started = time.perf_counter()
    model_dir = catalog.out_dir
    if saved is None:
        saved = load_scoring_model(model_dir, cfg, trust_unverified)
    table = saved.segments
    lang = cfg["report"]["lang"]
    out = as_location(out_dir) if out_dir else model_dir / SCORED_SUBDIR
    with folder_lock(out, "mailseg score"):
        ingest_any = ingest_frame if is_frame(input_path) else ingest  # a path, or a pandas/Dask DataFrame
        manifest = ingest_any(input_path, cfg, _scoring_catalog(cfg, catalog), month=month, replace=True,
                              client=client)
        log.info("scoring %d users (%d rejected) with the model in %s", manifest["rows_kept"],
                 manifest["rows_rejected"], model_dir)
        remove_tree(out / SUMMARY_JSON)  # the commit mark: a folder without it is being rewritten
        xlsx, scoring = out / XLSX_NAME, user_scoring(manifest["users_path"], saved, table, cfg, lang)
        workbook = client.submit(write_workbook_task, out / USERS_SUBDIR, xlsx, table, [], cfg, lang, None,
                                 scoring=scoring, pure=False)  # beside the per-user results (see publish)
        with cancelled_on_error(workbook):
            results = write_user_results(manifest["users_path"], out, saved, table, cfg, lang, scoring=scoring)
        workbook.result()
        summary = {"status": "ok", "command": "score", "input": manifest["source"], "input_sha256": manifest["sha256"],
                   "model_dir": str(model_dir), "k": saved.k,
                   "rows_in": manifest["rows_in"], "rows_kept": manifest["rows_kept"],
                   "rows_rejected": manifest["rows_rejected"], "rejects_path": manifest["rejects_path"],
                   "rejects_by_reason": manifest["rejects_by_reason"], "parquet_path": manifest["users_path"],
                   "outputs": {"user_results": str(results), "xlsx": str(xlsx)},
                   "timings": {"total": round(time.perf_counter() - started, 3)}}
        write_json(out / SUMMARY_JSON, summary)
    return summary
