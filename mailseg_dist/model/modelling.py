"""The modelling stage: users Parquet folder → scaler, k search, final k-means, quality.

Passes over the full data (workers read the Parquet files; the client only
gets sums and a bounded hashed sample): 1 scaler, 1 sample, ≤ max_iter Lloyd
passes for all candidate k together (the last pass of each k also yields its
ClusterStats), plus the other engines' own passes and one stats pass when the
final engine is not lloyd. Same data + seed ⇒ same result on any partitioning
or number of workers for lloyd (minibatch depends on the partitioning).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.parquet import parquet_files
from mailseg_dist.core.storage import as_location, parquet_metadata
from mailseg_dist.inputs.sampling import U_COLUMN, draw_sample
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, ID
from mailseg_dist.model.engines import EngineResult, fit_many, get_engine
from mailseg_dist.model.features import feature_frame, feature_names, raw_columns
from mailseg_dist.model.kernels import ClusterStats, assign_stats, nearest
from mailseg_dist.model.matching import matching
from mailseg_dist.model.quality import (
    bootstrap_stability,
    calinski_harabasz,
    davies_bouldin,
    fit_pca,
    stratified_silhouette,
)
from mailseg_dist.model.scaler import ScaledData, fit_scaler, scale, scaled_from_parquet
from mailseg_dist.model.selection import choose_k

CACHE_SHARE = 0.25  # cache_features: auto persists when the scaled matrix needs < 25% of cluster memory


@dataclass
class ModelResult:
    k: int
    engine: str
    scaler: StandardScaler
    model: KMeans                       # fitted; predict(scaler.transform(features)) gives the labels
    feature_names: list[str]
    centers: np.ndarray                 # k × d, scaled space (= model.cluster_centers_)
    inertia: float                      # over all rows
    silhouette: float                   # stratified exact silhouette, population-weighted
    silhouette_by_cluster: dict[int, np.ndarray]
    calinski_harabasz: float
    davies_bouldin: float
    k_table: list[dict]                 # per k: k, inertia, silhouette, calinski_harabasz, davies_bouldin, sizes, n_iter
    k_reason: str
    pca: PCA
    stability: dict[int, float]         # cluster → mean bootstrap Jaccard
    cluster_sizes: dict[int, int]       # cluster → users (all rows)
    sample: pd.DataFrame                # hashed sample: Id, clean columns, features, label, silhouette, pca1..
    n_rows: int
    n_iter: int
    timings: dict[str, float] = field(default_factory=dict)
    stats: ClusterStats | None = None   # full-data sums of the final model
    cached: bool = False                # scaled features were kept in worker memory
    ids_reordered: bool = False         # update: new centres reordered so each id follows its old segment


def build_model(centers: np.ndarray, inertia: float, n_iter: int, seed: int) -> KMeans:
    """A genuine fitted sklearn KMeans whose centres are `centers` (fit on the centres, attributes overwritten)."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    k = centers.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = KMeans(n_clusters=k, init=centers, n_init=1, max_iter=1, random_state=seed).fit(centers)
    model.cluster_centers_, model.inertia_, model.n_iter_ = centers.copy(), float(inertia), int(n_iter)
    del model.labels_  # labels of the k centres, not of the users: dropped so nobody mistakes them
    if not np.array_equal(model.predict(centers), np.arange(k)):
        raise RuntimeError("final centres are not distinct: each centre must predict its own cluster")
    return model


def _cache(setting, data: ScaledData, client) -> bool:
    if setting is True or setting is False:
        return setting
    if setting != "auto":
        raise ValueError(f"model.cache_features expected auto, true or false, found {setting!r}")
    memory = 0
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
    if not memory:
        import psutil
        memory = psutil.virtual_memory().total
    return data.n_rows * len(data.names) * 8 < CACHE_SHARE * memory


