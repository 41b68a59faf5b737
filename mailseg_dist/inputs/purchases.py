"""The purchases (or customers) table → the ids of buyers in a window: Comprador = 1 for them.

Without a date column (events.purchases.date: null) every customer in the table is a buyer;
with one, only purchases dated within the window of the users table count: the calendar
month with --by-month, else the local dates of the first and last event. Dates without a
zone are local dates in events.timezone. The ids come back as a small array (one per buyer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mailseg_dist.core.errors import InputDataError, MailsegError
from mailseg_dist.core.storage import local_copy
from mailseg_dist.inputs.event_read import _as_ids, csv_header, event_format


def _read(path, wanted: list[str]) -> pa.Table:
    with local_copy(path) as local:
        if event_format(path) == "parquet":
            names = pq.ParquetFile(str(local)).schema_arrow.names
            where = names
        else:
            sep, where = csv_header(local, "auto")
        for name in wanted:
            if name not in where:
                raise InputDataError(f"{path}: column '{name}' (events.purchases) not found; columns: {', '.join(where)}")
        if event_format(path) == "parquet":
            return pq.read_table(str(local), columns=wanted)
        return pacsv.read_csv(str(local), parse_options=pacsv.ParseOptions(delimiter=sep),
                              convert_options=pacsv.ConvertOptions(include_columns=wanted, strings_can_be_null=True,
                                                                   column_types={n: pa.string() for n in wanted}))


def _buyers(path: str, pcfg: dict, tz: str, window: tuple[int, int] | None) -> np.ndarray:
    wanted = [pcfg["customer_id"]] + ([pcfg["date"]] if pcfg["date"] else [])
    table = _read(path, wanted)
    ids = _as_ids(table.column(pcfg["customer_id"])).to_pandas()
    if pcfg["date"] and window is not None:
        dates = pd.to_datetime(table.column(pcfg["date"]).to_pandas(), format="ISO8601", errors="coerce")
        dates = dates.dt.tz_localize(tz) if dates.dt.tz is None else dates.dt.tz_convert(tz)
        first, last = (pd.Timestamp(t, tz="UTC").tz_convert(tz).normalize() for t in window)
        day = dates.dt.normalize()
        ids = ids[((day >= first) & (day <= last)).to_numpy()]
    return pd.unique(ids.dropna().to_numpy())


def _task(*args):
    try:
        return _buyers(*args)
    except MailsegError as exc:
        return exc


def buyer_ids(path: str, cfg: dict, window: tuple[int, int], client=None) -> np.ndarray:
    """Unique customer ids of `path` with a purchase in `window` ([first, last] UTC ns: local days, inclusive)."""
    args = (path, cfg["events"]["purchases"], cfg["events"]["timezone"], window)
    found = client.submit(_task, *args, pure=False).result() if client is not None else _task(*args)
    if isinstance(found, MailsegError):
        raise found
    return found
