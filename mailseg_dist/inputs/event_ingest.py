"""ingest-events: event files → each month's users layer, rejects ledger and manifest, as `ingest` writes them.

Stages: the files' SHA-256 (the same content again is skipped, other content refused without
replace, as for `ingest`); the raw events layer (event_read, one task per file on the workers);
the first pass (duplicate ids, months, window); then one Dask computation writes, per month,
the users parts (tree-reduced sums → users_from_sums → the clean layer's own coerce/split, so
columns and dtypes are the clean layer's) and the rejects ledger parts; the manifests, written
last, are the months' commit marks. Reconciliation per month: events read = used + rejected.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import time

import dask
import numpy as np
import pandas as pd

from mailseg_dist.core.atomic import atomic_dir, write_json
from mailseg_dist.core.catalog import Catalog, check_month, current_month
from mailseg_dist.core.errors import InputDataError, UsageError
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import (
    as_location,
    file_sha256,
    is_remote,
    remove_tree,
    write_frame,
)
from mailseg_dist.inputs import events as ev
from mailseg_dist.inputs.clean import coerce_partition, split_partition
from mailseg_dist.inputs.event_read import check_local_columns, write_raw_events
from mailseg_dist.inputs.ingest import _check_previous, read_manifest
from mailseg_dist.inputs.purchases import buyer_ids
from mailseg_dist.inputs.readers import check_file
from mailseg_dist.inputs.schema import SOURCE_ROW

LEDGER_COLUMNS = ["file", SOURCE_ROW, "Id_raw", "column", "value", "reason"]
EVENTS_PER_USERS_PART = 2_000_000


def expand_paths(patterns: list[str]) -> list[str]:
    """Globs expanded (sorted) in the order given; every file checked before any work starts."""
    found: list[str] = []
    for pattern in patterns:
        text = str(pattern)
        if any(ch in text for ch in "*?["):
            loc = as_location(text)
            matches = sorted(loc.fs.glob(loc.path)) if is_remote(loc) else sorted(glob.glob(text))
            if not matches:
                raise InputDataError(f"{text}: no file matches")
            found += [f"{loc.fs.protocol[0] if isinstance(loc.fs.protocol, tuple) else loc.fs.protocol}://{m}"
                      if is_remote(loc) else m for m in matches]
        else:
            found.append(text)
    return [str(check_file(p)) for p in found]


def precheck(patterns: list[str], cfg: dict) -> list[str]:
    """The files, each present and (when local) with every configured column: refused before a cluster starts."""
    files = expand_paths(patterns)
    for path in files:
        check_local_columns(path, cfg["events"])
    return files


def _digest(paths: list[str], client) -> str:
    """One SHA-256 over the files' SHA-256s, in order (order decides which copy of a duplicate is kept)."""
    if client is not None:
        hashes = client.gather([client.submit(file_sha256, p, pure=False) for p in paths])
    else:
        hashes = [file_sha256(p) for p in paths]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _request(cfg: dict, by_month: bool, purchases_sha: str | None) -> dict:
    return json.loads(json.dumps({"events": cfg["events"], "cleaning": cfg["cleaning"],
                                  "mode": "by-month" if by_month else "month", "purchases": purchases_sha}))


def _month_text(yyyymm: int) -> str:
    return f"{yyyymm // 100:04d}-{yyyymm % 100:02d}"


def _month_bounds(month: str, tz: str) -> tuple[int, int]:
    """[start, end) of a calendar month in local time, as UTC ns."""
    start = pd.Timestamp(f"{month}-01", tz=tz)
    end = start + pd.offsets.MonthBegin(1)
    return int(start.value), int(end.value)


def _check_months(catalog: Catalog, months: list[str], digest: str, request: dict, replace: bool,
                  source: str) -> list[str]:
    """The months to write: an unchanged month is skipped; another content's month is refused (no replace)."""
    todo = []
    for month in months:
        previous = read_manifest(catalog, month)
        if previous and previous["sha256"] == digest and previous.get("request") == request and not replace:
            continue
        if previous and not replace:
            _check_previous(previous, digest, request, source, month)
        todo.append(month)
    return todo


