"""Per-user results: each user's segment, scores and advice (Parquet, written by the workers).

Order of use (the segment names need the profiles, which need the clusters):
    scored = scored_parts(users_path, result, cfg)          # delayed: clusters, silhouette, PCA
    profiles = segment_profiles(scored, result.k)           # small aggregates
    table = segment_table(profiles, cfg, lang)              # names, levels, actions
    write_user_results(users_path, out_dir, result, table, cfg, lang)   # Resultados/usuarios/
    workbook.write_results_xlsx(out_dir / "usuarios", out_dir / XLSX_NAME, table, result.k_table, cfg, lang)

Per user: cluster = model.predict(scaler.transform(features)); silhouette_score is the
SIMPLIFIED silhouette (b − a)/max(a, b) with a, b the distances to the nearest and
second-nearest centre (quality.simplified_silhouette); pca1, pca2 = the model's PCA.
The workbook (workbook.py) shows these same rows, or a hashed sample of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from mailseg_dist.core.atomic import atomic_dir
from mailseg_dist.core.catalog import USERS_SUBDIR
from mailseg_dist.core.parquet import frame_parts, parquet_files
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import as_location, open_parquet, write_parquet
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, ID
from mailseg_dist.model.features import feature_frame, raw_columns
from mailseg_dist.model.model_files import (  # noqa: F401 (re-exported)
    load_model_files,
    load_plain_model,
    write_model_files,
)
from mailseg_dist.model.quality import simplified_silhouette
from mailseg_dist.segments.recommend import user_recommendations
from mailseg_dist.segments.texts import check_lang

SCORE_COLUMNS = ["cluster", "silhouette_score", "pca1", "pca2"]
TEXT_COLUMNS = ["segmento", "nivel", "recomendacion"]
RESULT_COLUMNS = [*CLEAN_COLUMNS, *SCORE_COLUMNS, *TEXT_COLUMNS]
DISTINCT_RESULTS = (ID, "silhouette_score", "pca1", "pca2")  # about one value a user: no dictionary


# ---------------------------------------------------------------- per-user scoring
def _bundle(result, cfg: dict) -> dict:
    """What a worker needs to score users; the model without its training labels (can be long)."""
    model = copy.copy(result.model)
    for attr in ("labels_",):
        if hasattr(model, attr):
            delattr(model, attr)
    return {"scaler": result.scaler, "model": model, "pca": result.pca, "fcfg": cfg["features"]}


def _score(part: pd.DataFrame, bundle: dict) -> pd.DataFrame:
    """Clean columns + cluster, silhouette_score, pca1, pca2 of one partition (empty in, empty out)."""
    out = part[CLEAN_COLUMNS].copy()
    if len(part) == 0:
        for col, dtype in zip(SCORE_COLUMNS, ["int64", "float64", "float64", "float64"]):
            out[col] = pd.Series(dtype=dtype)
        return out
    x = bundle["scaler"].transform(feature_frame(part, bundle["fcfg"]))
    model, pca = bundle["model"], bundle["pca"]
    out["cluster"] = model.predict(x).astype("int64")
    out["silhouette_score"] = simplified_silhouette(x, model.cluster_centers_)
    names = getattr(pca, "feature_names_in_", None)
    pcs = pca.transform(pd.DataFrame(x, columns=names) if names is not None else x)
    out["pca1"], out["pca2"] = pcs[:, 0], pcs[:, 1]
    return out


def _label(scored: pd.DataFrame, segments: pd.DataFrame, cfg: dict, lang: str) -> pd.DataFrame:
    """The three text columns, categorical: a few distinct texts per partition, not one string per user."""
    out = scored.copy()
    if len(out) == 0:
        for col in TEXT_COLUMNS:
            out[col] = pd.Categorical([])
        return out
    codes, clusters = out["cluster"].to_numpy(), range(int(out["cluster"].max()) + 1)
    out["segmento"] = _per_user(segments["nombre"].reindex(clusters), codes)
    out["nivel"] = _per_user(segments["nivel"].reindex(clusters), codes)
    out["recomendacion"] = user_recommendations(out, segments, cfg, lang).astype("category")
    return out


def _per_user(by_cluster: pd.Series, codes: np.ndarray) -> pd.Categorical:
    """Each user's text from their cluster's, built from codes (factorising 100,000 strings took 7 ms a column)."""
    text_codes, texts = pd.factorize(by_cluster.astype(str).to_numpy())
    return pd.Categorical.from_codes(text_codes[codes], categories=texts)


def _users_columns(cfg: dict) -> list[str]:
    """The users-layer columns scoring reads: the clean columns and those the features are made of."""
    return list(dict.fromkeys([*CLEAN_COLUMNS, *raw_columns(cfg["features"])]))


def scored_parts(users, result, cfg: dict) -> list:
    """Delayed pandas frames of the clean columns + cluster, silhouette_score, pca1, pca2 (nothing
    computed), one per part file of a users folder or partition of a Dask frame (core.parquet.frame_parts),
    the model shipped once per worker: what the profiles pass reads."""
    bundle = dask.delayed(_bundle(result, cfg), pure=True)
    return [dask.delayed(_score)(part, bundle) for part in frame_parts(users, _users_columns(cfg))]


def _arrow_schema(id_is_int: bool) -> pa.Schema:
    ints = {"send", "bounce", "open", "click", "Total", "Comprador", "cluster"}
    fields = [pa.field(ID, pa.int64() if id_is_int else pa.string())]
    for col in RESULT_COLUMNS[1:]:
        # Text columns dictionary-encoded: a handful of segment names and a few thousand advice texts
        # repeat over millions of users (smaller files, and no per-user string work when writing).
        kind = pa.dictionary(pa.int32(), pa.string()) if col in TEXT_COLUMNS else \
            pa.int64() if col in ints else pa.float64()
        fields.append(pa.field(col, kind))
    return pa.schema(fields)


@dataclass(frozen=True)
class UserScoring:
    """What turns users-layer rows into per-user result rows wherever they are needed (the workers writing
    Resultados/usuarios/, the workbook task): the model bundle, the segment texts and the result schema."""

    users_path: str
    bundle: dict
    segments: pd.DataFrame
    cfg: dict
    lang: str
    schema: pa.Schema
    columns: tuple[str, ...]

    def table(self, part: pd.DataFrame) -> pa.Table:
        """The per-user results of `part` (users-layer rows), as written to Resultados/usuarios/."""
        out = _label(_score(part, self.bundle), self.segments, self.cfg, self.lang)[RESULT_COLUMNS]
        if self.schema.field(ID).type == pa.string():
            out[ID] = out[ID].astype("str")
        return pa.Table.from_pandas(out, schema=self.schema, preserve_index=False)


def user_scoring(users_path, model_result, segment_table: pd.DataFrame, cfg: dict, lang: str = "es",
                 id_is_int: bool | None = None) -> UserScoring:
    """The UserScoring of a fitted model and its segment table over the users layer at `users_path`."""
    check_lang(lang)
    if id_is_int is None:
        with open_parquet(parquet_files(users_path)[0]) as parquet:
            id_is_int = pa.types.is_integer(parquet.schema_arrow.field(ID).type)
    segments = pd.DataFrame(segment_table[["nombre", "nivel", "accion_corta", "accion_codigo"]])
    columns = tuple(_users_columns(cfg))
    return UserScoring(str(users_path), _bundle(model_result, cfg), segments, {"recommend": cfg["recommend"]}, lang,
                       _arrow_schema(id_is_int), columns)


def _write_part(part: pd.DataFrame, scoring: UserScoring, folder: str, index: int) -> int:
    write_parquet(scoring.table(part), as_location(folder) / f"part-{index:05d}.parquet", plain=DISTINCT_RESULTS)
    return len(part)


def write_user_results(users_path, out_dir, model_result, segment_table: pd.DataFrame, cfg: dict,
                       lang: str = "es", scoring: UserScoring | None = None) -> Path:
    """Resultados/usuarios/: one Parquet part per input partition, written by the workers; returns the folder.
    `scoring`: the UserScoring already made for these users (publish shares it with the workbook)."""
    id_is_int = pd.api.types.is_integer_dtype(users_path.dtypes[ID]) if isinstance(users_path, dd.DataFrame) \
        else None
    scoring = scoring or user_scoring(users_path, model_result, segment_table, cfg, lang, id_is_int=id_is_int)
    shared = dask.delayed(scoring, pure=True)  # one key (the model inside), shipped once per worker
    final = as_location(out_dir) / USERS_SUBDIR
    with atomic_dir(final) as tmp:
        compute(*[dask.delayed(_write_part)(part, shared, str(tmp), i)
                  for i, part in enumerate(frame_parts(users_path, list(scoring.columns)))])
    return final


