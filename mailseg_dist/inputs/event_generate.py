"""Synthetic event logs whose per-user aggregates are the seed-like users of generate.py.

Month i (of `months`, from `start`) takes the users of `iter_generated(rows, seed + i)` and
expands each into its events: `send` S, `bounce` B, `open` V, `click` C and Total minus
those E (other) events, so the counts per user are exactly the generated ones. Each event's
local hour is floor(h) or floor(h) + 1 with the chance that makes its mean the user's hour h
(the generator's own construction), the same for the weekday; the day is a day of that
month with the drawn weekday, minutes and seconds uniform; the local time (events.timezone)
is stored as UTC text (CSV) or a UTC timestamp (Parquet). Event ids are unique across months.
The purchases table lists each buyer (Comprador = 1) once per month with a date in that month.
Everything depends only on (rows, months, seed, start): the same call writes the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mailseg_dist.core.atomic import atomic_dir
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location
from mailseg_dist.inputs.generate import iter_generated

EVENT_FORMATS = ("parquet", "csv.gz")
CODES = np.array(["S", "B", "V", "C", "E"])
KIND_COLUMNS = ["send", "bounce", "open", "click"]
EVENT_ID_STRIDE = 10**10  # event ids of month i start at i * stride


def _around(rng: np.random.Generator, centre: np.ndarray, top: int) -> np.ndarray:
    """floor(c) or floor(c)+1 (never above top), mean c: the generator's per-event values."""
    low = np.floor(centre)
    return np.minimum(low + (rng.random(len(centre)) < centre - low), top).astype(np.int64)


def expand_users(users: pd.DataFrame, month: str, tz: str, rng: np.random.Generator, first_id: int) -> pd.DataFrame:
    """One row per event of these users in `month` (local times in `tz`, stored as UTC)."""
    counts = users[KIND_COLUMNS].to_numpy(np.int64)
    other = np.maximum(users["Total"].to_numpy(np.int64) - counts.sum(axis=1), 0)
    per_kind = np.column_stack([counts, other])          # S, B, V, C, E per user
    n_events = per_kind.sum(axis=1)
    user = np.repeat(np.arange(len(users)), n_events)
    kind = np.repeat(np.tile(np.arange(5), len(users)), per_kind.ravel())  # user by user: S..., B..., V..., C..., E...
    hour = _around(rng, users["hour"].to_numpy()[user], 23)
    dow = _around(rng, users["day_of_week"].to_numpy()[user], 6)
    start = pd.Timestamp(f"{month}-01")
    days = pd.date_range(start, start + pd.offsets.MonthEnd(0), freq="D")
    by_weekday = [np.flatnonzero(days.day_of_week == d) for d in range(7)]
    sizes = np.array([len(b) for b in by_weekday])
    pick = np.floor(rng.random(len(user)) * sizes[dow]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.concatenate(by_weekday)
    day = flat[offsets[dow] + pick]
    seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, len(user))
    local = pd.DatetimeIndex(start.to_datetime64() + seconds.astype("timedelta64[s]"))
    utc = local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")
    ids = users["Id"].to_numpy(np.int64)
    campaign = int(month.replace("-", "")) * 100 + rng.integers(0, 12, len(user))
    return pd.DataFrame({"event_id": first_id + np.arange(len(user), dtype=np.int64), "customer_id": ids[user],
                         "campaign_id": campaign, "delivery_id": campaign * 1000 + rng.integers(0, 50, len(user)),
                         "event_type": CODES[kind], "event_time": utc.as_unit("s")})


def _months(start: str, months: int) -> list[str]:
    first = pd.Period(start, freq="M")
    return [str(first + i) for i in range(months)]


def _write(frame: pd.DataFrame, path: Path, fmt: str, sep: str) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if fmt == "parquet":
        pq.write_table(table, str(path))
        return
    with pa.CompressedOutputStream(str(path), "gzip") as stream:
        pacsv.write_csv(table, stream, write_options=pacsv.WriteOptions(delimiter=sep))


def write_event_log(out, rows: int, months: int, fmt: str, seed: int, start: str, tz: str,
                    purchases: bool = True, sep: str = ",", chunk_rows: int = 200_000) -> dict:
    """Folder `out` with events-YYYY-MM-NNNN.<fmt> (one file per chunk of users) and purchases.csv; atomic."""
    if fmt not in EVENT_FORMATS:
        raise UsageError(f"generate --events: format must be one of {', '.join(EVENT_FORMATS)}, found {fmt!r}")
    if months < 1:
        raise UsageError(f"generate --months expected a positive number, found {months}")
    files, events, buyers = [], 0, []
    with atomic_dir(as_location(out)) as tmp:
        for i, month in enumerate(_months(start, months)):
            rng = np.random.default_rng([seed, i, 7])
            first_id = i * EVENT_ID_STRIDE
            for j, users in enumerate(iter_generated(rows, seed + i, chunk_rows)):
                log = expand_users(users, month, tz, rng, first_id)
                first_id += len(log)
                name = f"events-{month}-{j:04d}.{fmt}"
                _write(log, Path(tmp) / name, fmt, sep)
                files.append(name)
                events += len(log)
                if purchases:
                    who = users.loc[users["Comprador"] == 1, "Id"].to_numpy()
                    day = rng.integers(1, pd.Period(month).days_in_month + 1, len(who))
                    buyers.append(pd.DataFrame({"customer_id": who, "purchase_date": [
                        f"{month}-{d:02d}" for d in day]}))
        if purchases:
            table = pd.concat(buyers, ignore_index=True) if buyers else pd.DataFrame(
                {"customer_id": [], "purchase_date": []})
            table.to_csv(Path(tmp) / "purchases.csv", index=False)
    return {"path": str(as_location(out)), "files": files, "events": events, "months": _months(start, months),
            "purchases": str(as_location(out) / "purchases.csv") if purchases else None}
