"""Ingest: one input file → the month's raw, users and rejects Parquet layers.

Stages, each written to a temporary folder and swapped in (atomic_dir); the
manifest is written last and is the commit mark of a month:
1. read the file in chunks into the raw layer (raw_layer.py: on the workers when a Dask client is
   given, so the rows never pass through the client; a Parquet file's row groups side by side);
2. clean the raw layer with Dask, partition by partition, into users + rejects;
3. write the manifest: input hash, options, counts, rejects by reason.
The same input content again is recognised by its SHA-256 and skipped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from pathlib import Path

import dask
import pandas as pd

from mailseg_dist.core.atomic import atomic_dir, write_json
from mailseg_dist.core.catalog import Catalog, check_month, current_month
from mailseg_dist.core.errors import InputDataError, UsageError
from mailseg_dist.core.parquet import frame_parts
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import (
    as_location,
    file_sha256,
    is_remote,
    read_json,
    remove_tree,
    write_frame,
)
from mailseg_dist.inputs.clean import coerce_partition, split_partition
from mailseg_dist.inputs.duplicate_ids import (
    NO_DUPLICATES,
    first_rows,
    has_later_copy,
    part_summary,
)
from mailseg_dist.inputs.raw_layer import write_raw_layer_on
from mailseg_dist.inputs.schema import DISTINCT_COLUMNS, ID, SOURCE_ROW


def _write_clean_part(coerced: pd.DataFrame, first_rows: pd.Series, users_dir: str, rejects_dir: str,
                      index: int) -> dict:
    kept, ledger = split_partition(coerced, first_rows)
    write_frame(kept, as_location(users_dir) / f"part-{index:05d}.parquet", plain=DISTINCT_COLUMNS)
    write_frame(ledger, as_location(rejects_dir) / f"part-{index:05d}.parquet")
    reasons = ledger["reason"].str.split(";").explode().str.replace(r"\(kept row \d+\)", "", regex=True)
    return {"kept": len(kept), "rejected": len(ledger),
            "reasons": reasons.str.strip().value_counts().to_dict()}


def _clean_part(raw: pd.DataFrame, id_type: str, ccfg: dict, users_dir: str, rejects_dir: str, index: int) -> dict:
    """One raw part → its users and rejects parts, before duplicates across parts are known; its counts
    and what the duplicate check needs (duplicate_ids.part_summary)."""
    coerced = coerce_partition(raw, id_type, ccfg, every_id_raw=False)
    counts = _write_clean_part(coerced, NO_DUPLICATES, users_dir, rejects_dir, index)
    return {**counts, **part_summary(coerced.loc[coerced["_reason"].isna(), [ID, SOURCE_ROW]])}


def _reclean_part(raw: pd.DataFrame, first: pd.Series, id_type: str, ccfg: dict, users_dir: str,
                  rejects_dir: str, index: int) -> dict | None:
    """A part written before the repeated Ids were known, written again if it holds a later copy of one
    (its counts then), else left as it is (None)."""
    if not has_later_copy(str(as_location(users_dir) / f"part-{index:05d}.parquet"), first):
        return None
    return _write_clean_part(coerce_partition(raw, id_type, ccfg), first, users_dir, rejects_dir, index)


def _clean_parts(raw_dir, users_tmp, rejects_tmp, id_type: str, ccfg: dict) -> tuple[list[dict], dict]:
    """Every part cleaned once; the few holding a later copy of a repeated Id cleaned again (duplicate_ids)."""
    parts = frame_parts(raw_dir)
    args = (id_type, ccfg, str(users_tmp), str(rejects_tmp))
    results = list(compute(*[dask.delayed(_clean_part)(part, *args, i) for i, part in enumerate(parts)]))
    users_files = [str(as_location(users_tmp) / f"part-{i:05d}.parquet") for i in range(len(parts))]
    first, suspects, compared = first_rows(results, users_files)
    redone = compute(*[dask.delayed(_reclean_part)(parts[i], first, *args, i) for i in suspects])
    scan = {"parts": len(parts), "parts_compared": compared, "parts_cleaned_again": sum(r is not None for r in redone)}
    for i, result in zip(suspects, redone):
        results[i] = result or results[i]
    return results, scan


def clean_layer(raw_dir, users_dir, rejects_dir, id_type: str, ccfg: dict, manifest=None) -> dict:
    """Dask pass over the raw layer: every partition writes its users and rejects parts.

    `manifest`: the month's commit mark, removed once the new parts are complete and just before they
    replace the old layers (in a store that replacement is object by object); a failure before then
    leaves the previous month whole and committed.
    """
    with atomic_dir(users_dir) as users_tmp, atomic_dir(rejects_dir) as rejects_tmp:
        results, scan = _clean_parts(raw_dir, users_tmp, rejects_tmp, id_type, ccfg)
        if manifest is not None:
            remove_tree(manifest)
    reasons: dict[str, int] = {}
    for result in results:
        for reason, count in result["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + int(count)
    return {"rows_kept": sum(r["kept"] for r in results), "rows_rejected": sum(r["rejected"] for r in results),
            "rejects_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])), "duplicate_scan": scan}


def read_manifest(catalog: Catalog, month: str) -> dict | None:
    path = catalog.manifest(month)
    if not path.exists() or not catalog.users(month).exists():
        return None
    return read_json(path)


def _request(cfg: dict, sheet, sep, decimal) -> dict:
    """What, besides the file's bytes, decides the month's rows: the same file read with another
    sheet or cleaned under other rules is not 'the same input again'."""
    icfg = cfg["ingest"]
    return {"sheet": sheet or icfg["sheet"], "sep": sep or icfg["sep"], "decimal": decimal or icfg["decimal"],
            "cleaning": cfg["cleaning"]}


def _check_previous(previous: dict, digest: str, request: dict, input_path: Path, month: str) -> None:
    if previous["sha256"] != digest:
        raise UsageError(
            f"{input_path}: month {month} was already ingested from other content "
            f"({previous['source']}, sha256 {previous['sha256'][:12]}…); pass --replace to overwrite it")
    changed = sorted(k for k in request if previous.get("request", request).get(k) != request[k])
    raise UsageError(f"{input_path}: month {month} was already ingested from this content with other "
                     f"{', '.join(changed)} settings; pass --replace to ingest it again")


def ingest(input_path: str | Path, cfg: dict, catalog: Catalog, month: str | None = None,
           replace: bool = False, client=None, sheet=None, sep=None, decimal=None) -> dict:
    """Ingest the file `input_path` as `month`; returns the manifest (with `skipped` when unchanged)."""
    started = time.perf_counter()
    from mailseg_dist.inputs.readers import check_file

    input_path = check_file(input_path)
    # An object is hashed where it is read, on a worker: its bytes never come to the client.
    digest = client.submit(file_sha256, str(input_path), pure=False).result() \
        if client is not None and is_remote(input_path) else file_sha256(input_path)

    def write_raw(raw_dir: Path) -> dict:
        return write_raw_layer_on(client, str(input_path), str(raw_dir), cfg["ingest"], sheet, sep, decimal)

    request = _request(cfg, sheet, sep, decimal)
    return _ingest_content(str(input_path), digest, request, write_raw, cfg, catalog, month, replace, started)


def ingest_frame(data, cfg: dict, catalog: Catalog, month: str | None = None, replace: bool = False,
                 client=None) -> dict:
    """Ingest a pandas or Dask DataFrame as `month`, exactly as a file with the same rows (see frames.py)."""
    from mailseg_dist.inputs.frames import (
        FRAME_SOURCE,
        as_dask_frame,
        frame_digest,
        write_frame_raw_layer,
    )

    started = time.perf_counter()
    kind = "pandas" if isinstance(data, pd.DataFrame) else "Dask"
    scope = dask.config.set(scheduler=client) if client is not None else contextlib.nullcontext()
    with scope:
        ddf = as_dask_frame(data)
        digest, rows = frame_digest(ddf)
        source = FRAME_SOURCE.format(kind=kind, rows=sum(rows), parts=len(rows))
        return _ingest_content(source, digest, _request(cfg, None, None, None),
                               lambda raw_dir: write_frame_raw_layer(ddf, str(raw_dir), rows, kind),
                               cfg, catalog, month, replace, started)


def _ingest_content(source: str, digest: str, request: dict, write_raw, cfg: dict, catalog: Catalog,
                    month: str | None, replace: bool, started: float) -> dict:
    """What every input shares once its content hash is known: skip, refuse, or raw → clean → manifest."""
    month = check_month(month or cfg["ingest"]["month"] or current_month())
    request = json.loads(json.dumps(request))  # as the manifest will hold it
    previous = read_manifest(catalog, month)
    unchanged = previous and previous["sha256"] == digest and previous.get("request", request) == request
    if unchanged and not replace:
        return {**previous, "skipped": True, "timings": {"ingest": round(time.perf_counter() - started, 3)}}
    if previous and not replace:
        _check_previous(previous, digest, request, source, month)
    read = write_raw(catalog.raw(month))
    t_read = time.perf_counter()
    counts = clean_layer(catalog.raw(month), catalog.users(month), catalog.rejects(month), read["id_type"],
                         cfg["cleaning"], manifest=catalog.manifest(month))
    if read["rows_in"] != counts["rows_kept"] + counts["rows_rejected"]:
        raise InputDataError(f"{source}: rows do not reconcile ({read['rows_in']} read, "
                             f"{counts['rows_kept']} kept, {counts['rows_rejected']} rejected)")
    manifest = {"month": month, "source": source, "sha256": digest, "request": request, **read, **counts,
                "users_path": str(catalog.users(month)), "rejects_path": str(catalog.rejects(month)),
                "ingested_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_json(catalog.manifest(month), manifest)
    timings = {"read": round(t_read - started, 3), "clean": round(time.perf_counter() - t_read, 3)}
    return {**manifest, "skipped": False, "timings": timings}
