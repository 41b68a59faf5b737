"""Readers: any supported input file → chunks of rows with schema column names.

Every reader yields pandas chunks whose columns are the schema names (via the
alias table), extras under their cleaned header, plus `source_row`: the row's
number in the file as a person would find it (Excel row, or CSV line with the
header as line 1). Values stay as read (text, or numbers from typed Parquet);
coercion and validation belong to clean.py, which can then say exactly what
was wrong with which cell.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from .errors import InputDataError
from .schema import REQUIRED, SOURCE_ROW, map_columns, missing_required

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


def check_file(path: str | Path) -> Path:
    """The path names a readable, non-empty regular file, or a one-line error says why not."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file")
    if path.is_dir():
        raise InputDataError(f"{path}: is a directory, expected an .xlsx, .csv or .parquet file")
    if not os.access(path, os.R_OK):
        raise InputDataError(f"{path}: cannot be read (permission denied)")
    if path.stat().st_size == 0:
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


def _frame(rows: list, header: list[str], first_row: int) -> pd.DataFrame:
    width = len(header)
    fixed = [list(r[:width]) + [None] * (width - len(r)) for r in rows]
    frame = pd.DataFrame(fixed, columns=header, dtype=object)
    frame[SOURCE_ROW] = range(first_row, first_row + len(frame))
    return frame


def _cell_text(value: object) -> object:
    """Spreadsheet cell → text (None for an empty cell); floats keep every digit."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _xlsx_rows(path: Path, sheet: str | None, engine: str) -> tuple[list[str], Iterator[list]]:
    _check_zip(path)
    if engine == "calamine":
        from python_calamine import CalamineWorkbook

        try:
            book = CalamineWorkbook.from_path(str(path))
        except Exception as exc:  # calamine raises its own error types for damaged files
            raise InputDataError(f"{path}: cannot be read as xlsx ({str(exc).splitlines()[0]})") from None
        names = book.sheet_names
        name = _pick_sheet(path, names, sheet)
        rows = book.get_sheet_by_name(name).iter_rows()
    else:
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise InputDataError(f"{path}: cannot be read as xlsx ({str(exc).splitlines()[0]})") from None
        name = _pick_sheet(path, book.sheetnames, sheet)
        rows = book[name].iter_rows(values_only=True)
    return name, rows


def _pick_sheet(path: Path, names: list[str], sheet: str | None) -> str:
    if not names:
        raise InputDataError(f"{path}: workbook has no sheets")
    if sheet is None:
        return names[0]
    if sheet not in names:
        raise InputDataError(f"{path}: no sheet named '{sheet}'; sheets found: {', '.join(names)}")
    return sheet


def _header(path: Path, raw_header: list, where: str) -> list[str]:
    mapping = map_columns(list(raw_header))
    header = [mapping[i] for i in range(len(raw_header))]
    missing = missing_required(header)
    if missing:
        found = ", ".join(str(h) for h in raw_header if str(h).strip()) or "nothing"
        raise InputDataError(
            f"{path}: {where} missing required column(s) {', '.join(missing)}; found: {found}")
    return header


def iter_xlsx(path: Path, info: InputInfo, chunk_rows: int, sheet: str | None, engine: str):
    name, rows = _xlsx_rows(path, sheet, engine)
    info.options = {"sheet": name, "engine": engine}
    excel_row, raw_header = 0, None
    for excel_row, values in enumerate(rows, start=1):
        texts = [_cell_text(v) for v in values]
        if any(t is not None for t in texts):
            raw_header = texts
            break
    if raw_header is None:
        raise InputDataError(f"{path}: sheet '{name}' is empty, expected a header row ({', '.join(REQUIRED)})")
    header = _header(path, raw_header, f"sheet '{name}' row {excel_row}:")
    info.columns = dict(zip((str(h) for h in raw_header), header))
    buffer, first = [], excel_row + 1
    for values in rows:
        buffer.append([_cell_text(v) for v in values])
        if len(buffer) == chunk_rows:
            yield _frame(buffer, header, first)
            first += len(buffer)
            buffer = []
    if buffer:
        yield _frame(buffer, header, first)


def _sniff_csv(path: Path, sep: str, decimal: str) -> tuple[str, str, str]:
    raw = open(path, "rb").read(65536)
    encoding = "utf-8-sig"
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        encoding = "cp1252"  # Excel's Spanish CSV export
    first = raw.decode(encoding, errors="ignore").splitlines()[0] if raw.strip() else ""
    if sep == "auto":
        counts = {s: first.count(s) for s in (";", ",", "\t")}
        sep = max(counts, key=counts.get) if any(counts.values()) else ","
    if decimal == "auto":
        decimal = "," if sep == ";" else "."
    return sep, decimal, encoding


def iter_csv(path: Path, info: InputInfo, chunk_rows: int, sep: str, decimal: str):
    sep, decimal, encoding = _sniff_csv(path, sep, decimal)
    info.options = {"sep": sep, "decimal": decimal, "encoding": encoding}
    try:
        reader = pd.read_csv(path, sep=sep, dtype=str, chunksize=chunk_rows, skip_blank_lines=False,
                             keep_default_na=False, na_values=[""], encoding=encoding, header=0)
        header = None
        for chunk in reader:
            if header is None:
                header = _header(path, list(chunk.columns), "header:")
                info.columns = dict(zip(map(str, chunk.columns), header))
            first = 2 + (chunk.index[0] if len(chunk) else 0)
            chunk.columns = header
            chunk = chunk.astype(object).where(chunk.notna(), None)
            if decimal == ",":
                chunk[REQUIRED] = chunk[REQUIRED].apply(lambda col: col.str.replace(",", ".", regex=False))
            chunk[SOURCE_ROW] = range(first, first + len(chunk))
            yield chunk
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: no header row, expected columns {', '.join(REQUIRED)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: malformed CSV ({str(exc).strip().splitlines()[-1]})") from None
    if header is None:  # header only: pandas yields no chunk at all
        with open(path, encoding=encoding) as handle:
            _header(path, [h.strip() for h in handle.readline().rstrip("\r\n").split(sep)], "header:")


def iter_parquet(path: Path, info: InputInfo, chunk_rows: int):
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except Exception as exc:
        raise InputDataError(f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]})") from None
    names = source.schema_arrow.names
    header = _header(path, names, "schema:")
    info.columns = dict(zip(names, header))
    first = 1
    for batch in source.iter_batches(batch_size=chunk_rows):
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
