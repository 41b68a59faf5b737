"""The results workbook (resultados_clustering.xlsx): sheets Clusters, Recomendaciones, Eleccion_k
(and Cambios / Changes after an update), streamed with bounded memory.

Sheet Clusters holds every user when they fit in report.excel_max_rows data rows; otherwise a
deterministic sample of excel_max_rows − 1 users, those with the smallest hash of their Id
(sampling.hash_uniform with model.seed; a note row above the header says so and where the full
table is). Its rows are the per-user results (export.py): read back from Resultados/usuarios/, or
computed from the users layer by the same UserScoring while those results are being written.
rustpy-xlsxwriter (Rust) writes the small sheets and Clusters' header; Clusters' rows are XML built by
Arrow (sheet_xml) spliced into that package (xlsx_package). Every text value, Arrow text column or Python
str, is a text cell, so a value such as "=1+1" or "@x" stays text, never a formula.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from rustpy_xlsxwriter import Format, write_worksheets

from mailseg_dist.core.atomic import atomic_path
from mailseg_dist.core.parquet import parquet_files
from mailseg_dist.core.storage import as_location, open_parquet, parquet_metadata
from mailseg_dist.inputs.sampling import sample_threshold, table_hashes
from mailseg_dist.inputs.schema import ID
from mailseg_dist.outputs.export import RESULT_COLUMNS, UserScoring
from mailseg_dist.outputs.sheet_xml import dimension, rows_xml
from mailseg_dist.outputs.later_changes import LaterChanges
from mailseg_dist.outputs.xlsx_package import splice_rows, splice_rows_first
from mailseg_dist.segments.profiles import population
from mailseg_dist.segments.texts import (
    POPULATION,
    SEGMENT_HEADERS,
    WEEKDAYS,
    check_lang,
)

SEGMENT_SHEET_COLUMNS = ["cluster", "nombre", "nivel", "size", "share", "send_mean", "open_mean", "click_mean",
                         "bounce_mean", "buyer_rate", "open_rate", "click_rate", "bounce_rate",
                         "engagement_score_mean", "typical_hour", "typical_day", "silhouette_mean", "accion",
                         "motivo"]
PERCENT_COLUMNS = {"share", "buyer_rate", "open_rate", "bounce_rate"}
BATCH_ROWS = 65536
SCORED_ROWS = 100_000  # users (every one, or the sample) gathered before they are scored: _scored_batches
CLUSTERS_WIDTHS = {"Id": 12, "segmento": 34, "nivel": 8, "recomendacion": 90}  # characters; others fit the header
CLUSTERS_PART = "xl/worksheets/sheet1.xml"  # rust_xlsxwriter numbers the sheets in order: Clusters first
SAMPLE_NOTE = {
    "es": "MUESTRA: esta hoja tiene {m:,} de {total:,} usuarios (los de menor hash del Id, semilla {seed}) porque "
          "Excel admite como máximo {limit:,} filas de datos. La tabla completa está en Parquet en {path}.",
    "en": "SAMPLE: this sheet holds {m:,} of {total:,} users (those with the smallest Id hash, seed {seed}) because "
          "Excel holds at most {limit:,} data rows. The full table is in Parquet at {path}.",
}
K_HEADERS = {"es": ["k", "inercia", "silueta", "calinski_harabasz", "davies_bouldin", "tamaños", "elegida"],
             "en": ["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "sizes", "chosen"]}
CHOSEN = {"es": "sí", "en": "yes"}
SAMPLED = {"es": " (muestra de {n:,} usuarios)", "en": " (sample of {n:,} users)"}
REASON_LABEL = {"es": "Motivo de la elección", "en": "Why this k"}


def _sheet_type(kind: pa.DataType) -> pa.DataType:
    """The type a result column is written as (sheet_xml's cell types): dictionary-encoded text (how pandas'
    categories come back from Parquet) kept, so that each distinct text is escaped once; other dictionaries
    decoded; numbers and text as they are (decimals as floats); anything else as text."""
    if pa.types.is_dictionary(kind):
        if pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type):
            return pa.dictionary(kind.index_type, pa.string())
        kind = kind.value_type
    if pa.types.is_decimal(kind):
        return pa.float64()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_string(kind):
        return kind
    return pa.string()


def _sheet_schema(files: list[Path], columns: list[str]) -> pa.Schema:
    with open_parquet(files[0]) as parquet:
        schema = parquet.schema_arrow
    return pa.schema([pa.field(c, _sheet_type(schema.field(c).type)) for c in columns])


def _sample_cut(files: list[Path], size: int, seed: int, total: int) -> float:
    """Hash value of the `size`-th smallest Id hash. Each part's hashes are kept only under a threshold with
    a margin of 6 standard deviations (sampling.sample_threshold), all of them in the rare case that fewer
    than `size` fell under it. 10M users in one process: 0.4 s, where keeping every hash in a buffer of
    2 × size values cut down as it filled took 1.0 s."""
    for bound in dict.fromkeys([sample_threshold(size, total, 1.0), 1.0]):  # the second only if the first fell short
        kept = []
        for path in files:
            with open_parquet(path) as parquet:
                hashes = table_hashes(parquet.read(columns=[ID]), seed)
            kept.append(hashes[hashes < bound] if bound < 1.0 else hashes)
        kept = np.concatenate(kept)
        if len(kept) >= size:
            return float(np.partition(kept, size - 1)[size - 1])
    raise ValueError(f"sample of {size:,} users asked from {len(kept):,}")


def _batches(files: list[Path], columns: list[str]):
    """Record batches of BATCH_ROWS rows with the columns' sheet types (same for every part)."""
    schema = _sheet_schema(files, columns)
    for path in files:
        with open_parquet(path) as parquet:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield batch.cast(schema)


