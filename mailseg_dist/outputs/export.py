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
header says so and where the full table is). The workbook is written by rustpy-xlsxwriter
(Rust): every text value, Arrow text column or Python str, is a text cell, so a value such as
"=1+1" or "@x" stays text, never a formula.
"""

from __future__ import annotations

import copy
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from rustpy_xlsxwriter import Format, write_worksheets

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
def _sheet_type(kind: pa.DataType) -> pa.DataType:
    """The type a result column is written as: dictionary-encoded text (how pandas' categories come back
    from Parquet) decoded, numbers and text as they are (decimals as floats), anything else as text (the
    writer would leave a type it does not know blank)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_decimal(kind):
        return pa.float64()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return kind
    return pa.string()


def _sheet_schema(files: list[Path], columns: list[str]) -> pa.Schema:
    with open_parquet(files[0]) as parquet:
        schema = parquet.schema_arrow
    return pa.schema([pa.field(c, _sheet_type(schema.field(c).type)) for c in columns])


def _sample_cut(files: list[Path], size: int, seed: int) -> float:
    """Hash value of the `size`-th smallest Id hash (kept in a bounded buffer of ~2 × size values)."""
    best = np.zeros(0)
    for batch in _batches(files, [ID]):
        best = np.concatenate([best, hash_uniform(batch.column(0).to_pandas(), seed)])
        if len(best) > 2 * size:
            best = np.partition(best, size - 1)[:size]
    return float(np.partition(best, size - 1)[size - 1])


def _batches(files: list[Path], columns: list[str]):
    """Record batches of BATCH_ROWS rows with the columns' sheet types (same for every part)."""
    schema = _sheet_schema(files, columns)
    for path in files:
        with open_parquet(path) as parquet:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield batch.cast(schema)


def _users_sheet(files: list[Path], cut: float | None, size: int, seed: int, failed: list) -> pa.RecordBatchReader:
    """Sheet Clusters' rows as an Arrow stream read part by part (one batch in memory at a time): every
    user, or those with an Id hash <= cut (at most `size`). An error while reading goes to `failed`,
    so that the caller can raise it as it was instead of as the writer's RuntimeError."""
    schema = _sheet_schema(files, RESULT_COLUMNS)

    def rows():
        written = 0
        try:
            for batch in _batches(files, RESULT_COLUMNS):
                if cut is not None:
                    keep = hash_uniform(batch.column(ID).to_pandas(), seed) <= cut
                    batch = batch.filter(pa.array(keep)).slice(0, size - written)
                written += batch.num_rows
                yield batch
        except Exception as exc:  # not GeneratorExit: the writer closing the stream early is no reading error
            failed.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(schema, rows())


