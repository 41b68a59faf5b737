"""Event files → the raw events layer: mapped, typed Parquet parts, one reading task per file.

A gzip file cannot be split, so a file is the unit of work: a worker streams it with
pyarrow's CSV reader (or Parquet batches) in `events.part_rows` blocks and writes each
block as a part, so a worker holds one block at a time and the events never pass
through the client. Every row is checked here (customer, type, timestamp); a row with
a problem keeps its `reason`, `column` and `value` and is written like the rest, so the
aggregation can put it in the month's rejects ledger and reconcile read = used + rejected.

Part columns (RAW_COLUMNS): event_id and customer (int64 when the block's values are all
whole numbers, else text: the reader of the layer unifies them), campaign (text), kind
(int8 index into settings.EVENT_KINDS, -1 unknown), ts (int64 ns since the epoch, UTC;
0 where unparseable, which the reason says), file and row (the event's place: file index in the command line,
1-based data row), ok (no problem found) and reason/column/value (null for a valid row).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mailseg_dist.core.atomic import atomic_dir
from mailseg_dist.core.errors import InputDataError, MailsegError
from mailseg_dist.core.settings import EVENT_KINDS
from mailseg_dist.core.storage import as_location, is_remote, local_copy, write_parquet
from mailseg_dist.inputs.events import part_summary

ROLES = ("event_id", "customer_id", "campaign_id", "type", "timestamp")  # columns the aggregation needs
RAW_COLUMNS = ["event_id", "customer", "campaign", "kind", "ts", "file", "row", "ok", "reason", "column", "value"]
_TEXT_IDS = ("event_id", "customer", "campaign")
_NULLABLE = {pa.int64(): pd.Int64Dtype()}  # ids with blanks stay exact integers
_TEXT = {pa.large_string(): pd.StringDtype()}


def event_format(path) -> str:
    """parquet or csv (plain or gzip), from the name."""
    name = str(path).lower()
    return "parquet" if name.endswith((".parquet", ".parq", ".pq")) else "csv"


def _first_line(path: Path) -> str:
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            return handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: cannot read the header line ({exc})") from None


def csv_header(path: Path, sep: str) -> tuple[str, list[str]]:
    """(separator, header names): ',' or ';', whichever splits the header into more fields, unless given."""
    line = _first_line(path)
    if sep == "auto":
        sep = max((",", ";", "\t"), key=line.count)
    return sep, [name.strip().strip('"') for name in line.split(sep)]


def check_columns(where: str, found: list[str], columns: dict) -> None:
    """Every role's configured column exists: else one line naming the file and the column (exit 3)."""
    for role in ROLES:
        name = columns[role]
        if name not in found:
            raise InputDataError(f"{where}: column '{name}' (events.columns.{role}) not found; "
                                 f"columns: {', '.join(found)}")


def check_local_columns(path: str, ecfg: dict) -> None:
    """Before any cluster starts: a local file's header has every configured column (a stored one is
    checked by its reading task)."""
    if is_remote(as_location(path)):
        return
    if event_format(path) == "parquet":
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputDataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    else:
        names = csv_header(Path(path), ecfg["sep"])[1]
    check_columns(path, names, ecfg["columns"])


def _csv_batches(path: Path, ecfg: dict):
    sep, header = csv_header(path, ecfg["sep"])
    check_columns(str(path), header, ecfg["columns"])
    wanted = [ecfg["columns"][r] for r in ROLES]
    convert = pacsv.ConvertOptions(include_columns=wanted, strings_can_be_null=True,
                                   column_types={name: pa.string() for name in wanted})
    reader = pacsv.open_csv(str(path), read_options=pacsv.ReadOptions(block_size=1 << 24),
                            parse_options=pacsv.ParseOptions(delimiter=sep), convert_options=convert)
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _parquet_batches(path: Path, ecfg: dict):
    handle = pq.ParquetFile(str(path))
    check_columns(str(path), handle.schema_arrow.names, ecfg["columns"])
    wanted = [ecfg["columns"][r] for r in ROLES]
    for batch in handle.iter_batches(batch_size=ecfg["part_rows"], columns=wanted):
        yield pa.Table.from_batches([batch])


def _rebatch(tables, rows: int):
    """Blocks of exactly `rows` rows (the last one shorter), whatever the reader's batch sizes."""
    pending, held = [], 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            joined = pa.concat_tables(pending)
            yield joined.slice(0, rows)
            rest = joined.slice(rows)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def _as_ids(array: pa.ChunkedArray) -> pa.Array:
    """int64 when every present value is a whole number, else trimmed text (nulls stay null)."""
    if pa.types.is_integer(array.type):
        return pc.cast(array, pa.int64()).combine_chunks()
    text = pc.utf8_trim_whitespace(pc.cast(array, pa.string())).combine_chunks()
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text


def _timestamps(array: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ns since the epoch, UTC; valid mask): missing or unparseable is not valid; naive values are UTC."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):  # epoch seconds
        seconds = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        valid = np.isfinite(seconds)
        return np.where(valid, np.round(np.nan_to_num(seconds) * 1e9), 0).astype(np.int64), valid
    if pa.types.is_timestamp(array.type):
        values = pc.cast(array, pa.timestamp("ns", array.type.tz))
    else:
        text = pc.utf8_trim_whitespace(pc.cast(array, pa.string()))
        values = None
        for target in (pa.timestamp("ns"), pa.timestamp("ns", "UTC")):  # fast path: one layout for the block
            try:
                values = pc.cast(text, target)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if values is None:  # mixed or bad values: pandas parses what it can, value by value
            parsed = pd.to_datetime(text.to_pandas(), format="ISO8601", utc=True, errors="coerce").dt.as_unit("ns")
            valid = parsed.notna().to_numpy()
            return np.where(valid, parsed.array.asi8, 0).astype(np.int64), valid
    ints = pc.cast(pc.cast(values, pa.timestamp("ns")), pa.int64())
    valid = ints.is_valid().to_numpy(zero_copy_only=False)
    return ints.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), valid


