"""Model versions: every run and update kept whole and immutable, one pointer to the current one.

Layout inside the output folder::

    modelos/v0007-2026-11/   everything the run wrote (model files, segmentos.json, usuarios/,
                             workbook, report, figures, run_summary.json) + version.json, written last
    modelos/actual.json      {"version": "v0007-2026-11"}: the current version, replaced atomically
    meses/2026-11/usuarios/  the month's per-user results (history for transitions and audits)
    modelo_clustering.pkl, escalador.pkl, resultados_clustering.xlsx, usuarios/, ...
                             the current version's outputs, where the seed's users expect them

A job writes only into its new version folder; the top level, meses/ and the
pointer change after the version is sealed (its version.json written), so a job
killed before that leaves the current version and its outputs as they were, and
a folder without version.json is never listed or used. Locally the copies are
hard links (no bytes copied: the 10M-user results cost nothing to promote); in an
object store they are server-side copies.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil

from mailseg_dist.core.atomic import atomic_dir, atomic_path, write_json
from mailseg_dist.core.catalog import (
    CURRENT_JSON,
    MONTHS_SUBDIR,
    SUMMARY_JSON,
    USERS_SUBDIR,
    VERSION_JSON,
    VERSIONS_SUBDIR,
)
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location, is_remote, read_json, remove_tree

log = logging.getLogger("mailseg")
_VERSION_ID = re.compile(r"^v(\d{4,})-(\d{4}-\d{2})$")


def version_dir(out_dir, version: str):
    if not _VERSION_ID.fullmatch(str(version)):
        raise UsageError(f"version expected an id like v0003-2026-11 (see `mailseg models`), found {version!r}")
    return as_location(out_dir) / VERSIONS_SUBDIR / version


def list_versions(out_dir) -> list[dict]:
    """version.json of every sealed version, oldest first, with `current` set on the current one."""
    root = as_location(out_dir) / VERSIONS_SUBDIR
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if _VERSION_ID.fullmatch(p.name) and (p / VERSION_JSON).exists()]
    current = current_version(out_dir)
    records = [read_json(root / name / VERSION_JSON) for name in sorted(found, key=_sequence)]
    return [{**record, "current": record["id"] == current} for record in records]


def _sequence(version: str) -> int:
    return int(_VERSION_ID.fullmatch(version).group(1))


def current_version(out_dir) -> str | None:
    pointer = as_location(out_dir) / VERSIONS_SUBDIR / CURRENT_JSON
    return read_json(pointer)["version"] if pointer.exists() else None


def current_record(out_dir) -> dict | None:
    version = current_version(out_dir)
    return None if version is None else read_json(version_dir(out_dir, version) / VERSION_JSON)


def remove_unsealed(out_dir) -> list[str]:
    """Remove version folders without version.json: left by a job that died before sealing (the caller
    holds the folder's lock, so no live job is writing one). The ids removed."""
    root = as_location(out_dir) / VERSIONS_SUBDIR
    names = [p.name for p in root.iterdir()] if root.is_dir() else []
    unsealed = [n for n in names if _VERSION_ID.fullmatch(n) and not (root / n / VERSION_JSON).exists()]
    for name in unsealed:
        remove_tree(root / name)
    return unsealed


def next_version(out_dir, month: str) -> str:
    """The next id: one more than every sealed version, so a sealed id is never reused."""
    remove_unsealed(out_dir)
    root = as_location(out_dir) / VERSIONS_SUBDIR
    names = [p.name for p in root.iterdir()] if root.is_dir() else []
    taken = [int(m.group(1)) for m in map(_VERSION_ID.fullmatch, names) if m]
    return f"v{max(taken, default=0) + 1:04d}-{month}"


def seal(out_dir, version: str, record: dict) -> dict:
    """Write version.json, the mark that the version folder is complete; it never changes after this."""
    record = {"id": version, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              **record}
    write_json(version_dir(out_dir, version) / VERSION_JSON, record)
    return record


def _copy_file(src, dst) -> None:
    """dst becomes a copy of src, whole or not at all: a hard link renamed into place (locally)."""
    if is_remote(dst) or is_remote(src):
        with atomic_path(dst) as tmp:
            with as_location(src).open("rb") as source, open(tmp, "wb") as target:
                shutil.copyfileobj(source, target)
        return
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or no hard links: copy the bytes
            shutil.copy2(src, tmp)


def _copy_folder(src, dst) -> None:
    with atomic_dir(dst) as tmp:
        for path in sorted(as_location(src).rglob("*")):
            if path.is_file():
                target = as_location(tmp) / path.relative_to(as_location(src))
                if not is_remote(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                _copy_file(path, target)


def _top_level_summary(summary: dict, vdir, out_dir) -> dict:
    """The version's summary with its file paths as the top-level copies' paths."""
    def moved(value):
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        return value.replace(str(vdir), str(out_dir)) if isinstance(value, str) else value

    return {**summary, "outputs": moved(summary.get("outputs", {}))}


def promote(out_dir, version: str) -> dict:
    """Make `version` current: its outputs to the top level and to meses/<month>/, the pointer, and
    run_summary.json last (removed first: a folder without it is being changed). Returns that summary."""
    out, vdir = as_location(out_dir), version_dir(out_dir, version)
    record = read_json(vdir / VERSION_JSON)
    summary = _top_level_summary(read_json(vdir / SUMMARY_JSON), vdir, out)
    remove_tree(out / SUMMARY_JSON)
    for path in sorted(as_location(vdir).iterdir()):
        if path.name in (VERSION_JSON, SUMMARY_JSON):
            continue
        (_copy_folder if path.is_dir() else _copy_file)(path, out / path.name)
    if (vdir / USERS_SUBDIR).exists():
        month_dir = out / MONTHS_SUBDIR / record["month"]
        _copy_folder(vdir / USERS_SUBDIR, month_dir / USERS_SUBDIR)
        write_json(month_dir / VERSION_JSON, {"version": version, "month": record["month"]})
    write_json(out / VERSIONS_SUBDIR / CURRENT_JSON, {"version": version})
    write_json(out / SUMMARY_JSON, summary)
    return summary


def rollback(out_dir, version: str) -> dict:
    """Make an earlier (or any sealed) version current again, with its exact files; its summary."""
    vdir = version_dir(out_dir, version)
    if not (vdir / VERSION_JSON).exists():
        known = ", ".join(v["id"] for v in list_versions(out_dir)) or "none"
        raise UsageError(f"{vdir}: no such version; versions: {known}")
    summary = promote(out_dir, version)
    log.info("version %s is current again (month %s)", version, summary.get("month"))
    return {**summary, "version": version, "rolled_back": True}


def lineage(out_dir, version: str | None) -> list[dict]:
    """The version and its parents, oldest first (each version.json)."""
    chain = []
    while version is not None:
        record = read_json(version_dir(out_dir, version) / VERSION_JSON)
        chain.append(record)
        version = record.get("parent")
    return chain[::-1]


def prune_months(out_dir, keep_months: int) -> list[str]:
    """Remove meses/<month>/ beyond the `keep_months` newest (0 keeps all); the months removed."""
    root = as_location(out_dir) / MONTHS_SUBDIR
    if keep_months <= 0 or not root.is_dir():
        return []
    months = sorted(p.name for p in root.iterdir() if re.fullmatch(r"\d{4}-\d{2}", p.name))
    removed = months[:-keep_months]
    for month in removed:
        remove_tree(root / month)
    return removed
