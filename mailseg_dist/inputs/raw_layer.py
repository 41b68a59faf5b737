"""The raw layer: an input file as Parquet part files of `ingest.chunk_rows` rows, values as read.

On the workers when a Dask client is given, so the rows never pass through the client: one task reads
an xlsx or CSV file from its start (neither can be entered in the middle); a local Parquet file with
several row groups is read by several tasks side by side, each a contiguous run of row groups written
as its own parts (`part-<run>-<chunk>`, in file order). 60M users in one task took 22 of 233 s.
"""

from __future__ import annotations

import pyarrow as pa

from mailseg_dist.core.atomic import atomic_dir
from mailseg_dist.core.errors import MailsegError
from mailseg_dist.core.storage import as_location, is_remote, local_copy, write_parquet
from mailseg_dist.inputs.readers import (
    InputInfo,
    check_file,
    detect_format,
    iter_parquet,
    parquet_pieces,
    read_chunks,
)
from mailseg_dist.inputs.schema import DISTINCT_COLUMNS, ID, SOURCE_ROW, id_is_integer

PIECES_PER_WORKER = 2  # runs of row groups per worker: the workers finish close together


def write_raw_layer(path: str, raw_dir: str, ingest_cfg: dict, sheet=None, sep=None, decimal=None) -> dict:
    """Stream the input into raw Parquet part files; return what was read (small).

    An input in an object store is first downloaded to this process's temporary folder.
    """
    with local_copy(path) as local:
        info, chunks = read_chunks(local, ingest_cfg, sheet=sheet, sep=sep, decimal=decimal)
        with atomic_dir(as_location(raw_dir)) as tmp:
            written = [_write_chunks(chunks, tmp, "part-")]
            _keep_readable(info, written, tmp)
    return _read_summary(info, written)


def _keep_readable(info: InputInfo, written: list[dict], folder) -> None:
    """Header only (no part written): one empty part with the header's columns keeps the layer readable."""
    if sum(w["parts"] for w in written) == 0:
        empty = {name: pa.array([], pa.string()) for name in info.header}
        write_parquet(pa.table({**empty, SOURCE_ROW: pa.array([], pa.int64())}),
                      as_location(folder) / "part-00000.parquet")


def _write_chunks(chunks, folder, prefix: str) -> dict:
    """Each chunk as `<prefix><n>.parquet` in `folder` (a column with no value in its first chunk typed as
    text); rows and parts written, and whether every Id was a whole number."""
    rows, parts, integer_ids, schema = 0, 0, True, None
    for chunk in chunks:
        integer_ids = integer_ids and id_is_integer(chunk[ID])
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if schema is None:
            schema = pa.schema([f if not pa.types.is_null(f.type) else pa.field(f.name, pa.string())
                                for f in table.schema])
        write_parquet(table.cast(schema), as_location(folder) / f"{prefix}{parts:05d}.parquet",
                      plain=DISTINCT_COLUMNS)
        rows += len(chunk)
        parts += 1
    return {"rows": rows, "parts": parts, "integer_ids": integer_ids}


def _read_summary(info: InputInfo, written: list[dict]) -> dict:
    return {"rows_in": sum(w["rows"] for w in written), "parts": sum(w["parts"] for w in written),
            "format": info.fmt, "options": info.options, "columns": info.columns,
            "id_type": "int" if all(w["integer_ids"] for w in written) else "string"}


def _parquet_piece(path: str, folder: str, chunk_rows: int, index: int, row_groups: list[int], first: int) -> dict:
    """One run of a Parquet file's row groups written as parts `part-<index>-<n>`."""
    info = InputInfo(path=check_file(path), fmt="parquet")
    written = _write_chunks(iter_parquet(info.path, info, chunk_rows, row_groups, first), folder,
                            f"part-{index:05d}-")
    return {**written, "info": info}


def _as_value(function, *args) -> dict | MailsegError:
    """`function` as a worker task: a bad input comes back as a value, so the worker does not log an
    expected user error as a crashed task with a traceback."""
    try:
        return function(*args)
    except MailsegError as exc:
        return exc


def _raised(results: list):
    for result in results:
        if isinstance(result, MailsegError):
            raise result
    return results


def write_raw_layer_on(client, path: str, raw_dir: str, ingest_cfg: dict, sheet=None, sep=None, decimal=None) -> dict:
    """write_raw_layer on the workers (in this process without a client): a local Parquet file with several
    row groups by several tasks side by side, anything else by one task."""
    args = (path, raw_dir, ingest_cfg, sheet, sep, decimal)
    if client is None:
        return write_raw_layer(*args)
    workers = len(client.scheduler_info(n_workers=-1)["workers"]) or 1
    pieces = [] if is_remote(path) or detect_format(check_file(path)) != "parquet" else \
        parquet_pieces(check_file(path), PIECES_PER_WORKER * workers)
    if len(pieces) < 2:
        return _raised([client.submit(_as_value, write_raw_layer, *args, pure=False).result()])[0]
    with atomic_dir(as_location(raw_dir)) as tmp:
        futures = [client.submit(_as_value, _parquet_piece, path, str(tmp), int(ingest_cfg["chunk_rows"]), i,
                                 groups, first, pure=False) for i, (groups, first) in enumerate(pieces)]
        written = _raised(client.gather(futures))
        _keep_readable(written[0]["info"], written, tmp)  # row groups that are all empty
    return _read_summary(written[0]["info"], written)
