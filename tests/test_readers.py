"""Readers: file checks, format detection, header matching, chunking and source rows, per format."""

from __future__ import annotations

import datetime as dt
import gc
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.inputs import readers
from mailseg_dist.inputs.readers import check_file, detect_format, read_chunks
from mailseg_dist.inputs.schema import REQUIRED, SOURCE_ROW, map_columns, normalize

HEADER = ["Id", "send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week"]
ROWS = [[i, i + 1, 0, i % 3, 0, i + 2, i % 2, 17.333333, 2.5] for i in range(1, 8)]
ICFG = {"chunk_rows": 3, "sheet": None, "sep": "auto", "decimal": "auto", "xlsx_engine": "calamine"}


def write_xlsx(path, sheets=None, leading_blank_rows=0):
    book = xlsxwriter.Workbook(str(path))
    for name, rows in (sheets or {"Sheet1": ROWS}).items():
        sheet = book.add_worksheet(name)
        sheet.write_row(leading_blank_rows, 0, HEADER)
        for r, row in enumerate(rows, start=leading_blank_rows + 1):
            for c, value in enumerate(row):
                if isinstance(value, str):
                    sheet.write_string(r, c, value)
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return path


def write_csv(path, rows=ROWS, header=HEADER, sep=",", encoding="utf-8"):
    lines = [sep.join(header)] + [sep.join("" if v is None else str(v) for v in row) for row in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def read_all(path, **kwargs):
    cfg = {**ICFG, **kwargs.pop("cfg", {})}
    info, chunks = read_chunks(path, cfg, **kwargs)
    chunks = list(chunks)
    return info, chunks, pd.concat(chunks, ignore_index=True) if chunks else None


# ---------------------------------------------------------------- file checks and format


def test_check_file_refuses_missing_directory_and_empty(tmp_path):
    with pytest.raises(InputDataError, match="no such file"):
        check_file(tmp_path / "nope.csv")
    with pytest.raises(InputDataError, match="is a directory"):
        check_file(tmp_path)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputDataError, match=r"empty file \(0 bytes\)"):
        check_file(tmp_path / "empty.csv")
    with pytest.raises(InputDataError, match=r"empty.csv/users.csv: cannot be read \(Not a directory\)"):
        check_file(tmp_path / "empty.csv" / "users.csv")  # a file used as a folder
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    with pytest.raises(InputDataError, match=r"loop.csv: cannot be read \(Too many levels of symbolic links\)"):
        check_file(tmp_path / "loop.csv")


@pytest.mark.parametrize("name, head, expected", [
    ("a.xlsx", b"PK\x03\x04rest", "xlsx"),
    ("a.bin", b"PK\x03\x04rest", "xlsx"),          # content wins over the name
    ("a.csv", b"PAR1....", "parquet"),
    ("a.txt", b"Id,send\n", "csv"),
    ("a.csv", b"Id;send\n", "csv"),
])
def test_detect_format_from_content(tmp_path, name, head, expected):
    path = tmp_path / name
    path.write_bytes(head)
    assert detect_format(path) == expected


@pytest.mark.parametrize("name, head, message", [
    ("a.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1junk", "password-protected"),
    ("a.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1junk", "legacy .xls"),
    ("a.xlsx", b"Id,send\n1,2\n", "name it .csv"),
    ("a.parquet", b"not parquet", "not a Parquet file"),
])
def test_detect_format_refusals(tmp_path, name, head, message):
    path = tmp_path / name
    path.write_bytes(head)
    with pytest.raises(InputDataError, match=message):
        detect_format(path)


def test_zip_without_worksheets_is_refused(tmp_path):
    path = tmp_path / "a.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(InputDataError, match="no xl/worksheets/"):
        read_all(path)


