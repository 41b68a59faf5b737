"""Per-user results (Parquet, written by the workers) and the results workbook (streamed).

Order of use (the segment names need the profiles, which need the clusters):
    scored = scored_users(users_path, result, cfg)          # lazy: clusters, silhouette, PCA
    profiles = segment_profiles(scored, result.k)           # small aggregates
    table = segment_table(profiles, cfg, lang)              # names, levels, actions
    write_user_results(users_path, out_dir, result, table, cfg, lang)   # Resultados/usuarios/
    write_results_xlsx(out_dir / "usuarios", out_dir / XLSX_NAME, table, result.k_table, cfg, lang)

Per user: cluster = model.predict(scaler.transform(features)); silhouette_score is the
SIMPLIFIED silhouette (b − a)/max(a, b) with a, b the distances to the nearest and
second-nearest centre (quality.simplified_silhouette); pca1, pca2 = the model's PCA.

Workbook: sheet Clusters holds every user when they fit in report.excel_max_rows data
rows; otherwise a deterministic sample of excel_max_rows − 1 users, those with the
smallest hash of their Id (sampling.hash_uniform with model.seed; a note row above the
header says so and where the full table is). Every text cell is written with
write_string, so a value such as "=1+1" or "@x" stays text, never a formula.
"""

from __future__ import annotations

import copy
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import xlsxwriter

from mailseg_dist.core.atomic import atomic_dir, atomic_path
from mailseg_dist.core.catalog import USERS_SUBDIR
from mailseg_dist.core.parquet import parquet_files
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import (
    as_location,
    open_parquet,
    parquet_metadata,
    write_parquet,
)
from mailseg_dist.inputs.sampling import hash_uniform
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, ID
from mailseg_dist.model.features import feature_frame, raw_columns
from mailseg_dist.model.model_files import (  # noqa: F401 (re-exported)
    load_model_files,
    load_plain_model,
    write_model_files,
)
from mailseg_dist.model.quality import simplified_silhouette
from mailseg_dist.segments.profiles import population
from mailseg_dist.segments.recommend import user_recommendations
from mailseg_dist.segments.texts import (
    POPULATION,
    SEGMENT_HEADERS,
    WEEKDAYS,
    check_lang,
)

SCORE_COLUMNS = ["cluster", "silhouette_score", "pca1", "pca2"]
TEXT_COLUMNS = ["segmento", "nivel", "recomendacion"]
RESULT_COLUMNS = [*CLEAN_COLUMNS, *SCORE_COLUMNS, *TEXT_COLUMNS]
SEGMENT_SHEET_COLUMNS = ["cluster", "nombre", "nivel", "size", "share", "send_mean", "open_mean", "click_mean",
                         "bounce_mean", "buyer_rate", "open_rate", "click_rate", "bounce_rate",
                         "engagement_score_mean", "typical_hour", "typical_day", "silhouette_mean", "accion",
                         "motivo"]
