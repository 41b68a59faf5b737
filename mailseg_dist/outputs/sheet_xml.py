"""Sheet rows as SpreadsheetML (`<row>` elements of a worksheet part), built a column at a time by Arrow.

Why not a cell writer: sheet Clusters holds up to 1,048,575 users x 17 columns. rustpy-xlsxwriter (Rust) wrote
those 17.8M cells in 13.6 s, most of it deflating 600 MB of XML at zlib's level 6; here every column of a
16,384-row piece becomes its cells' XML in a few Arrow kernels, and xlsx_package deflates it with ISA-L:
4.6 s for the same sheet, 8.2 s with zlib at level 1, 19.4 s at level 6 (bench/results/xlsx_1048575.json).
Every cell carries its reference (r="B7"), as Excel writes them; a missing or non-finite number is no cell
(a blank), as before.

Cell types: integers and floats are numbers (Arrow's shortest round-trip decimals); booleans are booleans;
text, dictionary-encoded or not, is an inline string, so "=1+1" or "@x" stays text, never a formula.
"""

from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# XML 1.0 forbids these characters; Excel reads "_xHHHH_" as the character HHHH, so text holding that pattern
# itself is escaped as "_x005F_xHHHH_" (what Excel and rust_xlsxwriter write).
_NEEDS_EXCEL_ESCAPE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]|_x[0-9A-Fa-f]{4}_"
_EXCEL_ESCAPE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_XML_ESCAPES = [("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")]
XML_ROWS = 16_384
EXCEL_TEXT_LIMIT = 32_767  # characters in one cell; Excel reports a longer one as unreadable content
TEXT_OPEN, TEXT_CLOSE = '" t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>"


def column_letters(count: int) -> list[str]:
    """Excel's column names of the first `count` columns: A, B, ..., Z, AA, AB, ..."""
    letters = []
    for index in range(1, count + 1):
        name = ""
        while index:
            index, rest = divmod(index - 1, 26)
            name = chr(65 + rest) + name
        letters.append(name)
    return letters


def dimension(columns: int, last_row: int) -> str:
    """A sheet's <dimension> reference from A1 to the last column of `last_row` (1-based)."""
    return f"A1:{column_letters(columns)[-1]}{last_row}"


def _excel_escaped(text: str) -> str:
    return _EXCEL_ESCAPE.sub(lambda m: "_x005F" + m.group() if len(m.group()) > 1 else f"_x{ord(m.group()):04X}_",
                             text)


def escape_text(text: str) -> str:
    """One text value as the content of an inline string's <t> element (what _escaped_texts does to each)."""
    return _escaped_texts(pa.array([text], pa.string()))[0].as_py()


def _escaped_texts(values: pa.Array) -> pa.Array:
    """Each text as the content of an inline string's <t> element: Arrow replaces &, <, >; Python handles only
    values with control characters or _xHHHH_ patterns (none in the results mailseg writes, so it costs one
    regex scan)."""
    for char, entity in _XML_ESCAPES:
        values = pc.replace_substring(values, char, entity)
    odd = pc.match_substring_regex(values, _NEEDS_EXCEL_ESCAPE)
    if pc.any(odd).as_py():
        rows = np.flatnonzero(odd.fill_null(False).to_numpy(zero_copy_only=False))
        texts = values.to_pylist()
        for row in rows:  # already XML-escaped (no entity matches the pattern): the Excel escape is left
            texts[row] = _excel_escaped(texts[row])
        values = pa.array(texts, pa.string())
    return values


def _check_lengths(texts: pa.Array, name: str, first_row: int, indices: pa.Array | None = None) -> None:
    """Refuse a text longer than an Excel cell holds; `indices`: the rows' codes into `texts` (a dictionary)."""
    lengths = pc.utf8_length(texts)
    if not pc.any(pc.greater(lengths, EXCEL_TEXT_LIMIT)).as_py():
        return
    if indices is not None:
        lengths = pc.take(lengths, indices)
    too_long = pc.greater(lengths, EXCEL_TEXT_LIMIT).fill_null(False).to_numpy(zero_copy_only=False)
    row = int(np.argmax(too_long))
    if too_long[row]:  # a dictionary value no row uses is no cell
        length = lengths[row].as_py()
        raise ValueError(f"sheet row {first_row + row:,}, column {name}: a text of {length:,} characters, "
                         f"where an Excel cell holds at most {EXCEL_TEXT_LIMIT:,}")


def _cell_tails(column: pa.Array, name: str, first_row: int) -> tuple[str, pa.Array]:
    """(type attribute and opening tags, value with closing tags) of each cell; null where there is no cell."""
    kind = column.type
    if pa.types.is_dictionary(kind):  # escape each distinct text once, then one take per cell
        dictionary = column.dictionary.cast(pa.string())
        _check_lengths(dictionary, name, first_row, column.indices)
        return "", pc.take(pc.binary_join_element_wise(TEXT_OPEN, _escaped_texts(dictionary), TEXT_CLOSE, ""),
                           column.indices)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        _check_lengths(column, name, first_row)
        return TEXT_OPEN, pc.binary_join_element_wise(_escaped_texts(column.cast(pa.string())), TEXT_CLOSE, "")
    if pa.types.is_boolean(kind):
        return '" t="b"><v>', pc.binary_join_element_wise(column.cast(pa.int8()).cast(pa.string()), "</v></c>", "")
    if pa.types.is_floating(kind):  # NaN and infinities are no number Excel can hold: a blank cell
        column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, kind))
    elif not pa.types.is_integer(kind):
        raise TypeError(f"sheet cells expected numbers, booleans or text, found {kind}")
    return '"><v>', pc.binary_join_element_wise(column.cast(pa.string()), "</v></c>", "")


def rows_xml(batch: pa.RecordBatch, first_row: int) -> Iterator[memoryview]:
    """The <row> elements of `batch`, its first row being sheet row `first_row` (1-based), as UTF-8 bytes,
    XML_ROWS rows at a time (one measurement while choosing, 212,292 users: 65,536-row pieces peaked 270 MB
    over the imports, 16,384-row pieces 170 MB, in no more time)."""
    for start in range(0, batch.num_rows, XML_ROWS):
        yield _piece_xml(batch.slice(start, XML_ROWS), first_row + start)


def _piece_xml(batch: pa.RecordBatch, first_row: int) -> memoryview:
    rows = pa.array(np.arange(first_row, first_row + batch.num_rows)).cast(pa.string())
    pieces: list = ['<row r="', rows, '">']
    for letter, name, column in zip(column_letters(batch.num_columns), batch.schema.names, batch.columns):
        opening, tails = _cell_tails(column, name, first_row)
        cells = pc.binary_join_element_wise(f'<c r="{letter}', rows, opening, tails, "")
        pieces.append(pc.fill_null(cells, ""))
    pieces.append("</row>")
    return _joined_bytes(pc.binary_join_element_wise(*pieces, ""))


def _joined_bytes(strings: pa.Array) -> memoryview:
    """All values of a string array back to back, without a copy: its data buffer between the first and
    last offsets."""
    _, offsets, data = strings.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32, count=len(strings) + 1 + strings.offset)[strings.offset:]
    return memoryview(data)[int(bounds[0]):int(bounds[-1])]