def _scored_batches(scoring: UserScoring, files: list, cut: float | None, seed: int, schema: pa.Schema):
    """Sheet rows computed from the users layer: each part read, cut to the sampled users first (the model
    then scores a tenth of the rows at 10M users), scored exactly as the per-user results are, a few parts'
    sampled users at a time. Why gathered: scoring has a fixed cost a call (the scaler's and model's checks,
    the frame's columns), so the 10,000 sampled users of each of 100 parts took 2.4 s to score one part
    at a time, where 1M users in parts of 100,000 take ~0.5 s."""
    pending, rows = [], 0
    for number, path in enumerate(files, start=1):
        with open_parquet(path) as parquet:
            table = parquet.read(columns=list(scoring.columns))
        if cut is not None:  # filtered in Arrow: only the sampled users are converted to pandas
            table = table.filter(pa.array(table_hashes(table, seed) <= cut))
        part = table.to_pandas()
        pending.append(part)
        rows += len(part)
        if rows >= SCORED_ROWS or number == len(files):
            gathered = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            pending, rows = [], 0
            if len(gathered):
                yield from scoring.table(gathered).cast(schema).to_batches(max_chunksize=BATCH_ROWS)


def _users_sheet(files: list[Path], cut: float | None, size: int, seed: int, scoring: UserScoring | None = None):
    """Sheet Clusters' rows as Arrow batches read part by part (one batch in memory at a time): every user,
    or those with an Id hash <= cut (at most `size`); read from the per-user results `files`, or, with
    `scoring`, computed from the users-layer `files`."""
    if scoring is None:
        source = _batches(files, RESULT_COLUMNS)
    else:
        schema = pa.schema([pa.field(f.name, _sheet_type(f.type)) for f in scoring.schema])
        source = _scored_batches(scoring, files, cut, seed, schema)
    written = 0
    for batch in source:
        if cut is not None:
            if scoring is None:
                batch = batch.filter(pa.array(table_hashes(batch, seed) <= cut))
            batch = batch.slice(0, size - written)
        written += batch.num_rows
        yield batch


def _sheet_rows(batches, first_row: int, expected: int):
    """The <row> elements of sheet Clusters (sheet_xml), checking that exactly `expected` users were written."""
    row = first_row
    for batch in batches:
        yield from rows_xml(batch, row)
        row += batch.num_rows
    if row - first_row != expected:
        raise RuntimeError(f"sheet Clusters: expected {expected:,} users, wrote {row - first_row:,}")


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


def _k_rows(k_table: list[dict], chosen_k: int, k_reason: str | None, lang: str, sample_rows: int | None = None):
    """Rows of sheet Eleccion_k (a blank row, then the reason); a header-only table when there is none.
    `sample_rows`: the search ran on that many users, and the inertia and size headers say so."""
    headers = list(K_HEADERS[lang])
    if sample_rows:
        headers[1] += SAMPLED[lang].format(n=sample_rows)
        headers[5] += SAMPLED[lang].format(n=sample_rows)
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


def _clusters_widths() -> dict[str, float]:
    """Sheet Clusters' column widths: each header readable, the segment name and the advice wide."""
    return {col: CLUSTERS_WIDTHS.get(col, max(len(col) + 2, 9)) for col in RESULT_COLUMNS}


def _frame(sheets: list, options: dict, lang: str) -> bytes:
    """The workbook as rustpy-xlsxwriter writes it, sheet Clusters holding its header (and note) only."""
    headers, frame = SEGMENT_HEADERS[lang], io.BytesIO()
    widths = {"Clusters": _clusters_widths(),
              "Recomendaciones": {headers["nombre"]: 36, headers["accion"]: 80, headers["motivo"]: 80}}
    write_worksheets(sheets, frame, autofit=False, column_formats={"Recomendaciones": _segments_formats(lang)},
                     column_widths=widths, **options)
    return frame.getvalue()