def _write_users_part(sums: pd.DataFrame, buyers, window_end: int, ecfg: dict, ccfg: dict, id_type: str,
                      folder: str, rejects: str, index: int) -> dict:
    """One partition of sums → users part + a ledger part for users the clean rules refuse (rare)."""
    extras = list(ecfg["extra_features"] or [])
    users = ev.users_from_sums(sums, buyers, window_end, float(ecfg["recency_cap_days"]), extras, id_type)
    users[SOURCE_ROW] = (np.int64(index) << 32) + np.arange(len(users), dtype=np.int64)
    coerced = coerce_partition(users, id_type, ccfg)
    kept, ledger = split_partition(coerced, pd.Series(dtype="int64"))
    ok = coerced["_reason"].isna().to_numpy()
    for name in extras:
        kept[name] = users.loc[ok, name].to_numpy()
    write_frame(kept, as_location(folder) / f"part-{index:05d}.parquet")
    refused = users.loc[~ok, "Total"].sum() if (~ok).any() else 0
    if len(ledger):
        ledger.insert(0, "file", "(aggregated user)")
        write_frame(ledger[LEDGER_COLUMNS], as_location(rejects) / f"users-{index:05d}.parquet")
    return {"users": len(kept), "events_used": int(kept["Total"].sum()), "events_refused": int(refused),
            "reasons": ledger["reason"].value_counts().to_dict()}


def _write_rejects_part(part: dict, text_ids: tuple, kept_copy: pd.Series, tz: str, folders: dict, fallback: str,
                        single: bool, files: list[str], index: int) -> dict:
    """Rejected events of one raw part into their month's ledger; counts of events read per month.
    The part is read whole only when it has a rejected row: else `ok` and the times are enough."""
    head = ev.read_part(part, text_ids, ["ok", "ts"] + (ev.DUPLICATE_INPUTS if len(kept_copy) else []))
    head = ev.mark_duplicates(head, kept_copy)
    if head["ok"].all():
        months = ev.local_month(head["ts"], tz) if not single else np.zeros(0, dtype=np.int64)
        if single or len(months) == 0:
            return {fallback: {"read": len(head), "rejected": 0, "reasons": {}}}
        numbers, counts = np.unique(months, return_counts=True)
        return {_month_text(int(n)): {"read": int(c), "rejected": 0, "reasons": {}} for n, c in zip(numbers, counts)}
    frame = ev.mark_duplicates(ev.read_part(part, text_ids), kept_copy)
    months = np.full(len(frame), int(fallback.replace("-", "")), dtype=np.int64)
    if not single:  # --by-month: each event in its local month (without a time: the first month)
        has_time = ~frame["reason"].fillna("").str.contains("unparseable timestamp").to_numpy()
        months[has_time] = ev.local_month(frame.loc[has_time, "ts"], tz)
    bad = frame["reason"].notna().to_numpy()
    counts = {}
    for number in np.unique(months):
        month = _month_text(int(number))
        here = months == number
        rejected = frame[here & bad]
        counts[month] = {"read": int(here.sum()), "rejected": len(rejected),
                         "reasons": rejected["reason"].str.split(";").explode()
                         .str.replace(r" \(kept file.*\)", "", regex=True).value_counts().to_dict()}
        if month in folders and len(rejected):
            ledger = pd.DataFrame({"file": [files[i] for i in rejected["file"]], SOURCE_ROW: rejected["row"],
                                   "Id_raw": rejected["customer"].astype("string"), "column": rejected["column"],
                                   "value": rejected["value"], "reason": rejected["reason"]})
            write_frame(ledger.reset_index(drop=True), as_location(folders[month]) / f"part-{index:05d}.parquet")
    return counts

def _window(month: str, by_month: bool, first: dict, tz: str) -> tuple[int, int]:
    """The time window of a month's table: the calendar month (--by-month), else the events' own span."""
    if by_month:
        start, end = _month_bounds(month, tz)
        return start, end - 1
    return first["ts_min"], first["ts_max"]