def _k_row(k: int, stats: ClusterStats, n_iter: int, xs: np.ndarray, cfg: dict):
    """One row of the k table, and the silhouette details for the chosen k."""
    scfg = cfg["selection"]
    if (stats.counts > 0).sum() < 2 or len(np.unique(stats.centers, axis=0)) < k:
        raise InputDataError(f"k={k}: the users have fewer than {k} distinct feature vectors; lower model.k / k_max")
    labels = nearest(xs, stats.centers)[0]
    counts = {j: int(c) for j, c in enumerate(stats.counts)}
    sil = stratified_silhouette(xs, labels, scfg["silhouette_sample"], scfg["silhouette_min_per_cluster"],
                                int(cfg["model"]["seed"]), population_counts=counts)
    row = {"k": k, "engine": "lloyd", "inertia": stats.inertia, "silhouette": sil[0], "calinski_harabasz": calinski_harabasz(stats),
           "davies_bouldin": davies_bouldin(stats), "sizes": [int(c) for c in stats.counts], "n_iter": int(n_iter)}
    return row, (labels, sil)


UPDATE_REASON = {"es": "k={k} del modelo anterior (actualización mensual: cada segmento conserva su id)",
                 "en": "k={k} from the previous model (monthly update: each segment keeps its id)"}


class _Clock:
    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 4)


def _read_users(users_path: Path, fcfg: dict):
    files = parquet_files(users_path)
    present = set(parquet_metadata(files[0]).schema.to_arrow_schema().names)
    missing = [c for c in [ID, *raw_columns(fcfg)] if c not in present]
    if missing:
        raise InputDataError(f"{users_path}: users table lacks column(s) {missing} needed by the features")
    columns = [c for c in CLEAN_COLUMNS if c in present]
    return dd.read_parquet([str(f) for f in files], columns=columns), columns


def _sample_frame(sample: pd.DataFrame, xs: np.ndarray, labels, per_sample, pca: PCA, fcfg: dict) -> pd.DataFrame:
    out = sample.drop(columns=[U_COLUMN])
    feats = feature_frame(out, fcfg)
    out = pd.concat([out, feats[[c for c in feats.columns if c not in out.columns]]], axis=1)
    out["label"] = labels.astype(np.int64)
    out["silhouette"] = per_sample
    for i, column in enumerate(pca.transform(xs).T):
        out[f"pca{i + 1}"] = column
    return out


def fit_segments(users_path: str | Path, cfg: dict, client=None, start: np.ndarray | None = None) -> ModelResult:
    """Fit the segmentation on the users folder; runs on `client` when given, else on Dask's default scheduler.

    `start`: k × d centres in feature units (a previous model's, for a monthly update): k is theirs, the
    engine starts from them and centre j keeps id j (see update.py).
    """
    scope = dask.config.set(scheduler=client) if client is not None else contextlib.nullcontext()
    with scope:
        return _fit_segments(as_location(users_path), cfg, client, start)


def _follow_ids(result: EngineResult, init: np.ndarray, data) -> tuple[EngineResult, bool]:
    """Reorder the centres so that centre j is the one that best continues start centre j."""
    order = matching(init, result.centers)
    if np.array_equal(order, np.arange(len(order))):
        return result, False
    centers = result.centers[order]
    stats = assign_stats(data, centers)
    return EngineResult(centers, result.n_iter, result.history, stats.inertia, stats), True