def test_zip_bomb_refused_by_size_and_by_ratio(tmp_path, monkeypatch):
    path = write_xlsx(tmp_path / "ok.xlsx")
    read_all(path)  # an ordinary workbook passes both limits
    monkeypatch.setattr(readers, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(InputDataError, match="refused, it would unpack to"):
        read_all(path)
    monkeypatch.setattr(readers, "MAX_UNZIPPED_BYTES", 8 << 30)
    monkeypatch.setattr(readers, "MAX_ZIP_RATIO", 1.5)
    with pytest.raises(InputDataError, match="expected an ordinary xlsx"):
        read_all(path)


def test_damaged_zip_is_an_input_error(tmp_path):
    good = write_xlsx(tmp_path / "good.xlsx").read_bytes()
    path = tmp_path / "cut.xlsx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputDataError, match="damaged xlsx"):
        read_all(path)


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize("header, column", [
    ("ID", "Id"), (" Open ", "open"), ("comprador", "Comprador"), ("Día de la semana", "day_of_week"),
    ("dia_semana", "day_of_week"), ("buyer", "Comprador"), ("weekday", "day_of_week"), ("TOTAL", "Total"),
    ("Hora", "hour"), ("Día-de-la-semana", "day_of_week"), ("Enviados", "send"), ("Rebotes", "bounce"),
])
def test_header_aliases(header, column):
    assert map_columns([header]) == {0: column}


def test_map_columns_keeps_extras_and_never_merges():
    mapping = map_columns(["Id", "ID", "Ciudad", "", "source_row", "send"])
    assert mapping == {0: "Id", 1: "id", 2: "ciudad", 3: "column_4", 4: "extra_source_row", 5: "send"}
    assert normalize("  Día de   la.semana ") == "dia_de_la_semana"


def test_missing_required_column_names_it_and_lists_what_was_found(tmp_path):
    path = write_csv(tmp_path / "a.csv", [r[:6] + r[7:] for r in ROWS], HEADER[:6] + HEADER[7:])
    with pytest.raises(InputDataError) as err:
        read_all(path)
    message = str(err.value)
    assert str(path) in message and "missing required column(s) Comprador;" in message
    assert "found: Id, send, bounce, open, click, Total, hour, day_of_week" in message
    assert "\n" not in message


def test_junk_header_message_stays_one_short_line(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(("\x07bell," * 200 + "x\n1\n").encode())
    with pytest.raises(InputDataError) as err:
        read_all(path)
    assert "\n" not in str(err.value) and "\x07" not in str(err.value) and len(str(err.value)) < 600


# ---------------------------------------------------------------- xlsx


@pytest.mark.parametrize("engine", ["fastexcel", "calamine"])
def test_xlsx_chunks_source_rows_and_text_cells(tmp_path, engine):
    path = write_xlsx(tmp_path / "a.xlsx", leading_blank_rows=2)  # header on Excel row 3
    info, chunks, frame = read_all(path, cfg={"xlsx_engine": engine})
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert frame[SOURCE_ROW].tolist() == list(range(4, 11))
    assert info.fmt == "xlsx" and info.options == {"sheet": "Sheet1", "engine": engine}
    assert info.header == HEADER
    # whole numbers as ints (calamine's 1.0 and openpyxl's 1 agree), other floats with every digit
    assert frame["Id"].tolist() == [str(i) for i in range(1, 8)]
    assert frame["hour"].iloc[0] == "17.333333" and frame["day_of_week"].iloc[0] == "2.5"


def test_xlsx_engines_read_the_same_text(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[1][1], rows[2][3], rows[3][0] = "ocho", -1, "=1+1"
    rows[4][7] = 1 / 3
    path = write_xlsx(tmp_path / "a.xlsx", {"S": rows})
    _, _, calamine = read_all(path)
    _, _, openpyxl = read_all(path, cfg={"xlsx_engine": "openpyxl"})
    pd.testing.assert_frame_equal(calamine, openpyxl)
    assert calamine["hour"].iloc[4] == repr(1 / 3)


def _awkward_book(path, mixed: bool = False, dates: bool = False):
    """Leading blank rows, a blank row inside, an extra text column, a cell beyond the header,
    floats fastexcel's own text would round (1/3, 2/7, 1e20, 1e-7), blanks and blank-looking text."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Datos")
    sheet.write_row(2, 0, ["user id", *HEADER[1:], "Email"])
    values = [[i, i + 1, None, i % 3, 0, i + 2, i % 2, 1 / 3, 2 / 7] for i in range(1, 9)]
    values[1][1], values[2][2], values[5][7], values[4][8] = 1e20, 1e-7, -3, 2.5e-5
    for r, row in enumerate(values, start=3):
        if r == 6:
            continue  # a blank row among the users
        sheet.write_row(r, 0, row)
        sheet.write_string(r, 9, ["a@x.es", " ", "", "b@y.com"][r % 4])
    sheet.write_string(4, 11, "beyond the header")
    if mixed:
        sheet.write_string(5, 1, " 7 ")
    if dates:
        sheet.write_datetime(5, 7, dt.datetime(2026, 1, 5), book.add_format({"num_format": "yyyy-mm-dd"}))
    book.close()
    return path


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Each cell's text (None where empty) as Python objects: fastexcel's chunks hold Arrow-backed pandas
    strings, the row readers' Python objects; the raw layer's Parquet is the same from either."""
    return frame.astype(object).where(frame.notna(), None)


@pytest.mark.parametrize("shape, fast", [({}, True), ({"mixed": True}, False), ({"dates": True}, False)])
def test_xlsx_engines_read_the_same_text_and_rows_whichever_runs(tmp_path, shape, fast):
    """fastexcel takes a sheet whose columns each hold one kind of cell; any other goes row by row."""
    path = _awkward_book(tmp_path / "a.xlsx", **shape)
    read = {engine: read_all(path, cfg={"xlsx_engine": engine, "chunk_rows": 4})
            for engine in ("fastexcel", "calamine", "openpyxl")}
    assert read["fastexcel"][0].options["engine"] == ("fastexcel" if fast else "calamine")
    # a date is '2026-01-05' to calamine and '2026-01-05 00:00:00' to openpyxl (either way text, rejected)
    for engine in ("calamine",) if shape.get("dates") else ("calamine", "openpyxl"):
        pd.testing.assert_frame_equal(_cells(read["fastexcel"][2]), _cells(read[engine][2]), obj=engine)
        assert [len(c) for c in read["fastexcel"][1]] == [len(c) for c in read[engine][1]]
        assert read["fastexcel"][0].columns == read[engine][0].columns
    frame = read["fastexcel"][2]
    assert frame[SOURCE_ROW].tolist() == list(range(4, 12))
    assert frame["send"].iloc[1] == repr(1e20) and frame["bounce"].iloc[2] == repr(1e-7)
    assert frame["hour"].iloc[0] == repr(1 / 3) and frame["day_of_week"].iloc[0] == repr(2 / 7)
    assert frame["day_of_week"].iloc[4] == repr(2.5e-5) and frame["hour"].iloc[5] == "-3"
    assert frame.iloc[3].drop(SOURCE_ROW).isna().all()  # the blank row, kept for the ledger


def test_xlsx_error_cells_are_text_with_either_engine(tmp_path):
    """calamine reads #N/A as an empty cell (python-calamine #105): such books are read with openpyxl."""
    path = tmp_path / "err.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ROWS[0])
    sheet.write_formula(1, 3, "=NA()", None, "#N/A")
    book.close()
    assert readers._has_error_cells(path)
    assert not readers._has_error_cells(write_xlsx(tmp_path / "ok.xlsx"))
    for engine in ("fastexcel", "calamine", "openpyxl"):
        info, _, frame = read_all(path, cfg={"xlsx_engine": engine})
        assert frame["open"].tolist() == ["#N/A"] and info.options["engine"] == "openpyxl"


def test_xlsx_sheet_choice(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", {"Enero": ROWS, "Febrero": ROWS[:2]})
    assert len(read_all(path)[2]) == 7
    assert len(read_all(path, sheet="Febrero")[2]) == 2
    assert len(read_all(path, cfg={"sheet": "Febrero"})[2]) == 2
    with pytest.raises(InputDataError, match="no sheet named 'Marzo'; sheets found: Enero, Febrero"):
        read_all(path, sheet="Marzo")


def test_xlsx_empty_sheet_and_header_only(tmp_path):
    path = tmp_path / "empty.xlsx"
    book = xlsxwriter.Workbook(str(path))
    book.add_worksheet("Vacía")
    book.close()
    with pytest.raises(InputDataError, match="sheet 'Vacía' is empty, expected a header row"):
        read_all(path)
    info, chunks, _ = read_all(write_xlsx(tmp_path / "hdr.xlsx", {"S": []}))
    assert chunks == [] and info.header == HEADER


def test_xlsx_dates_and_booleans_become_text(tmp_path):
    path = tmp_path / "a.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ROWS[0])
    sheet.write_datetime(1, 1, dt.datetime(2026, 1, 5), book.add_format({"num_format": "yyyy-mm-dd"}))
    sheet.write_boolean(1, 6, True)
    book.close()
    _, _, frame = read_all(path)
    assert frame["send"].iloc[0].startswith("2026-01-05") and frame["Comprador"].iloc[0] == "True"


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize("sep, encoding, expected_encoding", [
    (",", "utf-8", "utf-8-sig"), (";", "cp1252", "cp1252"), ("\t", "utf-16", "utf-16"), (",", "utf-8-sig", "utf-8-sig"),
])
def test_csv_dialects(tmp_path, sep, encoding, expected_encoding):
    rows = [[str(v).replace(".", ",") if sep == ";" else v for v in row] for row in ROWS]
    header = HEADER[:8] + ["Día de la semana"]
    info, chunks, frame = read_all(write_csv(tmp_path / "a.csv", rows, header, sep, encoding))
    assert info.options == {"sep": sep, "decimal": "," if sep == ";" else ".", "encoding": expected_encoding}
    assert [len(c) for c in chunks] == [3, 3, 1] and frame[SOURCE_ROW].tolist() == list(range(2, 9))
    assert frame["hour"].tolist() == ["17.333333"] * 7  # decimal commas turned into points
    assert frame.columns.tolist() == [*REQUIRED, SOURCE_ROW]


def test_csv_explicit_separator_and_decimal(tmp_path):
    rows = [[str(v).replace(".", ",") for v in row] for row in ROWS]
    path = write_csv(tmp_path / "a.csv", rows, sep="|")
    _, _, frame = read_all(path, sep="|", decimal=",")
    assert frame["day_of_week"].tolist() == ["2.5"] * 7


def test_csv_encoding_decided_on_the_whole_file(tmp_path):
    """cp1252 after the first 64 KB is still found; a UTF-8 character cut by a block edge is still UTF-8."""
    filler = [[i, 1, 0, 0, 0, 1, 0, 17.0, 2.0] for i in range(10, 4000)]
    late = write_csv(tmp_path / "late.csv", filler + [[1, 1, 0, 0, 0, 1, "Sí", 17.0, 2.0]], encoding="cp1252")
    assert late.stat().st_size > 65536
    assert read_all(late)[0].options["encoding"] == "cp1252"
    assert read_all(late)[2]["Comprador"].iloc[-1] == "Sí"
    prefix = "Id,send,bounce,open,click,Total,Comprador,hour,day_of_week,nota\n"
    body = "1,1,0,0,0,1,0,17,2," + "x" * (65536 - len(prefix) - 20 - 1) + "é\n"
    path = tmp_path / "cut.csv"
    path.write_bytes((prefix + body).encode("utf-8"))
    assert 65530 < (prefix + body).encode().index("é".encode()) < 65537
    info, _, frame = read_all(path)
    assert info.options["encoding"] == "utf-8-sig" and frame["nota"].iloc[0].endswith("é")


def test_csv_blank_and_short_rows_are_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(",".join(HEADER) + "\n1,1,0,0,0,1,0,17,2\n\n,,,,,,,,\n2,1,0\n")
    _, _, frame = read_all(path)
    assert frame[SOURCE_ROW].tolist() == [2, 3, 4, 5]
    assert frame.iloc[1][REQUIRED].isna().all() and frame.iloc[2][REQUIRED].isna().all()
    assert frame.iloc[3]["Total"] is None


@pytest.mark.parametrize("body, line, fields", [
    ("1,1,0,0,0,1,0,17,5,2\n", 2, 10),                       # first row wider: would become pandas' index
    ("1,1,0,0,0,1,0,17,2\n2,1,0,0,0,1,0,17,5,2\n", 3, 10),
])
def test_csv_rows_wider_than_the_header_stop_the_ingest(tmp_path, body, line, fields):
    path = tmp_path / "a.csv"
    path.write_text(",".join(HEADER) + "\n" + body)
    with pytest.raises(InputDataError, match=f"line {line} has {fields} fields but the header has 9"):
        read_all(path)


def test_csv_binary_and_header_only(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(b"Id,send\x00\x01" * 100)
    with pytest.raises(InputDataError, match="is a binary file"):
        read_all(path)
    info, chunks, frame = read_all(write_csv(tmp_path / "hdr.csv", []))
    assert info.header == HEADER and (frame is None or len(frame) == 0)


def test_csv_keeps_values_as_text(tmp_path):
    rows = [["007", " 4 ", "", "NaN", "#N/A", "1e400", "sí", "17,5", "lunes"]]
    _, _, frame = read_all(write_csv(tmp_path / "a.csv", rows, sep=";"))
    assert frame.iloc[0][REQUIRED].tolist() == ["007", " 4 ", None, "NaN", "#N/A", "1e400", "sí", "17.5", "lunes"]


# ---------------------------------------------------------------- Parquet


def test_parquet_typed_batches(tmp_path):
    n = 7
    table = pa.table({
        "ID": pa.array(range(n), pa.int64()), "send": pa.array([1] * 6 + [None], pa.int64()),
        "bounce": [0] * n, "open": [0] * n, "click": [0] * n, "Total": [1] * n,
        "Comprador": pa.array([True, False] * 3 + [None]), "hour": [17.5] * n, "dia_semana": [2.0] * n,
        "nota": pa.array(["a"] * n),
    })
    path = tmp_path / "a.parquet"
    pq.write_table(table, path)
    info, chunks, frame = read_all(path)
    assert info.fmt == "parquet" and info.header == [*REQUIRED, "nota"]
    assert [len(c) for c in chunks] == [3, 3, 1] and frame[SOURCE_ROW].tolist() == list(range(1, 8))
    assert frame["Id"].dtype == np.int64 and frame["Comprador"].tolist()[:2] == ["True", "False"]


def test_damaged_parquet_is_an_input_error(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 100)
    with pytest.raises(InputDataError, match="cannot be read as Parquet"):
        read_all(path)


def test_streaming_a_parquet_input_holds_one_row_group_not_the_file(tmp_path):
    """pyarrow's default pre-buffering kept every row group read so far (memory grew with the file)."""
    path = tmp_path / "many_groups.parquet"
    rng = np.random.default_rng(0)
    group_rows, groups = 20_000, 40
    with pq.ParquetWriter(path, pa.schema([(c, pa.int64()) for c in REQUIRED])) as writer:
        for g in range(groups):
            values = rng.integers(0, 7, size=(group_rows, len(REQUIRED)))
            values[:, 0] = np.arange(g * group_rows, (g + 1) * group_rows)
            writer.write_table(pa.table({c: values[:, i] for i, c in enumerate(REQUIRED)}))
    group_bytes = group_rows * len(REQUIRED) * 8
    gc.collect()  # Arrow memory is counted process-wide: measure from what earlier tests still hold
    before = pa.total_allocated_bytes()
    _, chunks = read_chunks(path, {"chunk_rows": group_rows})
    peak, rows = 0, 0
    for chunk in chunks:
        rows += len(chunk)
        peak = max(peak, pa.total_allocated_bytes() - before)
    assert rows == group_rows * groups
    assert peak < 4 * group_bytes, f"{peak / 2**20:.0f} MiB held while streaming {groups} groups of " \
                                   f"{group_bytes / 2**20:.1f} MiB"


def test_number_texts_are_cell_text_at_every_magnitude():
    """Arrow's casts (readers.number_text_array) write each number as `cell_text` does, whole or not, small
    or large, including where Arrow's own form of a fraction differs (below 1e-4, from 1e10: repr's)."""
    rng = np.random.default_rng(7)
    magnitudes = 10.0 ** rng.uniform(-12, 22, 60_000) * rng.choice([-1.0, 1.0], 60_000)
    edges = [np.nan, 0.0, -0.0, 1e-4, np.nextafter(1e-4, 0), 1e10, np.nextafter(1e10, 0), 2.0**53, 2.0**53 + 2,
             -(2.0**53), 0.1 + 0.2, 1 / 3, 17.333333, 2.5, 1e20, 1e-7, 2.5e-5, 123456789.125, np.inf, -np.inf]
    values = np.concatenate([magnitudes, rng.uniform(0, 24, 20_000), np.round(rng.uniform(0, 7, 20_000), 2),
                             rng.integers(-10**6, 10**6, 20_000).astype(float), edges])
    expected = [readers.cell_text(None if np.isnan(v) else float(v)) for v in values]
    assert readers.number_text_array(values).to_pylist() == expected
    assert readers.number_texts(values).tolist() == expected
    outside = np.abs(magnitudes) < readers.ARROW_AS_REPR[0]
    assert outside.sum() > 1000  # the sample reaches the values repr must write, on both sides
    assert (np.abs(magnitudes) >= readers.ARROW_AS_REPR[1]).sum() > 1000
