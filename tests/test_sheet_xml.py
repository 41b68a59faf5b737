"""Sheet rows built by Arrow (outputs.sheet_xml) and spliced into a rustpy-xlsxwriter package (outputs.xlsx_package):
checked against openpyxl, python-calamine and LibreOffice reading the file back."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import openpyxl
import pyarrow as pa
import pytest
from openpyxl.utils import get_column_letter
from openpyxl.utils.escape import unescape
from python_calamine import CalamineWorkbook
from rustpy_xlsxwriter import write_worksheets

from mailseg_dist.outputs import sheet_xml, xlsx_package
from mailseg_dist.outputs.sheet_xml import column_letters, dimension, escape_text, rows_xml
from mailseg_dist.outputs.xlsx_package import splice_rows

TRICKY = ["=1+1", "@x", "a & b < c > d", "  padded  ", "tab\there", "line\nbreak", "bell\x07", "_x0041_",
          "ñandú 😀", "", "\x00zero", "quote \" and ' apostrophe"]
NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def tricky_batch(n: int = 60) -> pa.RecordBatch:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-12, 14, size=n)
    floats[:min(n, 4)] = [np.nan, np.inf, -np.inf, -0.0][:n]
    texts = [TRICKY[i % len(TRICKY)] for i in range(n)]
    return pa.RecordBatch.from_arrays([
        pa.array(rng.integers(-2**40, 2**40, size=n)),
        pa.array(floats),
        pa.array([None if i % 7 == 0 else i % 3 == 0 for i in range(n)], pa.bool_()),
        pa.array([None if i % 5 == 0 else t for i, t in enumerate(texts)], pa.string()),
        pa.array(texts).dictionary_encode(),
        pa.array([None if i % 4 == 0 else float(i) for i in range(n)], pa.float64()),
    ], names=["ints", "floats", "flags", "plain", "dictionary", "gappy"])


def write(batches, path, header_rows: int = 1) -> pa.Schema:
    schema = batches[0].schema
    frame = io.BytesIO()
    options = {"header_row": {"S": 1}, "merge_ranges": {"S": [(0, 0, 0, 5, "a note")]}} if header_rows == 2 else {}
    write_worksheets([("S", pa.schema([(f.name, pa.string()) for f in schema]).empty_table()),
                      ("Other", [{"a": 1.5, "b": "text"}])], frame, autofit=False, **options)
    rows, first = [], header_rows + 1
    for batch in batches:
        rows.extend(rows_xml(batch, first))
        first += batch.num_rows
    splice_rows(frame.getvalue(), path, "xl/worksheets/sheet1.xml", rows, dimension(len(schema), first - 1))
    return schema


def expected_values(batch: pa.RecordBatch) -> list[list]:
    """What a reader must give back per cell: numbers as floats (non-finite: blank), text as it is."""
    out = []
    for row in batch.to_pylist():
        values = []
        for value in row.values():
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            values.append(value)
        out.append(values)
    return out


def test_column_letters_match_openpyxl():
    assert column_letters(1000) == [get_column_letter(i) for i in range(1, 1001)]


def test_escaped_text_is_valid_xml_that_excel_unescapes_to_the_text():
    for text in TRICKY:
        parsed = ET.fromstring(f"<t>{escape_text(text)}</t>".encode()).text or ""
        assert unescape(parsed) == text
    assert escape_text("_x0041_") == "_x005F_x0041_" and escape_text("bell\x07") == "bell_x0007_"


@pytest.mark.parametrize("piece_rows", [16_384, 7], ids=["one-piece", "pieces-of-7-rows"])
def test_rows_xml_is_well_formed_with_references_from_the_first_row(monkeypatch, piece_rows):
    monkeypatch.setattr(sheet_xml, "XML_ROWS", piece_rows)
    batch = tricky_batch().slice(7, 20)  # a slice: its data buffer starts before its first value
    root = ET.fromstring(b"<sheetData xmlns='" + NS[1:-1].encode() + b"'>" + b"".join(rows_xml(batch, 5))
                         + b"</sheetData>")
    rows = root.findall(f"{NS}row")
    assert [r.get("r") for r in rows] == [str(i) for i in range(5, 25)]
    for row in rows:
        refs = [c.get("r") for c in row.findall(f"{NS}c")]
        assert all(ref.endswith(row.get("r")) for ref in refs)
        assert refs == sorted(refs, key=lambda ref: column_letters(6).index(ref.rstrip("0123456789")))


@pytest.mark.parametrize("header_rows", [1, 2], ids=["header", "note-and-header"])
def test_spliced_rows_read_back_exactly_with_openpyxl_and_calamine(tmp_path, header_rows):
    batches = [tricky_batch(), tricky_batch(30), tricky_batch(0)]  # an empty batch: no rows, no harm
    path = tmp_path / "t.xlsx"
    schema = write(batches, path, header_rows)
    with zipfile.ZipFile(path) as package:
        assert package.testzip() is None  # every part's CRC and size as the ZIP directory says
    want = [v for b in batches for v in expected_values(b)]
    ws = openpyxl.load_workbook(path)["S"]
    cells = [list(r) for r in ws.iter_rows()]
    assert [c.value for c in cells[header_rows - 1]] == schema.names
    assert ws.calculate_dimension() == f"A1:F{header_rows + len(want)}"
    got = [[c.value for c in r] for r in cells[header_rows:]]
    assert len(got) == len(want) == 90
    for row_got, row_want in zip(got, want):
        assert row_got[0] == row_want[0] and isinstance(row_got[0], int)
        assert row_got[1] == row_want[1]  # shortest round-trip decimals: exact
        assert row_got[2] is row_want[2] and row_got[5] == row_want[5]
        # openpyxl leaves Excel's _xHHHH_ escapes in inline strings (as in rust_xlsxwriter's files); calamine,
        # like Excel, reads them back (below)
        assert [None if v is None else unescape(v) for v in row_got[3:5]] == row_want[3:5]
    types = {c.data_type for r in cells[header_rows:] for c in r[3:5] if c.value is not None}
    assert types == {"s"}  # "=1+1" is text, never a formula
    calamine = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("S").to_python(skip_empty_area=False)
    blank = lambda v: "" if v is None else v  # noqa: E731 (calamine reads a missing cell as "")
    for row_got, row_want in zip(calamine[header_rows:], want):
        assert [blank(v) for v in row_got[1:]] == [blank(v) for v in row_want[1:]]
        assert row_got[0] == row_want[0]
    assert openpyxl.load_workbook(path)["Other"]["A2"].value == 1.5  # the frame's other sheets are kept


def test_a_part_past_four_gib_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_package, "_LIMIT", 10_000)
    with pytest.raises(ValueError, match=r"workbook part xl/worksheets/sheet1\.xml would pass 4 GiB \(.* bytes so far\): "
                                         r"lower report\.excel_max_rows"):
        write([tricky_batch(200)], tmp_path / "t.xlsx")


@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (.ci/run installs libreoffice-calc)")
def test_libreoffice_opens_the_spliced_workbook_and_reads_the_same_cells(tmp_path):
    batch = tricky_batch()
    write([batch], tmp_path / "t.xlsx", header_rows=2)
    # CSV filter: comma, double quote, UTF-8, from line 1; "formulas as text" off, sheet 1
    subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,1",
                    "--outdir", str(tmp_path), str(tmp_path / "t.xlsx")], check=True, capture_output=True,
                   timeout=300)
    rows = list(csv.reader(open(tmp_path / "t-S.csv", encoding="utf-8", newline="")))
    assert rows[0][0] == "a note" and rows[1] == batch.schema.names and len(rows) == 2 + batch.num_rows
    for got, want in zip(rows[2:], expected_values(batch)):
        assert int(got[0]) == want[0]
        assert (got[1] == "") if want[1] is None else float(got[1]) == pytest.approx(want[1], rel=1e-14)
        assert got[2] == ("" if want[2] is None else str(want[2]).upper())
        assert got[3:5] == ["" if v is None else v for v in want[3:5]]


@pytest.mark.parametrize("encoded", [False, True], ids=["text", "dictionary"])
def test_a_text_longer_than_an_excel_cell_is_refused_naming_row_and_column(tmp_path, encoded):
    texts = ["short", "x" * 32_767, "y" * 32_768, "z"]
    column = pa.array(texts).dictionary_encode() if encoded else pa.array(texts)
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2, 3, 4]), column], names=["Id", "segmento"])
    with pytest.raises(ValueError, match=r"^sheet row 4, column segmento: a text of 32,768 characters, where an "
                                         r"Excel cell holds at most 32,767$"):
        list(rows_xml(batch, 2))
    assert b"x" * 32_767 in b"".join(rows_xml(batch.slice(0, 2), 2))  # the longest a cell holds is written
