"""The modelling stage: users Parquet folder → scaler, k search, final k-means, quality.

Passes over the full data (workers read the Parquet files; the client only
gets sums and a bounded hashed sample): 1 read for the scaler, the sample and
the features kept in worker memory when they fit (model/prepare.py), ≤ max_iter Lloyd
passes for all candidate k together (the last pass of each k also yields its
ClusterStats), plus the other engines' own passes and one stats pass when the
final engine is not lloyd. Same data + seed ⇒ same result on any partitioning
or number of workers for lloyd (minibatch depends on the partitioning).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.progress import compute
from mailseg_dist.core.stages import Stages
from mailseg_dist.core.storage import as_location
from mailseg_dist.inputs.sampling import U_COLUMN
from mailseg_dist.model.blend import fit_blend
from mailseg_dist.model.engines import EngineResult, fit_many, get_engine
from mailseg_dist.model.features import feature_frame, feature_names
from mailseg_dist.model.kernels import ClusterStats, assign_stats, nearest
from mailseg_dist.model.matching import matching
from mailseg_dist.model.quality import (
    bootstrap_stability,
    calinski_harabasz,
    davies_bouldin,
    fit_pca,
    silhouette_draw,
    silhouette_summary,
    silhouette_values,
)
from mailseg_dist.model.prepare import Prepared, prepare
from mailseg_dist.model.selection import choose_k

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
    k_reason: dict                      # why this k, as data: model.selection.choose_k; worded by segments.texts
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
    blend: dict | None = None           # blend update: decay, weights, J per pass, ids the matching would swap


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


def _k_row(k: int, stats: ClusterStats, n_iter: int, xs: np.ndarray, cfg: dict):
    """One row of the k table, and the silhouette details for the chosen k."""
    rows, details = _k_rows({k: (stats, n_iter)}, xs, cfg)
    return rows[0], details[k]


def _k_rows(fits: dict, xs: np.ndarray, cfg: dict) -> tuple[list[dict], dict]:
    """The k table's rows (k → (stats, n_iter) in `fits`) and each k's silhouette details.

    The silhouettes (5,000 points each) are tasks side by side on the workers: nine of them one after the
    other on the client took 2.9 s of a 5.6 s k search at 212,292 users."""
    scfg, seed = cfg["selection"], int(cfg["model"]["seed"])
    labels, draws = {}, {}
    for k, (stats, _) in fits.items():
        if (stats.counts > 0).sum() < 2 or len(np.unique(stats.centers, axis=0)) < k:
            raise InputDataError(f"k={k}: the users have fewer than {k} distinct feature vectors; "
                                 "lower model.k / k_max")
        labels[k] = nearest(xs, stats.centers)[0]
        draws[k] = silhouette_draw(labels[k], scfg["silhouette_sample"], scfg["silhouette_min_per_cluster"], seed,
                                   population_counts={j: int(c) for j, c in enumerate(stats.counts)})
    values = compute(*[None if draws[k] is None else
                       dask.delayed(silhouette_values)(xs[draws[k]["chosen"]], labels[k][draws[k]["chosen"]])
                       for k in fits])
    rows, details = [], {}
    for (k, (stats, n_iter)), sil_values in zip(fits.items(), values):
        sil = silhouette_summary(draws[k], labels[k], sil_values)
        rows.append({"k": k, "engine": "lloyd", "inertia": stats.inertia, "silhouette": sil[0],
                     "calinski_harabasz": calinski_harabasz(stats), "davies_bouldin": davies_bouldin(stats),
                     "sizes": [int(c) for c in stats.counts], "n_iter": int(n_iter)})
        details[k] = (labels[k], sil)
    return rows, details


def _sample_frame(sample: pd.DataFrame, xs: np.ndarray, labels, per_sample, pca: PCA, fcfg: dict) -> pd.DataFrame:
    out = sample.drop(columns=[U_COLUMN])
    feats = feature_frame(out, fcfg)
    out = pd.concat([out, feats[[c for c in feats.columns if c not in out.columns]]], axis=1)
    out["label"] = labels.astype(np.int64)
    out["silhouette"] = per_sample
    for i, column in enumerate(pca.transform(xs).T):
        out[f"pca{i + 1}"] = column
    return out


def fit_segments(users_path: str | Path, cfg: dict, client=None, start: np.ndarray | None = None,
                 blend=None) -> ModelResult:
    """Fit the segmentation on the users folder; runs on `client` when given, else on Dask's default scheduler.

    `start`: k × d centres in feature units (a previous model's, for a monthly update): k is theirs, the
    engine starts from them and centre j keeps id j (see update.py).
    `blend`: update.previous_segments(...) plus `months_elapsed` for the `blend` update (model/blend.py):
    its scaler is kept (not refitted), its centres (`start` is ignored) are the anchors of weighted Lloyd.
    """
    scope = dask.config.set(scheduler=client) if client is not None else contextlib.nullcontext()
    with scope:
        return _fit_segments(as_location(users_path), cfg, client, start, blend)


def _follow_ids(result: EngineResult, init: np.ndarray, data) -> tuple[EngineResult, bool]:
    """Reorder the centres so that centre j is the one that best continues start centre j."""
    order = matching(init, result.centers)
    if np.array_equal(order, np.arange(len(order))):
        return result, False
    centers = result.centers[order]
    stats = assign_stats(data, centers)
    return EngineResult(centers, result.n_iter, result.history, stats.inertia, stats), True


def _candidate_ks(cfg: dict, start) -> tuple[list[int], bool]:
    mcfg = cfg["model"]
    if mcfg["k"] == "auto" and start is None:
        return list(range(mcfg["k_min"], mcfg["k_max"] + 1)), True
    return [int(mcfg["k"] if start is None else len(start))], False


def _search_rows(prep: Prepared):
    """Where the k search runs: every user, or the hashed sample's rows kept on the workers (sent once)."""
    if prep.xs_search is None:
        return prep.data, f"{prep.n_rows:,} users"
    rows = len(prep.xs_search)
    return da.from_array(prep.xs_search, chunks=(-(-rows // 8), -1)).persist(), f"a hashed sample of {rows:,} users"


def _search(prep: Prepared, ks: list[int], cfg: dict, clock: Stages) -> tuple[list[dict], dict, dict]:
    """Lloyd for every candidate k at once (one pass serves them all): the k table and each fit.

    Above selection.search_rows users the search runs on that many rows of the hashed sample and only the
    chosen k is fitted on all of them (from the search's centres): at 10M users the search over every row took
    49 of a 114 s run; on a 2M-row sample 20 s, plus 2.6 s for the final fit (bench/bench_e2e.py)."""
    data, where = _search_rows(prep)
    with clock("k_search", f"searching k in {ks[0]}..{ks[-1]} on {where} (Lloyd, one pass serves every k)"):
        fits = fit_many(data, ks, cfg["model"], sample=prep.xs_start)
        table, details = _k_rows({k: (fits[k].stats, fits[k].n_iter) for k in ks}, prep.xs, cfg)
    return table, details, fits


def _pick_k(table: list[dict], ks: list[int], search: bool, start, cfg: dict) -> tuple[int, dict]:
    """k and why, as data (the outputs word it in the report's language)."""
    if start is not None:
        return ks[0], {"rule": "update", "k": ks[0]}
    if search:
        scfg = cfg["selection"]
        return choose_k(table, int(scfg["knee_window"]), float(scfg["min_segment_share"]),
                        float(scfg["knee_tolerance"]))
    return ks[0], {"rule": "fixed", "k": ks[0]}


def _final_fit(prep: Prepared, k: int, cfg: dict, fits: dict, init) -> tuple[EngineResult, ClusterStats, bool]:
    engine, mcfg = cfg["model"]["engine"], cfg["model"]
    reordered = False
    if init is not None:
        result = get_engine(engine)(prep.data, k, mcfg, init_centers=init, sample=prep.xs_start)
        result, reordered = _follow_ids(result, init, prep.data)
    elif engine == "lloyd" and prep.xs_search is not None:  # searched on a sample: the chosen k on every row
        result = get_engine(engine)(prep.data, k, mcfg, init_centers=fits[k].centers, sample=prep.xs_start)
    else:
        result = fits[k] if engine == "lloyd" else get_engine(engine)(prep.data, k, mcfg, sample=prep.xs_start)
    stats = result.stats if result.stats is not None else assign_stats(prep.data, result.centers)
    return result, stats, reordered


def _quality(prep: Prepared, k: int, stats: ClusterStats, n_iter: int, table: list[dict], details: dict,
             cfg: dict) -> dict:
    """Silhouette (the search's when it ran this engine), PCA from the sums, bootstrap stability, the model."""
    engine, qcfg, mcfg = cfg["model"]["engine"], cfg["quality"], cfg["model"]
    if k in details and engine == "lloyd":
        labels, (silhouette, by_cluster, per_sample) = details[k]
    else:  # the search (if any) ran lloyd; the final engine's centres need their own silhouette
        row, (labels, (silhouette, by_cluster, per_sample)) = _k_row(k, stats, n_iter, prep.xs, cfg)
        table = table or [dict(row, engine=engine)]
    pca = fit_pca(stats, min(int(qcfg["pca_components"]), len(prep.scaler.mean_)))
    stability = bootstrap_stability(prep.xs[: int(qcfg["bootstrap_sample"])], k, stats.centers,
                                    int(qcfg["bootstrap_rounds"]), int(mcfg["seed"]), int(mcfg["n_init"]))
    return {"silhouette": silhouette, "silhouette_by_cluster": by_cluster, "pca": pca, "stability": stability,
            "k_table": table, "model": build_model(stats.centers, stats.inertia, n_iter, int(mcfg["seed"])),
            "sample": _sample_frame(prep.sample, prep.xs, labels, per_sample, pca, cfg["features"])}


def _warm_up_in_background(d: int) -> None:
    """numba's set-up for the client's `nearest` calls (fused.warm_up) in a thread, while the workers read
    the users. 212,292 users, --k auto, 3 alternated runs: the model stage took 3.3-3.4 s with NumPy's
    kernels, 3.9-4.0 s with the compiled loops, 3.8 s with this (~0.15 s saved). Warming the workers too
    (Client.run) saved nothing: their threads slowed the first read by as much (0.75 → 1.15 s)."""
    from mailseg_dist.model.fused import warm_up_in_background

    warm_up_in_background(d)


def _fit_segments(users_path: Path, cfg: dict, client, start: np.ndarray | None = None, blend=None) -> ModelResult:
    """prepare → candidate k (search) → pick k → final fit (or the blend update) → quality."""
    clock = Stages("model ")
    get_engine(cfg["model"]["engine"])  # validate the name before any pass
    _warm_up_in_background(len(feature_names(cfg["features"])))
    start = start if blend is None else blend.centers
    ks, search = _candidate_ks(cfg, start)
    prep = prepare(users_path, cfg, client, clock, max(ks), None if blend is None else blend.scaler, search)
    table, details, fits = [], {}, {}
    if search or (cfg["model"]["engine"] == "lloyd" and start is None):
        table, details, fits = _search(prep, ks, cfg, clock)
    k, why = _pick_k(table, ks, search, start, cfg)
    if prep.xs_search is not None:
        why = {**why, "search_rows": len(prep.xs_search), "n_rows": prep.n_rows}
    init = None if start is None else (np.asarray(start, dtype=np.float64) - prep.scaler.mean_) / prep.scaler.scale_
    engine, info = cfg["model"]["engine"] if blend is None else "blend", None
    with clock("final_fit", f"final fit, k={k}, engine {engine}"):
        if blend is None:
            result, stats, reordered = _final_fit(prep, k, cfg, fits, init)
        else:  # ids kept by construction: centre j grows from anchor j, no reordering
            result, info = fit_blend(prep.data, blend, cfg["update"], float(cfg["model"]["tol"]))
            stats, reordered, why = result.stats, False, {**why, "mode": "blend"}
    with clock("quality", "silhouette, PCA and bootstrap stability"):
        searched_all = start is None and prep.xs_search is None  # else the final centres are not the search's
        quality = _quality(prep, k, stats, result.n_iter, table, details if searched_all else {}, cfg)
    prep.data = None  # releases persisted chunks on the workers
    return ModelResult(
        k=k, engine=engine, scaler=prep.scaler, feature_names=feature_names(cfg["features"]),
        centers=stats.centers, inertia=stats.inertia, calinski_harabasz=calinski_harabasz(stats),
        davies_bouldin=davies_bouldin(stats), k_reason=why, cluster_sizes={j: int(c) for j, c in enumerate(stats.counts)},
        n_rows=prep.n_rows, n_iter=result.n_iter, timings=clock.timings, stats=stats, cached=prep.cached,
        ids_reordered=reordered, blend=info, **quality)
