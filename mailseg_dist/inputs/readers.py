"""Readers: any supported input file → chunks of rows with schema column names.

Every reader yields pandas chunks whose columns are the schema names (via the
alias table), extras under their cleaned header, plus `source_row`: the row's
number in the file as a person would find it (Excel row, or CSV line with the
header as line 1). Values stay as read (text, or numbers from typed Parquet);
coercion and validation belong to clean.py, which can then say exactly what
was wrong with which cell.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.storage import as_location, file_info, is_remote
from mailseg_dist.inputs.schema import (
    REQUIRED,
    SOURCE_ROW,
    map_columns,
    missing_required,
)

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted xlsx and legacy .xls
ZIP_MAGIC = b"PK\x03\x04"
MAX_UNZIPPED_BYTES = 8 << 30  # larger than any sheet Excel can hold: beyond is a zip bomb
MAX_ZIP_RATIO = 200


@dataclass
class InputInfo:
    """What the reader learned about the input, recorded in the month's manifest."""

    path: Path
    fmt: str
    options: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)  # input header → schema or extra name
    header: list = field(default_factory=list)  # column names in input order (schema or extra)

    def record_header(self, raw_header: list, header: list[str]) -> None:
        """The input's header cells and the schema (or extra) name each one got."""
        self.columns = dict(zip((str(h) for h in raw_header), header))
        self.header = header


