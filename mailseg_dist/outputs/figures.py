"""PNG figures for the report (matplotlib's object API on the Agg canvas: no pyplot, no global state).

Each function draws one figure from small inputs (k table, segment table, the bounded
hashed sample, silhouette values), writes it atomically and returns its path; labels
are in the report language. A segment keeps the same colour in every figure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from mailseg_dist.core.atomic import atomic_path
from mailseg_dist.core.catalog import FIGURE_FILES, FIGURES_SUBDIR
from mailseg_dist.core.storage import as_location
from mailseg_dist.inputs.sampling import hash_uniform
from mailseg_dist.model.features import feature_frame
from mailseg_dist.segments.profiles import RAW_COLUMNS, population
from mailseg_dist.segments.texts import LEVEL, check_lang

DPI = 110
LEVEL_COLOURS = {"high": "#2e7d32", "low": "#ef8f00"}
L = {
    "es": {"k": "número de segmentos k", "inertia": "inercia (suma de distancias² al centro)",
           "elbow": "Curva del codo: inercia según k", "chosen": "k elegida = {k}",
           "sampled": "inercia en una muestra de {n:,} usuarios\n(suma de distancias² al centro)",
           "quality": "Calidad según k", "sil": "silueta (más alta = mejor)",
           "ch": "Calinski-Harabasz (más alto = mejor)",
           "db": "Davies-Bouldin (más bajo = mejor)",
           "pca": "Usuarios en las dos primeras componentes principales ({n:,} de muestra)",
           "pc": "componente {i} ({v:.0%} de la varianza)",
           "violin": "Silueta por segmento (media global {s:.3f})", "silx": "silueta de cada usuario de la muestra",
           "heat": "Perfil de los segmentos: media de cada variable\n"
                   "(color = desviaciones típicas respecto a la población)",
           "z": "desviaciones típicas respecto a la media de la población",
           "sizes": "Tamaño, compromiso y acción de cada segmento", "users": "usuarios (proporción)",
           "eng": "compromiso medio (línea: media de la población)",
           "cols": ["Envíos", "Rebotes", "Aperturas", "Clics", "Total", "Compra", "Hora", "Día sem.", "Compromiso"]},
    "en": {"k": "number of segments k", "inertia": "inertia (sum of squared distances to the centre)",
           "elbow": "Elbow curve: inertia by k", "chosen": "chosen k = {k}",
           "sampled": "inertia over a sample of {n:,} users\n(sum of squared distances to the centre)",
           "quality": "Quality by k", "sil": "silhouette (higher = better)",
           "ch": "Calinski-Harabasz (higher = better)",
           "db": "Davies-Bouldin (lower = better)",
           "pca": "Users on the first two principal components ({n:,} sampled)",
           "pc": "component {i} ({v:.0%} of the variance)",
           "violin": "Silhouette by segment (overall mean {s:.3f})", "silx": "silhouette of each sampled user",
           "heat": "Segment profiles: mean of each variable\n(colour = standard deviations from the population)",
           "z": "standard deviations from the population mean",
           "sizes": "Size, engagement and action of each segment", "users": "users (share)",
           "eng": "mean engagement (line: population mean)",
           "cols": ["Sends", "Bounces", "Opens", "Clicks", "Total", "Buyer", "Hour", "Weekday", "Engagement"]},
}


def _colour(cluster: int, k: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return cmap(int(cluster) % cmap.N)


def _wrap(text: str, width: int = 30) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def users_axis(axis) -> None:
    """At most 5 whole-number ticks with thousands separators on an axis of user counts: matplotlib's
    default put 8 ticks up to 175000 on the sizes panel, and at 212,292 users their labels ran together."""
    axis.set_major_locator(MaxNLocator(5, integer=True))
    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _save(fig: Figure, path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return as_location(path)


def _k_values(k_table: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = sorted(k_table, key=lambda r: r["k"])
    values = [np.nan if r.get(key) is None else float(r[key]) for r in rows]
    return np.array([r["k"] for r in rows]), np.array(values, dtype=float)


def _mark_k(ax, chosen_k: int, lang: str) -> None:
    ax.axvline(chosen_k, color="#c62828", linestyle="--", linewidth=1.2, label=L[lang]["chosen"].format(k=chosen_k))


def elbow_figure(k_table: list[dict], chosen_k: int, path, lang: str = "es", sample_rows: int | None = None) -> Path:
    """Inertia by k; `sample_rows`: the k search ran on that many users (selection.search_rows), the axis says so."""
    t = L[check_lang(lang)]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ks, inertia = _k_values(k_table, "inertia")
    ax.plot(ks, inertia, marker="o", color="#1565c0")
    _mark_k(ax, chosen_k, lang)
    if chosen_k in ks:
        ax.plot([chosen_k], inertia[list(ks).index(chosen_k)], marker="o", markersize=11, color="#c62828")
    ylabel = t["sampled"].format(n=sample_rows) if sample_rows else t["inertia"]
    ax.set(title=t["elbow"], xlabel=t["k"], ylabel=ylabel, xticks=ks)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def k_quality_figure(k_table: list[dict], chosen_k: int, path, lang: str = "es") -> Path:
    t = L[check_lang(lang)]
    fig = Figure(figsize=(12, 4))
    for i, (key, label) in enumerate([("silhouette", t["sil"]), ("calinski_harabasz", t["ch"]),
                                      ("davies_bouldin", t["db"])]):
        ax = fig.add_subplot(1, 3, i + 1)
        ks, values = _k_values(k_table, key)
        ax.plot(ks, values, marker="o", color="#1565c0")
        _mark_k(ax, chosen_k, lang)
        ax.set(title=label, xlabel=t["k"], xticks=ks)
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    fig.suptitle(t["quality"], fontsize=13)
    return _save(fig, path)


def scatter_sample(sample: pd.DataFrame, max_points: int, seed: int) -> pd.DataFrame:
    """At most `max_points` rows of the sample: those with the smallest Id hash (same on any partitioning)."""
    if len(sample) <= max_points:
        return sample
    return sample.iloc[np.sort(np.argsort(hash_uniform(sample["Id"], seed), kind="stable")[:max_points])]


def pca_scatter_figure(sample: pd.DataFrame, segment_table: pd.DataFrame, scaler, pca, fcfg: dict, path,
                       lang: str = "es", max_points: int = 20000, seed: int = 0, centers=None) -> Path:
    """Sampled users on PC1/PC2, coloured by segment (at most `max_points`, smallest Id hash); centres as X.

    `sample` holds Id, the clean columns and the label ("cluster", or "label" as ModelResult.sample has it).
    """
    t = L[check_lang(lang)]
    sample = scatter_sample(sample, max_points, seed)
    x = scaler.transform(feature_frame(sample, fcfg))
    names = getattr(pca, "feature_names_in_", None)
    pcs = pca.transform(pd.DataFrame(x, columns=names) if names is not None else x)
    fig = Figure(figsize=(9, 6.5))
    ax = fig.add_subplot()
    k = len(segment_table)
    labels = sample["cluster" if "cluster" in sample.columns else "label"].to_numpy()
    for cluster in segment_table.index:
        mask = labels == cluster
        ax.scatter(pcs[mask, 0], pcs[mask, 1], s=5, alpha=0.45, color=_colour(cluster, k), linewidths=0,
                   label=f"{segment_table.loc[cluster, 'nombre']} ({mask.sum():,})")
    if centers is not None:  # each segment's centre, projected like the users
        projected = pca.transform(pd.DataFrame(centers, columns=names) if names is not None else centers)
        for cluster in [c for c in segment_table.index if c < len(projected)]:
            ax.scatter(*projected[cluster], s=160, marker="X", color=_colour(cluster, k), edgecolors="black",
                       linewidths=1.2, zorder=3)
    ratio = pca.explained_variance_ratio_
    ax.set(title=t["pca"].format(n=len(sample)), xlabel=t["pc"].format(i=1, v=ratio[0]),
           ylabel=t["pc"].format(i=2, v=ratio[1]))
    ax.grid(alpha=0.3)
    ax.legend(markerscale=4, fontsize=8, loc="best", framealpha=0.85)
    return _save(fig, path)


def silhouette_figure(silhouette_by_cluster: dict, segment_table: pd.DataFrame, overall: float, path,
                      lang: str = "es") -> Path:
    """One horizontal violin per segment of the sampled users' silhouette values, mean marked."""
    t = L[check_lang(lang)]
    clusters = list(segment_table.index)
    fig = Figure(figsize=(9, 1.0 + 0.8 * len(clusters)))
    ax = fig.add_subplot()
    for pos, cluster in enumerate(clusters):
        values = np.asarray(silhouette_by_cluster.get(cluster, silhouette_by_cluster.get(str(cluster), [])), float)
        values = values[np.isfinite(values)]
        if len(values) >= 2:
            parts = ax.violinplot(values, positions=[pos], orientation="horizontal", showextrema=False, widths=0.8)
            for body in parts["bodies"]:
                body.set(facecolor=_colour(cluster, len(clusters)), alpha=0.7)
        if len(values):
            ax.plot(values.mean(), pos, marker="D", color="black", markersize=5)
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(range(len(clusters)), [_wrap(segment_table.loc[c, "nombre"]) for c in clusters], fontsize=9)
    ax.invert_yaxis()
    ax.set(title=t["violin"].format(s=overall), xlabel=t["silx"], xlim=(-1, 1))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def profile_heatmap_figure(segment_table: pd.DataFrame, path, lang: str = "es") -> Path:
    """Segments × raw columns: colour = (segment mean − population mean) / population std, text = segment mean."""
    t = L[check_lang(lang)]
    pop = population(segment_table)
    means = segment_table[[f"{c}_mean" for c in RAW_COLUMNS]].to_numpy(float)
    pop_mean = np.array([pop[f"{c}_mean"] for c in RAW_COLUMNS], float)
    pop_std = np.array([pop[f"{c}_std"] for c in RAW_COLUMNS], float)
    z = np.divide(means - pop_mean, pop_std, out=np.zeros_like(means), where=pop_std > 0)
    limit = float(np.clip(np.nanmax(np.abs(z)) if z.size else 1.0, 1.0, 3.0))
    fig = Figure(figsize=(11, 1.6 + 0.65 * len(segment_table)))
    ax = fig.add_subplot()
    image = ax.imshow(np.clip(z, -limit, limit), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            ink = "white" if abs(z[i, j]) > 0.6 * limit else "black"
            ax.text(j, i, f"{means[i, j]:.2f}", ha="center", va="center", fontsize=9, color=ink)
    ax.set_xticks(range(len(RAW_COLUMNS)), t["cols"], fontsize=9, rotation=20, ha="right")
    ax.set_yticks(range(len(segment_table)), [_wrap(n, 34) for n in segment_table["nombre"]], fontsize=9)
    ax.set_title(t["heat"], fontsize=11)
    fig.colorbar(image, ax=ax, label=t["z"], shrink=0.9)
    return _save(fig, path)


def segments_figure(segment_table: pd.DataFrame, path, lang: str = "es") -> Path:
    """Users per segment and mean engagement coloured by level (Alta/Baja), with each segment's action."""
    t = L[check_lang(lang)]
    table, pop = segment_table, population(segment_table)
    pos = np.arange(len(table))
    labels = [f"{_wrap(r.nombre, 34)}\n→ {_wrap(r.accion_corta, 34)}" for r in table.itertuples()]
    fig = Figure(figsize=(12, 1.4 + 0.9 * len(table)))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.barh(pos, table["size"], color=[_colour(c, len(table)) for c in table.index])
    for p, (size, share) in enumerate(zip(table["size"], table["share"])):
        left.text(size, p, f" {int(size):,} ({share:.0%})" if share >= 0.01 else f" {int(size):,} ({share:.1%})",
                  va="center", fontsize=9)
    left.set_xlim(0, table["size"].max() * 1.35 if len(table) else 1)
    users_axis(left.xaxis)
    left.set_yticks(pos, labels, fontsize=9)
    left.invert_yaxis()
    left.set(xlabel=t["users"])
    level_key = {LEVEL[lang]["high"]: "high", LEVEL[lang]["low"]: "low"}
    right.barh(pos, table["engagement_score_mean"], color=[LEVEL_COLOURS[level_key[v]] for v in table["nivel"]])
    for p, value in enumerate(table["engagement_score_mean"]):
        # offset in points, so the label's white box (kept readable over the mean line) never covers the bar's end
        right.annotate(f"{value:.2f}", (value, p), xytext=(4, 0), textcoords="offset points", va="center",
                       fontsize=9, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8})
    right.set_xlim(0, table["engagement_score_mean"].max() * 1.15 if len(table) else 1)
    right.axvline(pop["engagement_score_mean"], color="black", linestyle="--", linewidth=1)
    right.set_yticks(pos, [""] * len(pos))
    right.invert_yaxis()
    right.set(xlabel=t["eng"])
    right.legend(handles=[Patch(color=LEVEL_COLOURS[k], label=LEVEL[lang][k]) for k in ("high", "low")])
    fig.suptitle(t["sizes"], fontsize=13)
    return _save(fig, path)


def make_all_figures(out_dir, model_result, segment_table: pd.DataFrame, cfg: dict, lang: str = "es") -> dict:
    """Every figure under <out_dir>/figuras/; returns name → path (the report embeds them in this order)."""
    folder = as_location(out_dir) / FIGURES_SUBDIR
    r = model_result
    return {
        "elbow": elbow_figure(r.k_table, r.k, folder / FIGURE_FILES["elbow"], lang,
                              sample_rows=(r.k_reason or {}).get("search_rows")),
        "k_quality": k_quality_figure(r.k_table, r.k, folder / FIGURE_FILES["k_quality"], lang),
        "segments": segments_figure(segment_table, folder / FIGURE_FILES["segments"], lang),
        "profiles": profile_heatmap_figure(segment_table, folder / FIGURE_FILES["profiles"], lang),
        "pca": pca_scatter_figure(r.sample, segment_table, r.scaler, r.pca, cfg["features"], folder / FIGURE_FILES["pca"],
                                  lang, cfg["report"]["scatter_points"], cfg["model"]["seed"],
                                  r.model.cluster_centers_),
        "silhouette": silhouette_figure(r.silhouette_by_cluster, segment_table, r.silhouette,
                                        folder / FIGURE_FILES["silhouette"], lang),
    }