def _value(value):
    """A cell of the small sheets: text as text, a missing or non-finite number as a blank, numbers as floats."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return float(value)


def _segments_rows(segment_table: pd.DataFrame, lang: str) -> list[dict]:
    headers = SEGMENT_HEADERS[lang]
    pop = {**population(segment_table).to_dict(), "nombre": POPULATION[lang]}
    rows = [{**segment_table.loc[c].to_dict(), "cluster": c} for c in segment_table.index] + [pop]
    out = []
    for values in rows:
        row = {}
        for col in SEGMENT_SHEET_COLUMNS:
            value = values.get(col)
            if col == "typical_day" and value is not None and np.isfinite(value):
                value = WEEKDAYS[lang][int(value)]
            row[headers[col]] = _value(value)
        out.append(row)
    return out


def _segments_formats(lang: str) -> dict:
    """Number formats of sheet Recomendaciones by header: shares and rates as 0.0 %, means and rates 0.00."""
    headers = SEGMENT_HEADERS[lang]
    return {headers[col]: Format().set_num_format("0.0%" if col in PERCENT_COLUMNS else "0.00")
            for col in SEGMENT_SHEET_COLUMNS if col in PERCENT_COLUMNS or col.endswith(("_mean", "_rate"))}


def _k_rows(k_table: list[dict], chosen_k: int, k_reason: str | None, lang: str):
    """Rows of sheet Eleccion_k (a blank row, then the reason); a header-only table when there is none."""
    headers = K_HEADERS[lang]
    rows = []
    for entry in k_table:
        values = [_value(entry.get(key)) for key in ["k", "inertia", "silhouette", "calinski_harabasz",
                                                     "davies_bouldin"]]
        sizes = entry.get("sizes")
        sizes = sizes.values() if isinstance(sizes, dict) else (sizes if sizes is not None else [])
        values += [", ".join(str(int(s)) for s in sizes), CHOSEN[lang] if int(entry["k"]) == chosen_k else None]
        rows.append(dict(zip(headers, values)))
    if k_reason:
        rows.append(dict.fromkeys(headers))
        rows.append(dict(zip(headers, [REASON_LABEL[lang], str(k_reason)] + [None] * (len(headers) - 2))))
    if not rows:  # the records writer takes the header from the first row
        return pa.table({h: pa.array([], pa.string()) for h in headers})
    return rows


def write_results_xlsx(results_path, xlsx_path, segment_table: pd.DataFrame, k_table: list[dict], cfg: dict,
                       lang: str = "es", k_reason: str | None = None, changes: dict | None = None) -> Path:
    """Sheets Clusters, Recomendaciones, Eleccion_k (and Cambios / Changes for an update's `changes`, see
    outputs.changes); streamed with bounded memory; returns the path.

    Written by rustpy-xlsxwriter (rust_xlsxwriter in constant-memory mode): sheet Clusters is an Arrow
    stream of the Parquet parts, one batch in memory at a time, its cells written in Rust (5-9x faster
    than xlsxwriter, the same ~90 MB over the imports at 212,292 and 1,048,575 users: bench/bench_xlsx.py).
    Text is always written as a text cell, never a formula.
    """
    check_lang(lang)
    files = parquet_files(results_path)
    total = sum(parquet_metadata(p).num_rows for p in files)
    limit, seed = int(cfg["report"]["excel_max_rows"]), int(cfg["model"]["seed"])
    if not 2 <= limit <= 1_048_575:
        raise ValueError(f"report.excel_max_rows expected 2..1048575 (Excel's data rows), found {limit}")
    sampled = total > limit
    size = limit - 1 if sampled else total  # the note row takes one of the sheet's rows
    cut = _sample_cut(files, size, seed) if sampled else None
    options = {}
    if sampled:  # the note on row 1 (merged across the table: a one-cell merge is not allowed), header below
        note = SAMPLE_NOTE[lang].format(m=size, total=total, seed=seed, limit=limit, path=results_path)
        options = {"header_row": {"Clusters": 1},
                   "merge_ranges": {"Clusters": [(0, 0, 0, len(RESULT_COLUMNS) - 1, note)]}}
    headers = SEGMENT_HEADERS[lang]
    failed: list[Exception] = []
    sheets = [("Clusters", _users_sheet(files, cut, size, seed, failed)),
              ("Recomendaciones", _segments_rows(segment_table, lang)),
              ("Eleccion_k", _k_rows(k_table, len(segment_table), k_reason, lang))]
    if changes:  # an update: what changed since the parent version (imported here: export stays light)
        from mailseg_dist.outputs.changes import add_changes_sheet

        add_changes_sheet(sheets, options, changes, lang)
    with atomic_path(xlsx_path, suffix=".xlsx") as tmp:
        try:
            write_worksheets(sheets, str(tmp), autofit=False,
                             column_formats={"Recomendaciones": _segments_formats(lang)},
                             column_widths={"Recomendaciones": {headers["nombre"]: 36, headers["accion"]: 80,
                                                                headers["motivo"]: 80}},
                             **options)
        except Exception:
            if failed:  # reading a part failed: its own error, not the writer's wrapper
                raise failed[0] from None
            raise
    return as_location(xlsx_path)
