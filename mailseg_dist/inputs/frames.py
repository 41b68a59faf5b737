"""A pandas or Dask DataFrame as input: the same raw → users + rejects layers as a file gives.

A notebook user holds the users table in memory (pandas) or as a lazy Dask
DataFrame. Each partition becomes one raw-layer part, written by the worker
that holds it, with its headers mapped by the same aliases and its source rows
numbered 1.. in partition order, so cleaning, the rejects ledger and the
manifest are exactly those of a file. The month's input hash is a SHA-256 over
the per-partition content hashes (computed on the workers), so the same frame
again is recognised as the same input and skipped.
"""

from __future__ import annotations

import hashlib

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from mailseg_dist.core.atomic import atomic_dir
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import as_location, write_parquet
from mailseg_dist.inputs.readers import header_for
from mailseg_dist.inputs.schema import DISTINCT_COLUMNS, ID, SOURCE_ROW, id_is_integer

FRAME_SOURCE = "<{kind} DataFrame: {rows} rows, {parts} partitions>"
PANDAS_PARTITION_ROWS = 500_000  # one raw part per this many rows of a pandas frame


def as_dask_frame(data: pd.DataFrame | dd.DataFrame) -> dd.DataFrame:
    """A Dask DataFrame of the input with a default index (the index is never data)."""
    if isinstance(data, pd.DataFrame):
        parts = max(1, -(-len(data) // PANDAS_PARTITION_ROWS))
        return dd.from_pandas(data.reset_index(drop=True), npartitions=parts, sort=False)
    return data


def _is_number(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _raw_schema(meta: pd.DataFrame, header: list[str]) -> pa.Schema:
    """Numbers keep their type; anything else is text, as the file readers store it."""
    fields = [pa.field(name, pa.from_numpy_dtype(np.dtype("float64" if pd.api.types.is_float_dtype(dtype) else "int64"))
                       if _is_number(dtype) else pa.string()) for name, dtype in zip(header, meta.dtypes)]
    return pa.schema([*fields, pa.field(SOURCE_ROW, pa.int64())])


def _as_raw(part: pd.DataFrame, header: list[str], first_row: int) -> pd.DataFrame:
    raw = part.copy()
    raw.columns = header
    for column in header:
        if not _is_number(raw[column].dtype):
            raw[column] = raw[column].astype(object).where(raw[column].notna(), None).map(
                lambda v: v if v is None else str(v))
    raw[SOURCE_ROW] = np.arange(first_row, first_row + len(raw), dtype=np.int64)
    return raw


def _write_raw_part(part: pd.DataFrame, header: list[str], schema: pa.Schema, first_row: int, folder: str,
                    index: int) -> bool:
    """Write one partition as a raw part; True when every present Id in it is a whole number."""
    raw = _as_raw(part, header, first_row)
    table = pa.Table.from_pandas(raw, schema=schema, preserve_index=False)
    write_parquet(table, as_location(folder) / f"part-{index:05d}.parquet", plain=DISTINCT_COLUMNS)
    return id_is_integer(raw[ID])


def _partition_digest(part: pd.DataFrame) -> tuple[int, str]:
    hashed = pd.util.hash_pandas_object(part, index=False).to_numpy()
    names = "\x1f".join(map(str, part.columns)).encode()
    return len(part), hashlib.sha256(names + hashed.tobytes()).hexdigest()


def frame_digest(ddf: dd.DataFrame) -> tuple[str, list[int]]:
    """SHA-256 of the frame's content and the rows of each partition (one pass on the workers)."""
    (found,) = compute([dask.delayed(_partition_digest)(p) for p in ddf.to_delayed()])
    digest = hashlib.sha256("".join(d for _, d in found).encode()).hexdigest()
    return digest, [n for n, _ in found]


def write_frame_raw_layer(ddf: dd.DataFrame, raw_dir: str, rows_per_part: list[int], kind: str) -> dict:
    """The raw layer from a Dask DataFrame, each partition written by its worker; returns what was read."""
    header = header_for(FRAME_SOURCE.format(kind=kind, rows=sum(rows_per_part), parts=len(rows_per_part)),
                        list(ddf.columns))
    schema = _raw_schema(ddf._meta, header)
    first_rows = np.concatenate([[1], 1 + np.cumsum(rows_per_part)[:-1]]).astype(int).tolist()
    with atomic_dir(as_location(raw_dir)) as tmp:
        tasks = [dask.delayed(_write_raw_part)(part, header, schema, first, str(tmp), i)
                 for i, (part, first) in enumerate(zip(ddf.to_delayed(), first_rows))]
        integer_ids = compute(*tasks)
    return {"rows_in": int(sum(rows_per_part)), "parts": len(rows_per_part), "format": f"{kind} DataFrame",
            "options": {}, "columns": dict(zip(map(str, ddf.columns), header)),
            "id_type": "int" if all(integer_ids) else "string"}
