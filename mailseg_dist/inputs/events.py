"""The raw events layer → per-user partial sums → one users row per customer (and month), with Dask.

How the work is split, and what it costs:
1. The duplicated event ids: each part notes, as it is written, its id range and the ids repeated
   inside it; only parts whose id ranges overlap are read again, their valid ids split by a hash
   into buckets and each bucket checked by one task (core.id_buckets.repeated_ids), so no worker
   holds more than the ids of its buckets; only ids seen twice or more, with the place of their
   first copy (file, row), come back to the client (a duplicate-free log sends back nothing).
   Cost: one extra read of the id column of the overlapping parts (none for a log exported in id
   order); memory: 8 bytes an id held until its bucket is checked.
2. Each raw partition turns its events into per-event indicator columns (map_partitions), and
   `groupby(customer).agg(..., split_out=n)` sums them: per-partition partial sums per customer
   (the chunk step), combined pairwise in a tree (split_every), hash-partitioned into n
   partitions of users. Distinct campaigns: `groupby(customer).campaign.nunique(split_out=n)`,
   the same kind of reduction on (customer, campaign) pairs, joined to the sums by customer.
   The client only ever receives small summaries (counts, reasons, the duplicate ids).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd

from mailseg_dist.core.id_buckets import repeated_ids
from mailseg_dist.core.progress import compute
from mailseg_dist.core.settings import EVENT_KINDS
from mailseg_dist.inputs.overlap import overlapping
from mailseg_dist.inputs.schema import BUYER, ID

NS_PER_DAY = 86_400 * 10**9
NO_TIME = np.iinfo(np.int64).min  # "never": the max of a user's opens when there are none
SUMS = ["send", "open", "click", "bounce", "Total", "hour_sum", "dow_sum", "click_hour_sum"]
LASTS = ["last_open", "last_click"]
_KIND = {name: np.int8(i) for i, name in enumerate(EVENT_KINDS)}


def read_part(part: dict, text_ids: tuple[str, ...], columns: list[str] | None = None) -> pd.DataFrame:
    """A raw part (only `columns`: Parquet reads just those), id columns in the layer's common type (text
    when any file has a text id)."""
    frame = pd.read_parquet(part["path"], columns=columns)
    for column in text_ids:
        if column in frame.columns:
            frame[column] = frame[column].astype("string")
    return frame


def layer_parts(read: list[dict]) -> tuple[list[dict], tuple[str, ...]]:
    """The raw parts in file order (an empty file adds none) and the id columns that are text somewhere."""
    parts = [p for result in read for p in result["parts"]]
    if not parts:
        from mailseg_dist.core.errors import InputDataError

        raise InputDataError("the event files hold no events")
    return parts, tuple(sorted({c for p in parts for c in p["text_ids"]}))


def raw_events(read: list[dict], columns: list[str] | None = None, parts: list[dict] | None = None) -> dd.DataFrame:
    """The raw layer (or some of its columns; or only some `parts`) as a Dask frame, one partition per part."""
    every, text_ids = layer_parts(read)
    parts = every if parts is None else parts
    meta = read_part(parts[0], text_ids, columns).iloc[:0]
    return dd.from_map(read_part, parts, text_ids=text_ids, columns=columns, meta=meta, enforce_metadata=False)


def position(frame: pd.DataFrame) -> pd.Series:
    """An event's place in the input as one sortable number: file index, then row."""
    return frame["file"].astype("int64") * 2**40 + frame["row"].astype("int64")


def _valid_ids(frame: pd.DataFrame) -> pd.Series:
    """Event ids of the valid events (numpy int64 when the layer's ids are integers: fast hashing)."""
    ids = frame.loc[frame["ok"], "event_id"].dropna()
    return ids.astype("int64") if pd.api.types.is_integer_dtype(ids.dtype) else ids.astype(object)