def write_results_xlsx(results_path, xlsx_path, segment_table: pd.DataFrame, k_table: list[dict], cfg: dict,
                       lang: str = "es", k_reason: str | None = None,
                       changes: dict | LaterChanges | None = None, scoring: UserScoring | None = None,
                       sample_rows: int | None = None) -> Path:
    """Sheets Clusters, Recomendaciones, Eleccion_k (and Cambios / Changes for an update's `changes`, see
    outputs.changes; a LaterChanges is asked for them once sheet Clusters is written); streamed with
    bounded memory; returns the path.

    Sheet Clusters is read from the per-user results at `results_path`, or, with `scoring`
    (export.user_scoring), computed from the users layer it names, with the same code that writes those
    results: then the workbook does not wait for them (see write_workbook_task).

    rustpy-xlsxwriter writes the small sheets, the formats and sheet Clusters' header; Clusters' rows are
    then streamed in, one Arrow batch in memory at a time, as XML built by Arrow (sheet_xml) and deflated by
    ISA-L (xlsx_package): 4.8 s for the whole workbook of 1,048,575 users, where rust_xlsxwriter's cells
    took 13.6 s for sheet Clusters alone, at 174 MB over the imports against 94 MB
    (bench/results/xlsx_1048575.json). Text is always written as a text cell, never a formula.
    """
    check_lang(lang)
    files = parquet_files(results_path if scoring is None else scoring.users_path)
    total = sum(parquet_metadata(p).num_rows for p in files)
    limit, seed = int(cfg["report"]["excel_max_rows"]), int(cfg["model"]["seed"])
    if not 2 <= limit <= 1_048_575:
        raise ValueError(f"report.excel_max_rows expected 2..1048575 (Excel's data rows), found {limit}")
    sampled = total > limit
    size = limit - 1 if sampled else total  # the note row takes one of the sheet's rows
    options = {}
    if sampled:  # the note on row 1 (merged across the table: a one-cell merge is not allowed), header below
        note = SAMPLE_NOTE[lang].format(m=size, total=total, seed=seed, limit=limit, path=results_path)
        options = {"header_row": {"Clusters": 1},
                   "merge_ranges": {"Clusters": [(0, 0, 0, len(RESULT_COLUMNS) - 1, note)]}}
    header_rows = 2 if sampled else 1
    sheets = [("Clusters", pa.schema([pa.field(c, pa.string()) for c in RESULT_COLUMNS]).empty_table()),
              ("Recomendaciones", _segments_rows(segment_table, lang)),
              ("Eleccion_k", _k_rows(k_table, len(segment_table), k_reason, lang, sample_rows))]
    later = changes if isinstance(changes, LaterChanges) else None
    frame = _frame(sheets, options, lang) if later else _frame_with_changes(sheets, options, changes, lang)
    cut = _sample_cut(files, size, seed, total) if sampled else None
    rows = _sheet_rows(_users_sheet(files, cut, size, seed, scoring), header_rows + 1, size)
    cells = dimension(len(RESULT_COLUMNS), header_rows + size)
    with atomic_path(xlsx_path, suffix=".xlsx") as tmp:
        if later:  # sheet Clusters first, while the client measures the drift the Cambios sheet shows
            splice_rows_first(frame, tmp, CLUSTERS_PART, rows, cells,
                              lambda: _frame_with_changes(sheets, options, later.get(), lang))
        else:
            splice_rows(frame, tmp, CLUSTERS_PART, rows, cells)
    return as_location(xlsx_path)


def _frame_with_changes(sheets: list, options: dict, changes: dict | None, lang: str) -> bytes:
    """The frame, with sheet Cambios / Changes when an update's `changes` are given (imported here: export
    stays light)."""
    if changes:
        from mailseg_dist.outputs.changes import add_changes_sheet

        sheets, options = list(sheets), copy.deepcopy(options)
        add_changes_sheet(sheets, options, changes, lang)
    return _frame(sheets, options, lang)


@contextlib.contextmanager
def cancelled_on_error(workbook):
    """Cancel the workbook's future (None: nothing started) when the work beside it fails."""
    try:
        yield
    except BaseException:
        if workbook is not None:
            workbook.cancel()
        raise


def write_workbook_task(*args, **kwargs) -> Path:
    """write_results_xlsx as a long worker task that leaves its worker's thread pool (distributed.secede):
    the worker goes on running the per-user results' tasks beside it and the two cores share the three.

    The rows' XML is built by Arrow kernels and deflated by ISA-L, both with the GIL released, so the
    worker's other thread is not held up. 10M users: the workbook used to start after the per-user results
    and wait 14.5 s at the end."""
    from distributed import secede

    secede()
    return write_results_xlsx(*args, **kwargs)
