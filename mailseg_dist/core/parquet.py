"""The Parquet part files of a layer folder and their row groups: the units workers read.

Row counts come from the footers (no pass over the data), so a Dask array of
one chunk per row group knows its shape before anything is read.
"""

from __future__ import annotations

from pathlib import Path

from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.storage import as_location, open_parquet, parquet_metadata


def parquet_files(users_path) -> list:
    """Part files of a users folder (local or in a store), sorted; hidden and `_`-prefixed files
    (temporaries, metadata) skipped."""
    root = as_location(users_path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputDataError(f"{root}: users folder not found (run `mailseg ingest` first)")
    files = sorted(p for p in root.rglob("*.parquet")
                   if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts))
    if not files:
        raise InputDataError(f"{root}: no Parquet part files in the users folder")
    return files


def parquet_units(files: list[Path]) -> list[tuple[str, int | None, int]]:
    """(path, row group or None for a file without one, rows) per chunk, from the footers only."""
    units = []
    for path in files:
        meta = parquet_metadata(path)
        if meta.num_row_groups == 0:
            units.append((str(path), None, 0))
        for i in range(meta.num_row_groups):
            units.append((str(path), i, meta.row_group(i).num_rows))
    return units


def read_unit_table(unit: tuple[str, int | None, int], columns: list[str]):
    """One unit's `columns` as a pyarrow Table."""
    path, group, _ = unit
    with open_parquet(path) as parquet:
        return parquet.read(columns=columns) if group is None else parquet.read_row_group(group, columns=columns)


def read_group_table(group: list, columns: list[str]):
    """Consecutive units' `columns` as one pyarrow Table (its columns chunked by unit)."""
    import pyarrow as pa

    tables = [read_unit_table(unit, columns) for unit in group]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def table_columns(table, columns: list[str]) -> dict:
    """NumPy arrays of a Table's `columns`, straight from Arrow: the model's eight feature columns of a
    100,000-row unit take 7.7 ms read this way, 11.2 ms through pandas (the uncached Lloyd passes read
    every unit every pass)."""
    return {name: table.column(name).to_numpy() for name in columns}
