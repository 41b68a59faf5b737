"""`Segmentation`: what `mailseg_dist.segment` returns — the fitted model, its segments, and the outputs on demand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mailseg_dist.core.catalog import Catalog
from mailseg_dist.core.errors import InputDataError

_PROFILE_COLUMNS = ("size", "send_mean", "bounce_mean", "open_mean", "click_mean", "Total_mean", "engagement_score_mean",
                    "buyer_rate", "open_rate", "click_rate", "bounce_rate", "hour_mean", "day_of_week_mean",
                    "typical_hour", "typical_day", "silhouette_mean")


class Segmentation:
    """A fitted segmentation: what `segment` returns.

    Attributes
    ----------
    k : int
        Number of segments.
    k_table : pandas.DataFrame
        One row per candidate k: inertia, silhouette, Calinski-Harabasz, Davies-Bouldin, sizes.
    k_reason : dict
        Why this k, as data (rule, knee, silhouettes compared, k set aside); `k_reason_text(lang)` words it.
    segments : pandas.DataFrame
        One row per segment: id, name, level, share, action and its profile (means and rates).
    scaler : sklearn.preprocessing.StandardScaler
    model : sklearn.cluster.KMeans
        ``model.predict(scaler.transform(features))`` gives each user's segment id.
    metrics : dict
        inertia, silhouette, calinski_harabasz, davies_bouldin, stability per segment, n_iter.
    manifest : dict
        The ingested month: rows in, kept, rejected, rejects by reason, where the layers are.
    """

    def __init__(self, result, table: pd.DataFrame, manifest: dict, cfg: dict, catalog: Catalog):
        self.result_, self.table_, self.manifest, self.config, self.catalog_ = result, table, manifest, cfg, catalog
        self.k, self.k_reason, self.scaler, self.model = result.k, result.k_reason, result.scaler, result.model
        self.k_table = pd.DataFrame(result.k_table)
        self.segments = _segments_frame(table)
        self.metrics = {"inertia": result.inertia, "silhouette": result.silhouette,
                        "calinski_harabasz": result.calinski_harabasz, "davies_bouldin": result.davies_bouldin,
                        "stability": dict(result.stability), "n_iter": result.n_iter, "engine": result.engine}

    def __repr__(self) -> str:
        names = ", ".join(self.segments["name"])
        return f"<Segmentation k={self.k} of {self.manifest['rows_kept']:,} users: {names}>"

    def k_reason_text(self, lang: str | None = None) -> str:
        """Why this k, in Spanish or English (default: the config's report.lang)."""
        from mailseg_dist.segments.texts import k_reason_text

        return k_reason_text(self.k_reason, lang or self.config["report"]["lang"])

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Segment id of each row of `df`, a pandas DataFrame with the input columns (any accepted header).

        The rows are checked with the same cleaning rules as an ingest; a row that would be rejected
        raises `InputDataError` naming it, its column and the reason.
        """
        from mailseg_dist.model.scaler import scale

        clean = clean_rows(df, self.config)
        return self.model.predict(scale(clean, self.scaler, self.config["features"])).astype(np.int64)

    def write(self, out=None, *, client=None) -> dict:
        """Write every output of `mailseg run` into `out` (default: the config's paths.out_dir); the summary.

        Under the output folder's lock; the per-user results are written by the workers from the month's
        users layer, so it must still be there.
        """
        from mailseg_dist.workflows.job import job
        from mailseg_dist.workflows.run import write_stage
        from mailseg_dist.workflows.versions import current_version

        out = Catalog(self.config, data_dir=str(self.catalog_.data_dir), out_dir=out).out_dir
        with job(self.config, out, "mailseg_dist.Segmentation.write", client) as (active, monitor):
            return write_stage(self.result_, self.table_, self.manifest, self.config, out, active, monitor=monitor,
                               kind="run", parent=current_version(out))


def _segments_frame(table: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({"id": table.index.astype(int), "name": table["nombre"].to_numpy(),
                          "level": table["nivel"].to_numpy(), "share": table["share"].to_numpy(),
                          "action": table["accion_corta"].to_numpy()})
    profile = table[[c for c in _PROFILE_COLUMNS if c in table.columns]].reset_index(drop=True)
    return pd.concat([frame, profile], axis=1)


def clean_rows(df: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """`df`'s rows as the clean layer types them, or InputDataError naming the first row that would be rejected.

    Headers are matched with the ingest's aliases; an Id column is optional here.
    """
    from mailseg_dist.inputs.clean import coerce_partition
    from mailseg_dist.inputs.schema import ID, SOURCE_ROW, map_columns, missing_required

    mapping = map_columns([str(c) for c in df.columns])
    raw = df.reset_index(drop=True).copy()
    raw.columns = [mapping[i] for i in range(len(df.columns))]
    if ID not in raw.columns:
        raw.insert(0, ID, np.arange(len(raw)))
    missing = missing_required(list(raw.columns))
    if missing:
        raise InputDataError(f"predict(df): missing required column(s) {', '.join(missing)}; "
                             f"found: {', '.join(map(str, df.columns))}")
    raw[SOURCE_ROW] = np.arange(len(raw))
    coerced = coerce_partition(raw.astype(object).where(raw.notna(), None), "string", cfg["cleaning"])
    bad = coerced["_reason"].notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputDataError(f"predict(df): row {row} column {coerced['_column'].iloc[row]}: "
                             f"{coerced['_reason'].iloc[row]}")
    return coerced