def kind_codes(types: dict) -> dict[str, int]:
    """Normalised code → index into EVENT_KINDS."""
    return {code.strip().lower(): EVENT_KINDS.index(kind) for kind in EVENT_KINDS for code in types[kind]}


def _kinds(array: pa.ChunkedArray, codes: dict[str, int]) -> np.ndarray:
    """int8 kind per row (-1: unknown or missing): the distinct codes of a block are few, mapped once."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(array, pa.string()))).combine_chunks()
    encoded = text.dictionary_encode()
    lookup = np.array([codes.get(v, -1) for v in encoded.dictionary.to_pylist()] + [-1], dtype=np.int8)
    indices = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return lookup[indices]


def typed_block(table: pa.Table, columns: dict, codes: dict, file_index: int, first_row: int) -> pd.DataFrame:
    """One block of raw events → RAW_COLUMNS, with the reasons of the rows that cannot be used."""
    n = table.num_rows
    customer = _as_ids(table.column(columns["customer_id"]))
    ts, ts_ok = _timestamps(table.column(columns["timestamp"]))
    kind = _kinds(table.column(columns["type"]), codes)
    frame = pd.DataFrame({
        "event_id": _as_ids(table.column(columns["event_id"])).to_pandas(types_mapper=_NULLABLE.get),
        "customer": customer.to_pandas(types_mapper=_NULLABLE.get),
        "campaign": _as_ids(table.column(columns["campaign_id"])).to_pandas(types_mapper=_NULLABLE.get),
        "kind": kind,
        "ts": ts,
        "file": np.int32(file_index),
        "row": np.arange(first_row, first_row + n, dtype=np.int64),
    })
    checks = [(customer.is_null().to_numpy(zero_copy_only=False), "customer_id", "missing customer id"),
              (kind < 0, "type", "unknown event type"),
              (~ts_ok, "timestamp", "unparseable timestamp")]
    reason = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)
    value = np.full(n, None, dtype=object)
    for bad, role, why in checks:
        for i in np.flatnonzero(bad):
            raw = table.column(columns[role])[int(i)].as_py()
            shown = "" if raw is None else str(raw)
            reason[i] = why if reason[i] is None else f"{reason[i]};{why}"
            column[i] = columns[role] if column[i] is None else f"{column[i]};{columns[role]}"
            value[i] = shown if value[i] is None else f"{value[i]};{shown}"
    frame["ok"] = pd.isna(reason)  # read alone by the passes that only need to skip rejected rows
    if frame["ok"].all():  # the common block: null text from Arrow, not from a million Python Nones (0.1 s)
        reason = column = value = pa.nulls(n, pa.large_string()).to_pandas(types_mapper=_TEXT.get).array
    frame["reason"], frame["column"], frame["value"] = (pd.array(v, dtype="string") for v in (reason, column, value))
    return frame


def write_file_parts(path: str, file_index: int, raw_dir: str, ecfg: dict, by_month: bool = False) -> dict:
    """Read one event file into raw parts `f<file>-p<part>.parquet` under `raw_dir`; return what was read,
    with each part's summary for the first pass (events.part_summary: no second read of the part)."""
    with local_copy(path) as local:
        batches = _parquet_batches(local, ecfg) if event_format(path) == "parquet" else _csv_batches(local, ecfg)
        codes = kind_codes(ecfg["types"])
        rows, parts = 0, []
        try:
            for block in _rebatch(batches, ecfg["part_rows"]):
                frame = typed_block(block, ecfg["columns"], codes, file_index, rows + 1)
                own_text = {c for c in _TEXT_IDS if not pd.api.types.is_integer_dtype(frame[c])}
                name = as_location(raw_dir) / f"f{file_index:05d}-p{len(parts):05d}.parquet"
                write_parquet(pa.Table.from_pandas(frame, preserve_index=False), name)
                parts.append({"path": str(name), "rows": len(frame), "text_ids": sorted(own_text),
                              "summary": part_summary(frame, ecfg["timezone"], by_month)})
                rows += len(frame)
        except pa.ArrowInvalid as exc:
            raise InputDataError(f"{path}: cannot parse the event file ({str(exc).splitlines()[0]})") from None
    return {"path": str(path), "rows": rows, "parts": parts}


def _file_task(*args) -> dict | MailsegError:
    """write_file_parts as a worker task: a bad input comes back as a value (one line, no worker traceback)."""
    try:
        return write_file_parts(*args)
    except MailsegError as exc:
        return exc


def write_raw_events(paths: list[str], raw_dir, ecfg: dict, client=None, by_month: bool = False) -> list[dict]:
    """Every file → raw parts in one folder (atomic), one task per file on the workers when a client is given."""
    with atomic_dir(as_location(raw_dir)) as tmp:
        if client is not None:
            futures = [client.submit(_file_task, p, i, str(tmp), ecfg, by_month, pure=False) for i, p in enumerate(paths)]
            read = client.gather(futures)
        else:
            read = [_file_task(p, i, str(tmp), ecfg, by_month) for i, p in enumerate(paths)]
        for result in read:
            if isinstance(result, MailsegError):
                raise result
    final = str(as_location(raw_dir))
    for result in read:  # the parts now live in the final folder
        for part in result["parts"]:
            part["path"] = f"{final}/{Path(part['path']).name}"
    return read