def _fit_segments(users_path: Path, cfg: dict, client, start: np.ndarray | None = None) -> ModelResult:
    fcfg, mcfg, qcfg = cfg["features"], cfg["model"], cfg["quality"]
    engine, seed, clock = mcfg["engine"], int(mcfg["seed"]), _Clock()
    get_engine(engine)  # validate the name before any pass
    ddf, columns = _read_users(users_path, fcfg)
    with clock("scaler"):
        scaler = fit_scaler(ddf, fcfg)
    n_rows = int(scaler.n_samples_seen_)
    search = mcfg["k"] == "auto" and start is None
    ks = list(range(mcfg["k_min"], mcfg["k_max"] + 1)) if search else [int(mcfg["k"] if start is None else len(start))]
    if n_rows <= max(ks):
        raise InputDataError(f"{users_path}: {n_rows} users cannot make {max(ks)} clusters (need more rows than k)")
    with clock("sample"):
        size = max(mcfg["init_sample"], qcfg["bootstrap_sample"], cfg["selection"]["silhouette_sample"])
        # One draw: the hashed sample is ordered by hash, so its first `size` rows are exactly the smaller sample.
        drawn = draw_sample(ddf, max(size, mcfg["refine_sample"]), seed, columns=columns, total=n_rows)
        xs_start = scale(drawn, scaler, fcfg)  # the engines' start (init_sample, then refine_sample rows)
        sample, xs = drawn.iloc[:size], xs_start[:size]  # silhouette, stability, figures
    data = scaled_from_parquet(users_path, scaler, fcfg)
    if data.n_rows != n_rows:
        raise InputDataError(f"{users_path}: the users folder changed during modelling ({n_rows} then {data.n_rows} rows)")
    cached = _cache(mcfg["cache_features"], data, client)
    if cached:
        with clock("cache"):
            data = data.persist()
    table: list[dict] = []
    details, fits, reordered = {}, {}, False
    init = None if start is None else (np.asarray(start, dtype=np.float64) - scaler.mean_) / scaler.scale_
    if search or (engine == "lloyd" and start is None):
        with clock("k_search"):
            fits = fit_many(data, ks, mcfg, sample=xs_start)
            for k in ks:
                row, details[k] = _k_row(k, fits[k].stats, fits[k].n_iter, xs, cfg)
                table.append(row)
    if start is not None:
        k, reason = ks[0], UPDATE_REASON[cfg["report"]["lang"]].format(k=ks[0])
    elif search:
        k, reason = choose_k(table, int(cfg["selection"]["knee_window"]),
                             float(cfg["selection"]["min_segment_share"]), cfg["report"]["lang"])
    else:
        fixed = {"es": "k={k} fijada por configuración (model.k / --k)", "en": "k={k} fixed by config (model.k / --k)"}
        k, reason = ks[0], fixed[cfg["report"]["lang"]].format(k=ks[0])
    with clock("final_fit"):
        if start is not None:
            result = get_engine(engine)(data, k, mcfg, init_centers=init, sample=xs_start)
            result, reordered = _follow_ids(result, init, data)
        else:
            result = fits[k] if engine == "lloyd" else get_engine(engine)(data, k, mcfg, sample=xs_start)
        stats = result.stats if result.stats is not None else assign_stats(data, result.centers)
    with clock("quality"):
        if engine == "lloyd" and start is None:
            labels, (silhouette, by_cluster, per_sample) = details[k]
        else:  # the search (if any) ran lloyd; the final engine's centres need their own silhouette
            row, (labels, (silhouette, by_cluster, per_sample)) = _k_row(k, stats, result.n_iter, xs, cfg)
            table = table or [dict(row, engine=engine)]
        pca = fit_pca(stats, min(int(qcfg["pca_components"]), len(scaler.mean_)))
        stability = bootstrap_stability(xs[: int(qcfg["bootstrap_sample"])], k, stats.centers,
                                        int(qcfg["bootstrap_rounds"]), seed, int(mcfg["n_init"]))
        model = build_model(stats.centers, stats.inertia, result.n_iter, seed)
    del data  # releases persisted chunks on the workers
    return ModelResult(
        k=k, engine=engine, scaler=scaler, model=model, feature_names=feature_names(fcfg), centers=stats.centers,
        inertia=stats.inertia, silhouette=silhouette, silhouette_by_cluster=by_cluster,
        calinski_harabasz=calinski_harabasz(stats), davies_bouldin=davies_bouldin(stats), k_table=table,
        k_reason=reason, pca=pca, stability=stability,
        cluster_sizes={j: int(c) for j, c in enumerate(stats.counts)},
        sample=_sample_frame(sample, xs, labels, per_sample, pca, fcfg), n_rows=n_rows, n_iter=result.n_iter,
        timings=clock.timings, stats=stats, cached=cached, ids_reordered=reordered)