def check_file(path):
    """The path names a readable, non-empty file (local, or an object in a store), or one line says why not."""
    path = as_location(path)
    try:
        info = file_info(path)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except PermissionError:
        raise InputDataError(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:  # a file used as a folder in the path, a symlink loop, a name too long
        raise InputDataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if info["type"] == "directory":
        raise InputDataError(f"{path}: is a directory, expected an .xlsx, .csv or .parquet file")
    if not is_remote(path) and not os.access(path, os.R_OK):
        raise InputDataError(f"{path}: cannot be read (permission denied)")
    if info["size"] == 0:
        raise InputDataError(f"{path}: empty file (0 bytes), expected a table with a header row")
    return path


def detect_format(path: Path) -> str:
    """Format from the content's signature first, then the file name."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    suffix = path.suffix.lower()
    if head.startswith(OLE2_MAGIC):
        raise InputDataError(
            f"{path}: is a password-protected workbook or a legacy .xls; expected an unprotected .xlsx "
            "(save it again from Excel without a password, as .xlsx)")
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if suffix in (".xlsx", ".xlsm"):
        raise InputDataError(f"{path}: is not an xlsx workbook (no zip signature); if it is a CSV, name it .csv")
    if suffix in (".parquet", ".pq"):
        raise InputDataError(f"{path}: is not a Parquet file (no PAR1 signature)")
    return "csv"


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        raise InputDataError(f"{path}: is a damaged xlsx (bad zip archive)") from None
    unzipped = sum(e.file_size for e in entries)
    zipped = max(1, sum(e.compress_size for e in entries))
    if unzipped > MAX_UNZIPPED_BYTES or unzipped / zipped > MAX_ZIP_RATIO:
        raise InputDataError(
            f"{path}: refused, it would unpack to {unzipped:,} bytes ({unzipped / zipped:.0f}× its size); "
            "expected an ordinary xlsx")
    if not any(e.filename.startswith("xl/worksheets/") for e in entries):
        raise InputDataError(f"{path}: is a zip file but not an xlsx workbook (no xl/worksheets/)")


_ERROR_CELL = (b't="e"', b"t='e'")  # the cell-type attribute of an error cell


def _has_error_cells(path: Path) -> bool:
    """Any worksheet holds an Excel error value (#N/A, #DIV/0!...)?

    calamine reads error cells as empty strings (python-calamine issue #105), which
    would turn a #N/A count into a blank, i.e. 0; such workbooks go through openpyxl,
    which returns the error text so the row is rejected saying what was found.
    """
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if not entry.filename.startswith("xl/worksheets/"):
                continue
            with archive.open(entry) as stream:
                tail = b""
                for block in iter(lambda: stream.read(1 << 20), b""):
                    if any(marker in tail + block for marker in _ERROR_CELL):
                        return True
                    tail = block[-8:]
    return False


def _column_texts(values: tuple) -> np.ndarray:
    """`cell_text` of a whole column: vectorised when every cell is a number or empty (calamine gives
    floats), which is 10× faster than a Python call per cell (212,292 × 9 cells: 4.4 s → 0.4 s)."""
    kinds = set(map(type, values))  # one C-level pass; the per-cell test it replaced took 0.3 of 3.1 s
    if not kinds <= {float, type(None), str} or (str in kinds and any(v != "" for v in values if type(v) is str)):
        return np.array([cell_text(v) for v in values], dtype=object)
    return number_texts(np.fromiter((v if type(v) is float else np.nan for v in values), np.float64, len(values)))


def number_texts(numbers: np.ndarray) -> np.ndarray:
    """`cell_text` of float cells (NaN: empty), vectorised: whole numbers as ints, others with every digit."""
    return number_text_array(numbers).to_numpy(zero_copy_only=False)


# Fractions whose shortest round-trip digits Arrow writes as Python's repr does (no exponent): outside it the
# two differ in form only (Arrow 0.000015, 1.5e-8 and 1.20000000005e+10; repr 1.5e-05, 1.5e-08 and 12000000000.5),
# so repr writes them.
ARROW_AS_REPR = (1e-4, 1e10)


def number_text_array(numbers: np.ndarray) -> pa.Array:
    """`number_texts` as an Arrow string array (null: empty), made by Arrow's casts.

    Why: Python's repr and int-to-str for each of the 212,292 × 9 cells of the default workbook took
    0.33 s of its 1.5 s raw layer, the casts 0.09 s; they make the same text (tests/test_readers.py compares
    them with `cell_text` on values of every magnitude), and the raw layer writes the array as it is."""
    numbers = np.asarray(numbers, dtype=np.float64)
    present = ~np.isnan(numbers)
    whole = present & (numbers == np.floor(numbers)) & (np.abs(numbers) < 2**53)
    texts = pa.array(np.where(whole, numbers, 0).astype(np.int64)).cast(pa.string())
    if (present & ~whole).any():  # counts are whole: their column skips the float cast
        texts = pc.if_else(pa.array(whole), texts, pa.array(numbers).cast(pa.string()))
    magnitude = np.abs(numbers)
    by_repr = np.flatnonzero(present & ~whole & ((magnitude < ARROW_AS_REPR[0]) | (magnitude >= ARROW_AS_REPR[1])))
    if len(by_repr):  # rare in mailing data: a handful of cells, one Python call each
        fixed = texts.to_numpy(zero_copy_only=False)
        fixed[by_repr] = [repr(float(v)) for v in numbers[by_repr]]
        texts = pa.array(fixed, pa.string())
    return pc.if_else(pa.array(present), texts, pa.scalar(None, pa.string()))


def _column_frame(rows: list, header: list[str], first_row: int) -> pd.DataFrame:
    """A chunk of spreadsheet rows as text columns (ragged rows padded with empty cells)."""
    width = len(header)
    if any(len(r) != width for r in rows):
        rows = [list(r[:width]) + [None] * (width - len(r)) for r in rows]
    columns = list(zip(*rows)) if rows else [()] * width
    frame = pd.DataFrame({i: _column_texts(col) for i, col in enumerate(columns)}, dtype=object)
    frame.columns = header
    frame[SOURCE_ROW] = range(first_row, first_row + len(frame))
    return frame


def cell_text(value: object) -> object:
    """Spreadsheet cell → text (None for an empty cell); floats keep every digit."""
    if value is None or value == "":
        return None
    if isinstance(value, float):  # whole numbers as ints, so calamine (4.0) and openpyxl (4) agree
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return str(value)


def _xlsx_rows(path: Path, sheet: str | None, engine: str) -> tuple[str, Iterator[list], str]:
    if engine == "calamine":
        from python_calamine import CalamineWorkbook

        try:
            book = CalamineWorkbook.from_path(str(path))
        except Exception as exc:  # calamine raises its own error types for damaged files
            raise InputDataError(f"{path}: cannot be read as xlsx ({str(exc).splitlines()[0]})") from None
        names = book.sheet_names
        name = pick_sheet(path, names, sheet)
        rows = book.get_sheet_by_name(name).iter_rows()
    else:
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise InputDataError(f"{path}: cannot be read as xlsx ({str(exc).splitlines()[0]})") from None
        name = pick_sheet(path, book.sheetnames, sheet)
        rows = book[name].iter_rows(values_only=True)
    return name, rows, engine


def pick_sheet(path: Path, names: list[str], sheet: str | None) -> str:
    if not names:
        raise InputDataError(f"{path}: workbook has no sheets")
    if sheet is None:
        return names[0]
    if sheet not in names:
        raise InputDataError(f"{path}: no sheet named '{sheet}'; sheets found: {', '.join(names)}")
    return sheet


def header_for(source: str, names: list) -> list[str]:
    """Schema names for the columns of an in-memory frame (same aliases and errors as a file's header)."""
    return _header(source, names, "columns:")


def schema_header(raw_header: list) -> list[str]:
    """The schema (or extra) name of each header cell, in order (schema.map_columns)."""
    mapping = map_columns(list(raw_header))
    return [mapping[i] for i in range(len(raw_header))]


def _header(path: Path, raw_header: list, where: str) -> list[str]:
    header = schema_header(raw_header)
    missing = missing_required(header)
    if missing:
        found = ", ".join(str(h) for h in raw_header if h is not None and str(h).strip()) or "nothing"
        found = found.encode("unicode_escape").decode("ascii") if not found.isprintable() else found
        found = found if len(found) <= 300 else found[:300] + "…"  # one readable line, even for junk
        raise InputDataError(
            f"{path}: {where} missing required column(s) {', '.join(missing)}; found: {found}")
    return header


def iter_xlsx(path: Path, info: InputInfo, chunk_rows: int, sheet: str | None, engine: str) -> Iterator[pd.DataFrame]:
    """Chunks of text columns with their Excel row numbers: fastexcel's typed columns when the sheet
    allows it (inputs/xlsx_columns.py), else python-calamine's or openpyxl's rows; a workbook with error
    cells always through openpyxl (see `_has_error_cells`)."""
    _check_zip(path)
    engine = "openpyxl" if engine != "openpyxl" and _has_error_cells(path) else engine
    if engine == "fastexcel":
        from mailseg_dist.inputs.xlsx_columns import column_chunks

        chunks = column_chunks(path, info, chunk_rows, sheet)
        if chunks is not None:
            return chunks
        engine = "calamine"
    return _row_chunks(path, info, chunk_rows, sheet, engine)


def _row_chunks(path: Path, info: InputInfo, chunk_rows: int, sheet: str | None, engine: str):
    name, rows, engine = _xlsx_rows(path, sheet, engine)
    info.options = {"sheet": name, "engine": engine}
    excel_row, raw_header = 0, None
    for excel_row, values in enumerate(rows, start=1):
        texts = [cell_text(v) for v in values]
        if any(t is not None for t in texts):
            raw_header = texts
            break
    if raw_header is None:
        raise InputDataError(f"{path}: sheet '{name}' is empty, expected a header row ({', '.join(REQUIRED)})")
    header = _header(path, raw_header, f"sheet '{name}' row {excel_row}:")
    info.record_header(raw_header, header)
    buffer, first = [], excel_row + 1
    for values in rows:
        buffer.append(values)
        if len(buffer) == chunk_rows:
            yield _column_frame(buffer, header, first)
            first += len(buffer)
            buffer = []
    if buffer:
        yield _column_frame(buffer, header, first)


def _csv_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as such, else Excel's cp1252."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16"  # Excel's "Unicode text" export
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:  # the whole file, block by block: a block may end inside a character
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig"


def _sniff_csv(path: Path, sep: str, decimal: str) -> tuple[str, str, str]:
    encoding = _csv_encoding(path)
    with open(path, "rb") as handle:
        raw = handle.read(65536)
    if encoding != "utf-16" and b"\0" in raw:
        raise InputDataError(f"{path}: is a binary file, expected a CSV text file or an .xlsx workbook")
    first = raw.decode(encoding, errors="ignore").splitlines()[0] if raw.strip() else ""
    if sep == "auto":
        counts = {s: first.count(s) for s in (";", ",", "\t")}
        sep = max(counts, key=counts.get) if any(counts.values()) else ","
    if decimal == "auto":
        decimal = "," if sep == ";" else "."
    return sep, decimal, encoding


def _check_first_record(path: Path, sep: str, encoding: str) -> None:
    """A first data row wider than the header would silently become pandas' index: refuse it."""
    if len(sep) != 1:  # the csv module takes one-character separators only; pandas checks the rest
        return
    with open(path, encoding=encoding, newline="") as handle:
        records = csv.reader(handle, delimiter=sep)
        header, first = next(records, []), next(records, [])
    if len(first) > len(header):
        raise InputDataError(f"{path}: malformed CSV, line 2 has {len(first)} fields but the header has "
                             f"{len(header)} (a '{sep}' inside an unquoted value?)")


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        expected, line, seen = fields.groups()
        return f"line {line} has {seen} fields but the header has {expected} (a separator inside an unquoted value?)"
    return text


def iter_csv(path: Path, info: InputInfo, chunk_rows: int, sep: str, decimal: str):
    sep, decimal, encoding = _sniff_csv(path, sep, decimal)
    info.options = {"sep": sep, "decimal": decimal, "encoding": encoding}
    try:
        _check_first_record(path, sep, encoding)
        reader = pd.read_csv(path, sep=sep, dtype=str, chunksize=chunk_rows, skip_blank_lines=False,
                             keep_default_na=False, na_values=[""], encoding=encoding, header=0,
                             index_col=False)
        header = None
        for chunk in reader:
            if header is None:
                header = _header(path, list(chunk.columns), "header:")
                info.record_header(list(chunk.columns), header)
            first = 2 + (int(chunk.index[0]) if len(chunk) else 0)
            chunk.columns = header
            chunk = chunk.astype(object).where(chunk.notna(), None)
            if decimal == ",":
                chunk[REQUIRED] = chunk[REQUIRED].apply(lambda col: col.str.replace(",", ".", regex=False))
            chunk[SOURCE_ROW] = range(first, first + len(chunk))
            yield chunk
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: no header row, expected columns {', '.join(REQUIRED)}") from None
    except (pd.errors.ParserError, csv.Error, UnicodeError) as exc:
        raise InputDataError(f"{path}: malformed CSV ({_parser_message(exc)})") from None
    if header is None:  # header only: pandas yields no chunk at all
        with open(path, encoding=encoding) as handle:
            info.header = _header(path, [h.strip() for h in handle.readline().rstrip("\r\n").split(sep)],
                                  "header:")


def parquet_pieces(path: Path, pieces: int) -> list[tuple[list[int], int]]:
    """The file's row groups in up to `pieces` contiguous runs of about equal rows, each with the source row
    of its first row (1 = the first data row), for readers working side by side; [] for a file without
    row groups or one that is not Parquet (the one-reader path then reports it)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path, pre_buffer=False).metadata
    except Exception:
        return []
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    total, out, first = sum(rows), [], 1
    for i, count in enumerate(rows):
        if not out or (first - 1 >= total * len(out) / pieces and len(out) < pieces):
            out.append(([], first))
        out[-1][0].append(i)
        first += count
    return out


def iter_parquet(path: Path, info: InputInfo, chunk_rows: int, row_groups: list[int] | None = None,
                 first: int = 1):
    """Chunks of the file (or of its `row_groups`, whose first row is source row `first`)."""
    import pyarrow.parquet as pq

    try:
        # pre_buffer=False: with pyarrow's default the pre-buffered byte ranges stay allocated for the file's
        # lifetime, so streaming a large file grew by ~13 MiB per million rows (a 40M-user file killed 800 MiB workers).
        source = pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:
        raise InputDataError(f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]})") from None
    names = source.schema_arrow.names
    header = _header(path, names, "schema:")
    info.record_header(names, header)
    for batch in source.iter_batches(batch_size=chunk_rows, row_groups=row_groups):
        chunk = batch.to_pandas()
        chunk.columns = header
        for col in chunk.columns:  # text columns as object so every part file has one schema
            if not pd.api.types.is_numeric_dtype(chunk[col]) or pd.api.types.is_bool_dtype(chunk[col]):
                chunk[col] = chunk[col].astype(object).where(chunk[col].notna(), None).map(
                    lambda v: v if v is None else str(v))
        chunk[SOURCE_ROW] = range(first, first + len(chunk))
        first += len(chunk)
        yield chunk


def read_chunks(path: str | Path, ingest_cfg: dict, sheet: str | None = None, sep: str | None = None,
                decimal: str | None = None) -> tuple[InputInfo, Iterator[pd.DataFrame]]:
    """Open `path` and return what it is plus an iterator over its row chunks."""
    path = check_file(path)
    fmt = detect_format(path)
    info = InputInfo(path=path, fmt=fmt)
    chunk_rows = ingest_cfg["chunk_rows"]
    if fmt == "xlsx":
        chunks = iter_xlsx(path, info, chunk_rows, sheet or ingest_cfg["sheet"], ingest_cfg["xlsx_engine"])
    elif fmt == "parquet":
        chunks = iter_parquet(path, info, chunk_rows)
    else:
        chunks = iter_csv(path, info, chunk_rows, sep or ingest_cfg["sep"], decimal or ingest_cfg["decimal"])
    return info, chunks
