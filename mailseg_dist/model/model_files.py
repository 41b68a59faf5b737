"""Model files: the pickles (joblib) with SHA-256 metadata, and the same model as plain JSON.

- modelo_clustering.pkl, escalador.pkl: the fitted estimator and StandardScaler (joblib.dump),
  as the notebook saved them.
- modelo_metadata.json (written last): features, k, engine, seed, metrics, library
  versions, input hashes and run facts passed in `meta`, creation time and the SHA-256
  of every file above. `load_model_files` checks the SHA-256 BEFORE unpickling and
  refuses a changed pickle or one without metadata (unpickling runs code).
- modelo.json: centres, scaler means/scales, feature names and PCA as plain numbers, so
  `load_plain_model` can score without unpickling anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import dask
import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.decomposition import PCA

from mailseg_dist.core.atomic import atomic_path, write_json
from mailseg_dist.core.catalog import METADATA_JSON, MODEL_PKL, PLAIN_JSON, SCALER_PKL
from mailseg_dist.core.errors import InputDataError, UsageError
from mailseg_dist.core.storage import as_location, file_sha256
from mailseg_dist.model.features import feature_names

PLAIN_FORMAT = "mailseg-plain-model/1"


def _plain(value):
    """JSON-ready copy: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _versions() -> dict:
    import platform

    import distributed
    import joblib
    import sklearn

    from mailseg_dist.core.version import __version__

    return {"python": platform.python_version(), "mailseg": __version__, "scikit-learn": sklearn.__version__,
            "dask": dask.__version__, "distributed": distributed.__version__, "pandas": pd.__version__,
            "numpy": np.__version__, "pyarrow": pa.__version__, "joblib": joblib.__version__}


def _plain_model(result) -> dict:
    scaler, pca = result.scaler, result.pca
    return _plain({"format": PLAIN_FORMAT, "k": result.k, "features": list(result.feature_names),
                   "scaler": {"mean": scaler.mean_, "scale": scaler.scale_, "var": scaler.var_,
                              "n_samples_seen": scaler.n_samples_seen_},
                   "centers": result.model.cluster_centers_,
                   "pca": {"components": pca.components_, "mean": pca.mean_,
                           "explained_variance": pca.explained_variance_,
                           "explained_variance_ratio": pca.explained_variance_ratio_}})


def write_model_files(out_dir, model_result, meta: dict) -> dict:
    """Pickles (joblib), their metadata with SHA-256 (written last) and modelo.json; returns name → path."""
    out_dir = as_location(out_dir)
    paths = {"model": out_dir / MODEL_PKL, "scaler": out_dir / SCALER_PKL,
             "metadata": out_dir / METADATA_JSON, "plain": out_dir / PLAIN_JSON}
    for key, obj in (("model", model_result.model), ("scaler", model_result.scaler)):
        with atomic_path(paths[key], suffix=".pkl") as tmp:
            joblib.dump(obj, tmp)
    write_json(paths["plain"], _plain_model(model_result))
    r = model_result
    metrics = {"inertia": r.inertia, "silhouette": r.silhouette, "calinski_harabasz": r.calinski_harabasz,
               "davies_bouldin": r.davies_bouldin, "stability": r.stability, "cluster_sizes": r.cluster_sizes,
               "n_rows": r.n_rows, "n_iter": r.n_iter}
    metadata = {**_plain(meta), "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "k": r.k, "engine": r.engine, "features": list(r.feature_names), "metrics": _plain(metrics),
                "library_versions": _versions(),
                "files": {p.name: {"sha256": file_sha256(p)} for p in (paths["model"], paths["scaler"], paths["plain"])}}
    write_json(paths["metadata"], metadata)
    return paths


def _verified(model_dir: Path, name: str, trust_unverified: bool):
    path, meta_path = model_dir / name, model_dir / METADATA_JSON
    if not path.exists():
        raise InputDataError(f"{path}: model file not found")
    try:
        expected = json.loads(meta_path.read_text(encoding="utf-8"))["files"][name]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        expected = None
    content = path.read_bytes()  # hashed and unpickled from the same bytes: a swap in between cannot slip through
    if expected is None or expected != hashlib.sha256(content).hexdigest():
        problem = ("no SHA-256 for it in " + METADATA_JSON) if expected is None else \
            "its SHA-256 does not match " + METADATA_JSON
        if not trust_unverified:
            raise InputDataError(f"{path}: refusing to unpickle, {problem} (pass trust_unverified=True only for a "
                                 "file you trust)")
        warnings.warn(f"{path}: unpickling an unverified file ({problem})", stacklevel=3)
    return joblib.load(io.BytesIO(content))


def load_model_files(model_dir, trust_unverified: bool = False) -> tuple:
    """(model, scaler) from the pickles, each checked against modelo_metadata.json before unpickling."""
    model_dir = as_location(model_dir)
    return (_verified(model_dir, MODEL_PKL, trust_unverified), _verified(model_dir, SCALER_PKL, trust_unverified))


def load_plain_model(model_dir) -> tuple:
    """(KMeans, StandardScaler) rebuilt from modelo.json: no unpickling, same predictions."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    path = as_location(model_dir) / PLAIN_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["format"] == PLAIN_FORMAT
        centers, sc = np.asarray(data["centers"], dtype=np.float64), data["scaler"]
        scaler = StandardScaler()
        scaler.mean_ = np.asarray(sc["mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(sc["scale"], dtype=np.float64)
        scaler.var_, scaler.n_samples_seen_ = np.asarray(sc["var"], dtype=np.float64), sc["n_samples_seen"]
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise InputDataError(f"{path}: not a readable {PLAIN_FORMAT} file ({type(exc).__name__}: {exc})") from None
    scaler.n_features_in_ = len(data["features"])
    scaler.feature_names_in_ = np.asarray(data["features"], dtype=object)
    model = KMeans(n_clusters=len(centers))
    model.cluster_centers_, model.n_features_in_ = centers, centers.shape[1]
    model._n_threads = _openmp_effective_n_threads()
    return model, scaler


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