PERCENT_COLUMNS = {"share", "buyer_rate", "open_rate", "bounce_rate"}
BATCH_ROWS = 65536
SAMPLE_NOTE = {
    "es": "MUESTRA: esta hoja tiene {m:,} de {total:,} usuarios (los de menor hash del Id, semilla {seed}) porque "
          "Excel admite como máximo {limit:,} filas de datos. La tabla completa está en Parquet en {path}.",
    "en": "SAMPLE: this sheet holds {m:,} of {total:,} users (those with the smallest Id hash, seed {seed}) because "
          "Excel holds at most {limit:,} data rows. The full table is in Parquet at {path}.",
}
K_HEADERS = {"es": ["k", "inercia", "silueta", "calinski_harabasz", "davies_bouldin", "tamaños", "elegida"],
             "en": ["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "sizes", "chosen"]}
CHOSEN = {"es": "sí", "en": "yes"}
REASON_LABEL = {"es": "Motivo de la elección", "en": "Why this k"}


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
    out["segmento"] = pd.Categorical(segments["nombre"].reindex(clusters).astype(str).to_numpy()[codes])
    out["nivel"] = pd.Categorical(segments["nivel"].reindex(clusters).astype(str).to_numpy()[codes])
    out["recomendacion"] = user_recommendations(out, segments, cfg, lang).astype("category")
    return out


def _read_users(users) -> dd.DataFrame:
    if isinstance(users, dd.DataFrame):
        return users
    return dd.read_parquet([str(p) for p in parquet_files(users)])


def scored_users(users, result, cfg: dict) -> dd.DataFrame:
    """Lazy Dask frame of clean columns + cluster, silhouette_score, pca1, pca2 (nothing computed)."""
    ddf = _read_users(users)
    columns = list(dict.fromkeys([*CLEAN_COLUMNS, *raw_columns(cfg["features"])]))
    bundle = _bundle(result, cfg)
    return ddf[columns].map_partitions(_score, bundle, meta=_score(ddf._meta[columns], bundle))


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


def _write_part(part: pd.DataFrame, bundle: dict, segments: pd.DataFrame, cfg: dict, lang: str, folder: str,
                index: int, schema: pa.Schema) -> int:
    out = _label(_score(part, bundle), segments, cfg, lang)[RESULT_COLUMNS]
    if schema.field(ID).type == pa.string():
        out[ID] = out[ID].astype("str")
    table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)
    write_parquet(table, as_location(folder) / f"part-{index:05d}.parquet")
    return len(out)


def write_user_results(users_path, out_dir, model_result, segment_table: pd.DataFrame, cfg: dict,
                       lang: str = "es") -> Path:
    """Resultados/usuarios/: one Parquet part per input partition, written by the workers; returns the folder."""
    check_lang(lang)
    ddf = _read_users(users_path)
    columns = list(dict.fromkeys([*CLEAN_COLUMNS, *raw_columns(cfg["features"])]))
    schema = _arrow_schema(pd.api.types.is_integer_dtype(ddf.dtypes[ID]))
    segments = pd.DataFrame(segment_table[["nombre", "nivel", "accion_corta", "accion_codigo"]])
    shared = dask.delayed(_bundle(model_result, cfg), pure=True)  # one key, shipped once per worker
    final = as_location(out_dir) / USERS_SUBDIR
    with atomic_dir(final) as tmp:
        tasks = [dask.delayed(_write_part)(part, shared, segments, {"recommend": cfg["recommend"]}, lang,
                                           str(tmp), i, schema)
                 for i, part in enumerate(ddf[columns].to_delayed())]
        compute(*tasks)
    return final


# ---------------------------------------------------------------- workbook
def _sample_cut(files: list[Path], size: int, seed: int) -> float:
    """Hash value of the `size`-th smallest Id hash (kept in a bounded buffer of ~2 × size values)."""
    best = np.zeros(0)
    for batch in _batches(files, [ID]):
        best = np.concatenate([best, hash_uniform(batch.column(0).to_pandas(), seed)])
        if len(best) > 2 * size:
            best = np.partition(best, size - 1)[:size]
    return float(np.partition(best, size - 1)[size - 1])


def _batches(files: list[Path], columns: list[str]):
    for path in files:
        with open_parquet(path) as parquet:
            yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _write_users_sheet(ws, files: list[Path], cut: float | None, size: int, seed: int, row: int) -> None:
    text_cols = [c for c in RESULT_COLUMNS if c in TEXT_COLUMNS]
    written = 0
    for batch in _batches(files, RESULT_COLUMNS):
        frame = batch.to_pandas()
        if cut is not None:
            frame = frame[hash_uniform(frame[ID], seed) <= cut].head(size - written)
        id_text = not pd.api.types.is_numeric_dtype(frame[ID])
        numbers = frame[RESULT_COLUMNS[1:-len(text_cols)]].astype(object)
        numbers = numbers.where(frame[numbers.columns].notna(), None).to_numpy().tolist()
        texts = frame[text_cols].astype(object).where(frame[text_cols].notna(), "").to_numpy().tolist()
        for uid, nums, words in zip(frame[ID].tolist(), numbers, texts):
            if id_text:
                ws.write_string(row, 0, str(uid))
            else:
                ws.write_number(row, 0, uid)
            ws.write_row(row, 1, nums)
            for j, word in enumerate(words):
                ws.write_string(row, 1 + len(nums) + j, str(word))
            row += 1
        written += len(frame)


def _cell(ws, row: int, col: int, value, fmt=None) -> None:
    if isinstance(value, str):
        ws.write_string(row, col, value)
    elif value is None or (isinstance(value, float) and not np.isfinite(value)):
        ws.write_blank(row, col, None)
    else:
        ws.write_number(row, col, float(value), fmt)


def _write_segments_sheet(wb, segment_table: pd.DataFrame, lang: str) -> None:
    ws, pct = wb.add_worksheet("Recomendaciones"), wb.add_format({"num_format": "0.0%"})
    dec = wb.add_format({"num_format": "0.00"})
    headers = SEGMENT_HEADERS[lang]
    for j, col in enumerate(SEGMENT_SHEET_COLUMNS):
        ws.write_string(0, j, headers[col])
    pop = {**population(segment_table).to_dict(), "nombre": POPULATION[lang]}
    rows = [{**segment_table.loc[c].to_dict(), "cluster": c} for c in segment_table.index] + [pop]
    for i, values in enumerate(rows, start=1):
        for j, col in enumerate(SEGMENT_SHEET_COLUMNS):
            value = values.get(col)
            if col == "typical_day" and value is not None and np.isfinite(value):
                value = WEEKDAYS[lang][int(value)]
            fmt = pct if col in PERCENT_COLUMNS else dec if col.endswith(("_mean", "_rate")) else None
            _cell(ws, i, j, value, fmt)
    ws.set_column(1, 1, 36)
    ws.set_column(len(SEGMENT_SHEET_COLUMNS) - 2, len(SEGMENT_SHEET_COLUMNS) - 1, 80)


def _write_k_sheet(wb, k_table: list[dict], chosen_k: int, k_reason: str | None, lang: str) -> None:
    ws = wb.add_worksheet("Eleccion_k")
    for j, header in enumerate(K_HEADERS[lang]):
        ws.write_string(0, j, header)
    for i, entry in enumerate(k_table, start=1):
        for j, key in enumerate(["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"]):
            _cell(ws, i, j, entry.get(key))
        sizes = entry.get("sizes")
        sizes = sizes.values() if isinstance(sizes, dict) else (sizes if sizes is not None else [])
        ws.write_string(i, 5, ", ".join(str(int(s)) for s in sizes))
        if int(entry["k"]) == chosen_k:
            ws.write_string(i, 6, CHOSEN[lang])
    if k_reason:
        ws.write_string(len(k_table) + 2, 0, REASON_LABEL[lang])
        ws.write_string(len(k_table) + 2, 1, str(k_reason))


def write_results_xlsx(results_path, xlsx_path, segment_table: pd.DataFrame, k_table: list[dict], cfg: dict,
                       lang: str = "es", k_reason: str | None = None) -> Path:
    """Sheets Clusters, Recomendaciones, Eleccion_k; streamed with bounded memory; returns the path."""
    check_lang(lang)
    files = parquet_files(results_path)
    total = sum(parquet_metadata(p).num_rows for p in files)
    limit, seed = int(cfg["report"]["excel_max_rows"]), int(cfg["model"]["seed"])
    if not 2 <= limit <= 1_048_575:
        raise ValueError(f"report.excel_max_rows expected 2..1048575 (Excel's data rows), found {limit}")
    sampled = total > limit
    size = limit - 1 if sampled else total  # the note row takes one of the sheet's rows
    cut = _sample_cut(files, size, seed) if sampled else None
    with atomic_path(xlsx_path, suffix=".xlsx") as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True, "strings_to_formulas": False,
                                            "strings_to_urls": False, "strings_to_numbers": False})
        ws = wb.add_worksheet("Clusters")
        row = 0
        if sampled:
            ws.write_string(0, 0, SAMPLE_NOTE[lang].format(m=size, total=total, seed=seed, limit=limit,
                                                           path=results_path))
            row = 1
        for j, col in enumerate(RESULT_COLUMNS):
            ws.write_string(row, j, col)
        _write_users_sheet(ws, files, cut, size, seed, row + 1)
        _write_segments_sheet(wb, segment_table, lang)
        _write_k_sheet(wb, k_table, len(segment_table), k_reason, lang)
        wb.close()
    return as_location(xlsx_path)