def _part_stats(frame: pd.DataFrame, tz: str, by_month: bool) -> pd.DataFrame:
    """Per month (0 without --by-month): first and last time of the valid events of one partition."""
    ts = frame.loc[frame["ok"], "ts"].to_numpy(np.int64)
    month = local_month(pd.Series(ts), tz) if by_month else np.zeros(len(ts), dtype=np.int64)
    return pd.DataFrame({"month": month, "ts": ts}).groupby("month")["ts"].agg(["min", "max"]).reset_index()


def _repeated_places(frame: pd.DataFrame, repeated: pd.Index) -> pd.DataFrame:
    valid = frame[frame["ok"] & frame["event_id"].isin(repeated)]
    return pd.DataFrame({"event_id": valid["event_id"], "pos": position(valid)})


def local_ns(ts: pd.Series, tz: str) -> np.ndarray:
    """Local wall-clock time of each event as ns since 1970-01-01 (one time-zone conversion; the fields
    below are then integer arithmetic, not one pandas calendar pass per field)."""
    utc = pd.DatetimeIndex(ts.to_numpy(np.int64).view("datetime64[ns]")).tz_localize("UTC")  # a view, no parsing
    return utc.tz_convert(tz).tz_localize(None).asi8


def hour_and_weekday(local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (0-23) and weekday (0 = Monday; 1970-01-01 was a Thursday)."""
    hours = local // (3_600 * 10**9)
    return hours % 24, (hours // 24 + 3) % 7


def month_number(local: np.ndarray) -> np.ndarray:
    """YYYYMM of each local time, as int64."""
    months = local.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return (1970 + months // 12) * 100 + months % 12 + 1


def local_month(ts: pd.Series, tz: str) -> np.ndarray:
    """YYYYMM of each event's local date, as int64."""
    return month_number(local_ns(ts, tz))


def part_summary(frame: pd.DataFrame, tz: str, by_month: bool) -> dict:
    """What the first pass needs of one raw part, taken while the part is written: its valid events' time
    stats, the range of their event ids and the ids repeated inside the part (→ the place of the first copy)."""
    ids = _valid_ids(frame)
    summary = {"times": _part_stats(frame, tz, by_month), "id_range": None, "repeated": pd.Series(dtype="int64")}
    if len(ids):
        summary["id_range"] = (ids.min(), ids.max())
        twice = ids.duplicated(keep=False).to_numpy()
        if twice.any():
            places = position(frame.loc[ids.index[twice]]).to_numpy()
            summary["repeated"] = pd.Series(places, index=ids[twice].to_numpy()).groupby(level=0).min()
    return summary


def overlapping_parts(parts: list[dict], text_ids: tuple[str, ...]) -> list[dict]:
    """The parts whose event-id range meets another part's: only there can an id repeat across parts.

    A log exported by date with increasing event ids (the common case) has none, and the check
    over every id (a second read and a hash aggregation of all ids: 17 of 75 s at 50M events) is skipped.
    Ids that are numbers in some files and text in others cannot be ordered together: every part."""
    ranged = [p for p in parts if p["summary"]["id_range"] is not None]
    mixed = "event_id" in text_ids and any("event_id" not in p["text_ids"] for p in ranged)
    if mixed:
        return ranged
    return [ranged[i] for i in overlapping([p["summary"]["id_range"] for p in ranged])]


def _repeated_across(read: list[dict], parts: list[dict]) -> pd.Series:
    """Ids repeated among `parts` → the place of their first copy: core.id_buckets.repeated_ids over the
    valid ids (hash buckets), then a small second computation only when some id repeats."""
    frame = raw_events(read, ["event_id", "ok"], parts)
    ids = frame.map_partitions(_valid_ids, meta=_valid_ids(frame._meta))
    repeated = repeated_ids(ids.to_delayed(), sum(p["rows"] for p in parts))
    if not len(repeated):
        return pd.Series(dtype="int64")
    located = raw_events(read, ["event_id", "file", "row", "ok"], parts)
    meta = pd.DataFrame({"event_id": located._meta["event_id"], "pos": pd.Series(dtype="int64")})
    places = located.map_partitions(_repeated_places, pd.Index(repeated), meta=meta)
    (kept,) = compute(places.groupby("event_id")["pos"].min())
    return kept


def first_pass(read: list[dict], by_month: bool = True) -> dict:
    """Duplicated event ids (→ place of the copy kept), months and the time window of the valid events.

    From the parts' summaries (taken when they were written), plus one check by Id buckets over the parts
    whose event-id ranges overlap, if any."""
    parts, text_ids = layer_parts(read)
    shared = overlapping_parts(parts, text_ids)
    shared_ids = {id(p) for p in shared}
    inside = [p["summary"]["repeated"] for p in parts if id(p) not in shared_ids and len(p["summary"]["repeated"])]
    found = inside + ([_repeated_across(read, shared)] if shared else [])
    kept = pd.concat(found) if found else pd.Series(dtype="int64")
    stats = pd.concat([p["summary"]["times"] for p in parts])
    months = sorted(int(m) for m in stats["month"].unique()) if by_month else []
    empty = len(stats) == 0
    return {"kept_copy": kept.astype("int64"), "months": months, "duplicated_ids": len(kept),
            "parts_compared": len(shared),
            "ts_min": None if empty else int(stats["min"].min()), "ts_max": None if empty else int(stats["max"].max())}


def mark_duplicates(frame: pd.DataFrame, kept_copy: pd.Series) -> pd.DataFrame:
    """Later copies of a duplicated event id get the reason, naming the copy that was kept."""
    if len(kept_copy) == 0:
        return frame
    valid = frame["ok"] & frame["event_id"].notna()
    first = frame["event_id"].map(kept_copy)
    loser = (valid & first.notna() & (first != position(frame))).to_numpy()
    if loser.any():
        frame = frame.copy()
        frame.loc[loser, "ok"] = False
        kept = first[loser].astype("int64")
        if "reason" not in frame.columns:  # the aggregation only needs to skip them
            return frame
        frame.loc[loser, "reason"] = [f"duplicate event id (kept file {int(k) >> 40} row {int(k) & (2**40 - 1)})"
                                      for k in kept]
        frame.loc[loser, "column"] = "event_id"
        frame.loc[loser, "value"] = frame.loc[loser, "event_id"].astype(str).to_numpy()
    return frame


def _indicators(frame: pd.DataFrame, kept_copy: pd.Series, tz: str, by_month: bool) -> pd.DataFrame:
    """Per-event columns whose per-customer sums (and maxima) make the users table; used events only."""
    frame = mark_duplicates(frame, kept_copy)
    used = frame[frame["ok"]]
    kind = used["kind"].to_numpy()
    local = local_ns(used["ts"], tz)
    hour, weekday = hour_and_weekday(local)
    ts = used["ts"].to_numpy(np.int64)
    out = pd.DataFrame({"customer": used["customer"].to_numpy()}, index=used.index)
    if pd.api.types.is_integer_dtype(used["customer"].dtype):
        out["customer"] = out["customer"].astype("int64")
    if by_month:
        out["month"] = month_number(local)
    # int8 per event (an hour fits): 43 bytes an event instead of 96; a sum of int8 is int64 in pandas and Dask
    for name in ("send", "open", "click", "bounce"):
        out[name] = (kind == _KIND[name]).astype(np.int8)
    out["Total"] = np.ones(len(used), dtype=np.int8)
    out["hour_sum"] = hour.astype(np.int8)
    out["dow_sum"] = weekday.astype(np.int8)
    out["click_hour_sum"] = np.where(kind == _KIND["click"], hour, 0).astype(np.int8)
    out["last_open"] = np.where(kind == _KIND["open"], ts, NO_TIME)
    out["last_click"] = np.where(kind == _KIND["click"], ts, NO_TIME)
    out["campaign"] = used["campaign"].to_numpy()
    return out


INDICATOR_INPUTS = ["customer", "campaign", "kind", "ts", "ok"]
DUPLICATE_INPUTS = ["event_id", "file", "row"]


def indicators(read: list[dict], kept_copy: pd.Series, tz: str, by_month: bool) -> dd.DataFrame:
    """Per-event indicator columns, reading only the raw columns they need (ids and places only when some
    event id repeats)."""
    events = raw_events(read, INDICATOR_INPUTS + (DUPLICATE_INPUTS if len(kept_copy) else []))
    meta = _indicators(events._meta, kept_copy.iloc[:0], tz, by_month)
    return events.map_partitions(_indicators, kept_copy, tz, by_month, meta=meta)


def user_sums(events: pd.DataFrame | dd.DataFrame, split_out: int | None = None):
    """Per-customer sums, latest open/click and distinct campaigns (Dask: tree reduction into split_out parts)."""
    spec = {**{c: "sum" for c in SUMS}, **{c: "max" for c in LASTS}}
    if isinstance(events, pd.DataFrame):
        sums = events.groupby("customer").agg(spec)
        sums["campaigns"] = events.groupby("customer")["campaign"].nunique()
        return sums
    # Dask's p2p shuffle (its default on a cluster) moves the partial sums: it spills to disk, so a log of any
    # size fits the workers. The task shuffle was faster but held them all in memory (50M events, 2 workers:
    # 46 s and 3.9 GiB for the process tree, against 53 s and 1.9 GiB; bench/bench_events.py).
    sums = events.groupby("customer").agg(spec, split_out=split_out)
    campaigns = events.groupby("customer")["campaign"].nunique(split_out=split_out).rename("campaigns")
    # Both reductions hash-partition their output by customer the same way (split_out = n on the same key),
    # so partition i of each holds the same customers: zipped, not shuffled; _zip checks it.
    meta = _zip(sums._meta, campaigns._meta)
    return dd.map_partitions(_zip, sums, campaigns, meta=meta, align_dataframes=False)


def _zip(sums: pd.DataFrame, campaigns: pd.Series) -> pd.DataFrame:
    if len(sums) != len(campaigns) or not sums.index.isin(campaigns.index).all():
        raise RuntimeError("the per-customer sums and campaign counts are not partitioned alike")
    return sums.assign(campaigns=campaigns.reindex(sums.index).to_numpy())


def users_from_sums(sums: pd.DataFrame, buyers, window_end: int, cap_days: float, extras: list[str],
                    id_type: str) -> pd.DataFrame:
    """The users table of one partition of sums: counts, Comprador, mean hour/weekday, the extras chosen."""
    out = pd.DataFrame(index=sums.index)
    ids = sums.index.to_numpy()
    out[ID] = ids.astype("int64") if id_type == "int" else pd.array(ids.astype(str), dtype="string")
    for name in ("send", "bounce", "open", "click", "Total"):
        out[name] = sums[name].astype("int64")
    out[BUYER] = np.int64(0)
    if buyers is not None and len(buyers) and len(ids):
        same = (id_type == "int") == (np.asarray(buyers).dtype.kind in "iu")
        mine, theirs = (ids, buyers) if same else (ids.astype(str), np.asarray(buyers).astype(str))
        out[BUYER] = pd.Index(mine).isin(theirs).astype("int64")
    total = sums["Total"].to_numpy(np.float64)
    out["hour"] = sums["hour_sum"].to_numpy(np.float64) / total
    out["day_of_week"] = sums["dow_sum"].to_numpy(np.float64) / total
    for name, last in (("days_since_open", "last_open"), ("days_since_click", "last_click")):
        seen = sums[last].to_numpy(np.int64)
        days = np.where(seen == NO_TIME, cap_days, (window_end - seen.astype(np.float64)) / NS_PER_DAY)
        out[name] = np.clip(days, 0.0, cap_days)
    out["campaigns"] = sums["campaigns"].astype("int64")
    clicks = sums["click"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["click_hour"] = np.where(clicks > 0, sums["click_hour_sum"].to_numpy(np.float64) / clicks, out["hour"])
    keep = [c for c in out.columns if c not in ("days_since_open", "days_since_click", "campaigns", "click_hour")
            or c in extras]
    return out[keep].reset_index(drop=True)
