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
import json
import logging
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sklearn.decomposition import PCA

from .atomic import folder_lock, write_json
from .errors import InputDataError, UsageError
from .export import XLSX_NAME, write_results_xlsx, write_user_results
from .features import feature_names
from .ingest import ingest
from .model_files import METADATA_JSON, PLAIN_JSON, load_plain_model
from .paths import Catalog
from .publish import SEGMENTS_JSON, load_segment_table
from .storage import as_location, file_sha256, remove_tree

log = logging.getLogger("mailseg")


def verify_model_dir(model_dir: Path, trust_unverified: bool) -> dict:
    """Metadata of the model folder after checking every recorded file's SHA-256."""
    meta_path = model_dir / METADATA_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        recorded = meta["files"]
    except (OSError, ValueError, KeyError, TypeError):
        meta, recorded = {}, {}
        problem = f"{meta_path}: no readable model metadata (expected the output folder of `mailseg run`)"
        if not trust_unverified:
            raise InputDataError(problem + "; pass --trust-unverified only for files you trust") from None
        warnings.warn(problem, stacklevel=2)
    for name, info in recorded.items():
        path = model_dir / name
        if not path.exists() or file_sha256(path) != info.get("sha256"):
            problem = f"{path}: SHA-256 does not match {METADATA_JSON} (file changed or missing)"
            if not trust_unverified:
                raise InputDataError(problem + "; refusing to use this model")
            warnings.warn(problem, stacklevel=2)
    if PLAIN_JSON not in recorded and not trust_unverified:
        raise InputDataError(f"{model_dir / PLAIN_JSON}: no SHA-256 recorded for it in {METADATA_JSON}")
    return meta


def _pca_from_plain(plain: dict) -> PCA:
    data = plain["pca"]
    pca = PCA(n_components=len(data["components"]))
    pca.components_ = np.asarray(data["components"], dtype=np.float64)
    pca.mean_ = np.asarray(data["mean"], dtype=np.float64)
    pca.explained_variance_ = np.asarray(data["explained_variance"], dtype=np.float64)
    pca.explained_variance_ratio_ = np.asarray(data["explained_variance_ratio"], dtype=np.float64)
    pca.n_components_, pca.n_features_in_ = len(pca.components_), pca.components_.shape[1]
    return pca


def load_saved_model(model_dir: Path, cfg: dict, trust_unverified: bool) -> SimpleNamespace:
    """What the export stage needs (model, scaler, pca, k) from a verified model folder."""
    meta = verify_model_dir(model_dir, trust_unverified)
    model, scaler = load_plain_model(model_dir)
    plain = json.loads((model_dir / PLAIN_JSON).read_text(encoding="utf-8"))
    wanted = feature_names(cfg["features"])
    if list(plain["features"]) != wanted:
        raise UsageError(f"{model_dir / PLAIN_JSON}: model features {plain['features']} differ from the config's "
                         f"{wanted}; score with the config the model was fitted with")
    return SimpleNamespace(model=model, scaler=scaler, pca=_pca_from_plain(plain), k=int(plain["k"]),
                           k_table=[], k_reason=None, meta=meta)


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
    out = as_location(out_dir) if out_dir else model_dir / "scored"
    with folder_lock(out, "mailseg score"):
        manifest = ingest(input_path, cfg, _scoring_catalog(cfg, catalog), month=month, replace=True,
                          client=client)
        log.info("scoring %d users (%d rejected) with the model in %s", manifest["rows_kept"],
                 manifest["rows_rejected"], model_dir)
        remove_tree(out / "run_summary.json")  # the commit mark: a folder without it is being rewritten
        results = write_user_results(manifest["users_path"], out, saved, table, cfg, lang)
        xlsx = out / XLSX_NAME
        client.submit(write_results_xlsx, results, xlsx, table, [], cfg, lang, None, pure=False).result()
        summary = {"status": "ok", "command": "score", "input": manifest["source"], "input_sha256": manifest["sha256"],
                   "model_dir": str(model_dir), "k": saved.k,
                   "rows_in": manifest["rows_in"], "rows_kept": manifest["rows_kept"],
                   "rows_rejected": manifest["rows_rejected"], "rejects_path": manifest["rejects_path"],
                   "rejects_by_reason": manifest["rejects_by_reason"], "parquet_path": manifest["users_path"],
                   "outputs": {"user_results": str(results), "xlsx": str(xlsx)},
                   "timings": {"total": round(time.perf_counter() - started, 3)}}
        write_json(out / "run_summary.json", summary)
    return summary
