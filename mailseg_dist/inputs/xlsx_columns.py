"""The fast xlsx reader: whole typed columns from fastexcel instead of rows of Python objects.

fastexcel parses the sheet in Rust (calamine) and hands over Arrow columns; python-calamine hands
over one Python object per cell, which the row reader then walks. The raw layer of 212,292 users x 9
columns, same text: 1.62 s against 2.62 s (fastexcel's parse 0.72 s, the numbers' text 0.44 s; the
row reader's parse 1.42 s and its Python walk 1.5 s), three runs each on the quiet 2-core machine;
in fresh processes, imports included, 2.38 s against 3.24 s, openpyxl 11.55 s (bench/bench_xlsx_read.py).
The text stays in Arrow from the cast to the Parquet part (`readers.number_text_array`, then pandas
strings over the same buffers): on the AMD EPYC machine, the numbers' text 0.33 → 0.09 s and the
parts' writing 0.30 → 0.19 s, the whole raw layer 1.50 → 1.10 s.

A column is taken only when it holds one kind of cell (numbers, or text, or nothing): fastexcel's
text for a number is rounded (1/3 → '0.333333333'), so a column mixing both, or holding dates or
booleans, sends the whole sheet to the row reader, as does a header that lacks a required column
(the row reader's message says what was found). Every other cell becomes the same text as the row
reader's (`readers.number_texts`), with the same Excel row numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mailseg_dist.inputs.readers import cell_text, number_text_array, pick_sheet, schema_header
from mailseg_dist.inputs.schema import SOURCE_ROW, missing_required

# Rows looked at for the header: a sheet whose first this many rows are empty goes to the row reader.
HEAD_ROWS = 64
# fastexcel logs a warning for every column without a value ("falling back to string"): an empty
# optional column is an ordinary input, and the warning would be the only line the user sees.
logging.getLogger("fastexcel.types.dtype").setLevel(logging.ERROR)


def _header_row(path: Path, name: str) -> tuple[int, tuple] | None:
    """(Excel row, cells from column A) of the sheet's first row with a value; None when none is near the top.

    openpyxl streams the sheet, so this reads a few rows (12 ms on the 212,292-user book); a fastexcel
    load of any rows parses the whole sheet first, as long as the load of the data itself."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception:  # the row reader says what is wrong with the file
        return None
    try:
        for number, cells in enumerate(book[name].iter_rows(values_only=True), start=1):
            if number > HEAD_ROWS:
                return None
            if any(cell_text(cell) is not None for cell in cells):
                return number, cells
    finally:
        book.close()
    return None


def _texts(column: pa.Array | pa.ChunkedArray) -> pa.Array | np.ndarray | None:
    """The column's cells as the row reader's text (an Arrow string array; NumPy Nones for a column without
    a value); None for a kind of cell it leaves to the row reader."""
    if pa.types.is_floating(column.type):
        return number_text_array(column.to_numpy(zero_copy_only=False))
    if pa.types.is_null(column.type):
        return np.full(len(column), None, dtype=object)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        texts = (column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column).cast(pa.string())
        return pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    return None


def _typed_columns(book, name: str, header_row: int) -> tuple[list[int], list[np.ndarray]] | None:
    """(0-based sheet column, text of every cell below the header) of each column; None: the row reader's."""
    try:
        sheet = book.load_sheet(name, header_row=None, skip_rows=header_row, schema_sample_rows=None,
                                dtype_coercion="strict")
        data = sheet.to_arrow()
    except Exception:  # a column with several kinds of cell: fastexcel refuses it under strict coercion
        return None
    columns = [_texts(column) for column in data.columns]
    if not columns or any(texts is None for texts in columns):
        return None
    return [info.absolute_index for info in sheet.selected_columns], columns


def column_chunks(path: Path, info, chunk_rows: int, sheet: str | None) -> Iterator[pd.DataFrame] | None:
    """Chunks of text columns with their Excel `source_row`, as the row reader gives; None when the
    sheet is one for the row reader (see the module docstring). `info` gets the sheet, engine and header."""
    import fastexcel

    try:
        book = fastexcel.read_excel(str(path))
    except Exception:  # the row reader says what is wrong with the file
        return None
    name = pick_sheet(path, book.sheet_names, sheet)
    found = _header_row(path, name)
    typed = found and _typed_columns(book, name, found[0])
    if not typed:
        return None
    (number, cells), (positions, columns) = found, typed
    raw_header = [cell_text(cells[at]) if at < len(cells) else None for at in positions]
    header = schema_header(raw_header)
    if missing_required(header):
        return None
    info.options = {"sheet": name, "engine": "fastexcel"}
    info.record_header(raw_header, header)
    return _chunks(columns, header, first_row=number + 1, chunk_rows=chunk_rows)


def _chunks(columns: list[np.ndarray], header: list[str], first_row: int, chunk_rows: int):
    rows = len(columns[0]) if columns else 0
    for start in range(0, rows, chunk_rows):
        frame = pd.DataFrame({i: _chunk_of(texts, start, chunk_rows) for i, texts in enumerate(columns)})
        frame.columns = header
        frame[SOURCE_ROW] = range(first_row + start, first_row + start + len(frame))
        yield frame


def _chunk_of(texts: pa.Array | np.ndarray, start: int, rows: int) -> pd.Series | np.ndarray:
    """Rows start..start + rows of a column: Arrow text as a pandas string Series over the same buffers
    (written back to Parquet without a Python object per cell), NumPy Nones as they are."""
    if isinstance(texts, np.ndarray):
        return texts[start:start + rows]
    return texts.slice(start, rows).to_pandas()