def _month_tasks(ind, month, by_month, first, buyers, cfg, id_type, split_out, users_tmp, rejects_tmp):
    """Delayed writes of one month's users parts (a tree reduction of that month's events)."""
    part = ind
    if by_month:
        number = int(month.replace("-", ""))
        part = ind[ind["month"] == number].drop(columns=["month"])
    sums = ev.user_sums(part, split_out)
    window_end = _window(month, by_month, first, cfg["events"]["timezone"])[1]
    write = dask.delayed(_write_users_part)
    return [write(piece, buyers, window_end, cfg["events"], cfg["cleaning"], id_type, str(users_tmp),
                  str(rejects_tmp), i) for i, piece in enumerate(sums.to_delayed())]


def _aggregate(read, first, months, by_month, buyers, cfg, catalog, files, split_out, manifest_paths):
    """One Dask computation: every month's users parts and every rejects ledger part; small summaries back."""
    tz = cfg["events"]["timezone"]
    parts, text_ids = ev.layer_parts(read)
    id_type = "string" if "customer" in text_ids else "int"
    kept_copy = dask.delayed(first["kept_copy"], pure=True)
    ind = ev.indicators(read, first["kept_copy"], tz, by_month)
    with contextlib.ExitStack() as stack:
        users_tmp = {m: stack.enter_context(atomic_dir(catalog.users(m))) for m in months}
        rejects_tmp = {m: stack.enter_context(atomic_dir(catalog.rejects(m))) for m in months}
        user_tasks = {m: _month_tasks(ind, m, by_month, first, buyers.get(m), cfg, id_type, split_out,
                                      users_tmp[m], rejects_tmp[m]) for m in months}
        fallback = first["all_months"][0] if by_month else months[0]
        folders = {m: str(rejects_tmp[m]) for m in months}
        reject_tasks = [dask.delayed(_write_rejects_part)(part, text_ids, kept_copy, tz, folders, fallback,
                                                            not by_month, files, i)
                        for i, part in enumerate(parts)]
        users_out, rejects_out = compute(user_tasks, reject_tasks)
        for path in manifest_paths:  # the old commit marks go just before the new layers replace the old
            remove_tree(path)
    return users_out, rejects_out, id_type


