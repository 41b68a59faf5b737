"""Rows spliced into a worksheet of an .xlsx written by rustpy-xlsxwriter (the package: a ZIP of XML parts).

rustpy-xlsxwriter writes the workbook's frame: every sheet, the formats, widths, the merged note and the
header of the big sheet, whose rows are left out. `splice_rows` copies that package part by part and streams
the rows (sheet_xml.rows_xml) in before the sheet's `</sheetData>`, deflating them with ISA-L at level 1: the
1,048,575-user sheet in 4.6 s, 126 MB, where the standard library's zlib took 8.2 s at level 1 (138 MB) and
19.4 s at level 6 (108 MB); rust_xlsxwriter 13.6 s, 105 MB (bench/results/xlsx_1048575.json).

The ZIP is written here (no ZIP64: Excel 2007 refuses it) because the standard library's writer deflates with
zlib only; a part that would pass 4 GiB is refused with an error.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

from isal import isal_zlib

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_LIMIT = 0xFFFFFFFF
_DIMENSION = re.compile(rb'<dimension ref="[A-Z]+[0-9]+(?::[A-Z]+[0-9]+)?"/>')
ROWS_LEVEL = 1  # level 3 deflated the largest sheet 3% smaller in 3.5x the time (one measurement while choosing)


def rows_deflater():
    """The raw-deflate compressor of the sheet with the rows (bench/bench_xlsx.py swaps it for zlib's)."""
    return isal_zlib.compressobj(ROWS_LEVEL, zlib.DEFLATED, -15)


def _part_deflater():
    return zlib.compressobj(6, zlib.DEFLATED, -15)


class _ZipWriter:
    """Deflated parts written one after the other to a seekable file, then the central directory."""

    def __init__(self, handle):
        self.handle, self.entries = handle, []

    def add(self, info: zipfile.ZipInfo, chunks: Iterable[bytes], deflate) -> None:
        start, name = self.handle.tell(), info.filename.encode("utf-8")
        time, date = _dos_time(info.date_time)
        self.handle.write(_LOCAL.pack(0x04034B50, 20, 0x0800, 8, time, date, 0, 0, 0, len(name), 0) + name)
        crc, size, packed = 0, 0, 0
        for chunk in chunks:
            crc, size = isal_zlib.crc32(chunk, crc), size + len(chunk)
            packed += self.handle.write(deflate.compress(chunk))
            _check_size(info, size, self.handle.tell())  # as it grows: not after writing gigabytes in vain
        packed += self.handle.write(deflate.flush())
        _check_size(info, size, self.handle.tell())
        end = self.handle.tell()
        self.handle.seek(start + 14)
        self.handle.write(struct.pack("<III", crc, packed, size))
        self.handle.seek(end)
        self.entries.append((name, time, date, crc, packed, size, start))

    def close(self) -> None:
        directory = self.handle.tell()
        for name, time, date, crc, packed, size, start in self.entries:
            self.handle.write(_CENTRAL.pack(0x02014B50, 20, 20, 0x0800, 8, time, date, crc, packed, size,
                                            len(name), 0, 0, 0, 0, 0, start) + name)
        length = self.handle.tell() - directory
        count = len(self.entries)
        self.handle.write(_END.pack(0x06054B50, 0, 0, count, count, length, directory, 0))


def _check_size(info: zipfile.ZipInfo, size: int, offset: int) -> None:
    if max(size, offset) > _LIMIT:
        raise ValueError(f"workbook part {info.filename} would pass 4 GiB ({size:,} bytes so far): "
                         "lower report.excel_max_rows")


def _dos_time(date_time: tuple) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, max(year - 1980, 0) << 9 | month << 5 | day


def _sheet_parts(sheet: bytes, dimension: str) -> tuple[bytes, bytes]:
    """The sheet's XML before and after where the rows go, its dimension set to the whole table."""
    head, closing, tail = sheet.partition(b"</sheetData>")
    if not closing:
        raise ValueError("workbook frame: the sheet has no </sheetData> to put rows before")
    head, found = _DIMENSION.subn(f'<dimension ref="{dimension}"/>'.encode(), head, count=1)
    if not found:
        raise ValueError("workbook frame: the sheet has no <dimension> element")
    return head, closing + tail


def splice_rows(frame: bytes, out_path: Path, part: str, rows: Iterable[bytes], dimension: str) -> None:
    """Write to `out_path` the package `frame` (an .xlsx's bytes) with `rows` (<row> elements' XML) added at
    the end of the worksheet `part` (e.g. "xl/worksheets/sheet1.xml"), whose dimension becomes `dimension`."""
    with zipfile.ZipFile(io.BytesIO(frame)) as source, open(out_path, "wb") as handle:
        _part(source, part)  # present, or a clear error before anything is written
        writer = _ZipWriter(handle)
        for info in source.infolist():
            data = source.read(info)
            if info.filename != part:
                writer.add(info, [data], _part_deflater())
                continue
            head, tail = _sheet_parts(data, dimension)
            writer.add(info, _chained(head, rows, tail), rows_deflater())
        writer.close()


def splice_rows_first(frame: bytes, out_path: Path, part: str, rows: Iterable[bytes], dimension: str,
                      final_frame: Callable[[], bytes]) -> None:
    """As splice_rows, but the package's other parts come from `final_frame()`, called only once the rows
    are written (they go first in the file; part order is free in a zip): a workbook whose small sheets are
    known later (an update's Cambios, which needs the drift) streams its big sheet meanwhile. `part` must
    be the same in `frame` and in the final frame."""
    with zipfile.ZipFile(io.BytesIO(frame)) as source:
        info, data = _part(source, part)
    head, tail = _sheet_parts(data, dimension)
    with open(out_path, "wb") as handle:
        writer = _ZipWriter(handle)
        writer.add(info, _chained(head, rows, tail), rows_deflater())
        with zipfile.ZipFile(io.BytesIO(final_frame())) as source:
            if _part(source, part)[1] != data:
                raise ValueError(f"workbook frame: part {part} differs once the other sheets are added")
            for other in source.infolist():
                if other.filename != part:
                    writer.add(other, [source.read(other)], _part_deflater())
        writer.close()


def _part(source: zipfile.ZipFile, part: str) -> tuple[zipfile.ZipInfo, bytes]:
    if part not in source.namelist():
        raise ValueError(f"workbook frame: no part {part} (found {source.namelist()})")
    return source.getinfo(part), source.read(part)


def _chained(head: bytes, rows: Iterable[bytes], tail: bytes):
    yield head
    yield from rows
    yield tail