def _month_counts(month: str, users: list[dict], rejects: list[dict]) -> dict:
    read = sum(r[month]["read"] for r in rejects if month in r)
    rejected = sum(r[month]["rejected"] for r in rejects if month in r) + sum(u["events_refused"] for u in users)
    reasons: dict[str, int] = {}
    for found in [r[month]["reasons"] for r in rejects if month in r] + [u["reasons"] for u in users]:
        for reason, count in found.items():
            reasons[reason] = reasons.get(reason, 0) + int(count)
    used = sum(u["events_used"] for u in users)
    if read != used + rejected:
        raise InputDataError(f"month {month}: events do not reconcile ({read} read, {used} used, {rejected} rejected)")
    return {"rows_in": read, "rows_kept": used, "rows_rejected": rejected, "events_read": read, "events_used": used,
            "events_rejected": rejected, "users": sum(u["users"] for u in users),
            "rejects_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def ingest_events(patterns: list[str], cfg: dict, catalog: Catalog, month: str | None = None, by_month: bool = False,
                  purchases: str | None = None, replace: bool = False, client=None) -> dict:
    """Event files → users layer(s), rejects ledger(s), manifest(s); returns a summary with each month's manifest."""
    started = time.perf_counter()
    if by_month and month:
        raise UsageError("--month and --by-month exclude each other")
    month = None if by_month else check_month(month or cfg["ingest"]["month"] or current_month())
    files = precheck(patterns, cfg)
    purchases = str(check_file(purchases)) if purchases else None
    digest = _digest(files, client)
    request = _request(cfg, by_month, _digest([purchases], client) if purchases else None)
    source = files[0] if len(files) == 1 else f"{len(files)} event files ({files[0]}, ...)"
    if not by_month and not _check_months(catalog, [month], digest, request, replace, source):
        return _skipped([month], catalog, started)
    built = _months_built_from(catalog, digest, request) if by_month and not replace else []
    if built:
        return _skipped(built, catalog, started)
    scope = dask.config.set(scheduler=client) if client is not None else contextlib.nullcontext()
    raw_dir = catalog.data_dir / cfg["paths"]["raw_subdir"] / f"events={digest[:16]}"
    with scope, _removed_at_the_end(raw_dir):
        read = write_raw_events(files, raw_dir, cfg["events"], client, by_month)
        t_read = time.perf_counter()
        total = sum(r["rows"] for r in read)
        split_out = cfg["events"]["users_parts"]
        split_out = max(1, -(-total // EVENTS_PER_USERS_PART)) if split_out == "auto" else split_out
        first = ev.first_pass(read, by_month)
        t_first = time.perf_counter()
        months = [_month_text(m) for m in first["months"]] if by_month else [month]
        first["all_months"] = months
        if by_month and not months:
            raise InputDataError(f"{source}: no event has a usable timestamp: no month to build")
        todo = _check_months(catalog, months, digest, request, replace, source)
        if not todo:
            return _skipped(months, catalog, started)
        buyers = {m: buyer_ids(purchases, cfg, _window(m, by_month, first, cfg["events"]["timezone"]), client)
                  for m in todo} if purchases else {}
        users_out, rejects_out, id_type = _aggregate(read, first, todo, by_month, buyers, cfg, catalog, files,
                                                     split_out, [catalog.manifest(m) for m in todo])
    t_agg = time.perf_counter()
    manifests = []
    for m in todo:
        counts = _month_counts(m, users_out[m], rejects_out)
        manifest = {"month": m, "source": source, "sources": files, "purchases": purchases, "sha256": digest,
                    "request": request, "format": "events", "id_type": id_type, **counts,
                    "buyers_from": "purchases table" if purchases else "none given: Comprador = 0 for everyone",
                    "months_of_source": months, "users_path": str(catalog.users(m)),
                    "rejects_path": str(catalog.rejects(m)),
                    "ingested_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        write_json(catalog.manifest(m), manifest)
        manifests.append(manifest)
    timings = {"read": round(t_read - started, 3), "duplicates": round(t_first - t_read, 3),
               "aggregate": round(t_agg - t_first, 3),
               "total": round(time.perf_counter() - started, 3)}
    scan = {"parts": sum(len(r["parts"]) for r in read), "parts_compared": first["parts_compared"]}
    return {**_summary(manifests, [m for m in months if m not in todo], timings), "duplicate_scan": scan}


@contextlib.contextmanager
def _removed_at_the_end(raw_dir):
    """The raw events layer is a scratch copy: gone when the command ends, also when it fails."""
    try:
        yield
    finally:
        remove_tree(raw_dir)


def _months_built_from(catalog: Catalog, digest: str, request: dict) -> list[str]:
    """The months a --by-month run of the same files and settings already built, when every one of them is
    still there as it built it (then nothing is read again); else []."""
    for month in catalog.months():
        manifest = read_manifest(catalog, month)
        if manifest and manifest.get("sha256") == digest and manifest.get("request") == request:
            months = manifest.get("months_of_source") or []
            same = [read_manifest(catalog, m) for m in months]
            if months and all(m and m["sha256"] == digest and m.get("request") == request for m in same):
                return months
            return []
    return []


def _skipped(months: list[str], catalog: Catalog, started: float) -> dict:
    manifests = [read_manifest(catalog, m) for m in months]
    return _summary(manifests, months, {"total": round(time.perf_counter() - started, 3)}, written=False)


def _summary(manifests: list[dict], skipped: list[str], timings: dict, written: bool = True) -> dict:
    keys = ("events_read", "events_used", "events_rejected", "users")
    totals = {k: sum(m.get(k, 0) for m in manifests) for k in keys} if written else {k: 0 for k in keys}
    return {"months": [m["month"] for m in manifests] if written else [], "skipped_months": skipped,
            "skipped": not written, **totals, "manifests": manifests, "timings": timings}
