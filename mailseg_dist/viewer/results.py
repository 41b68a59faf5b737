"""An output folder, opened read-only: its summary, segments, months and per-user results (for the viewer).

A folder is *published* when its ``run_summary.json`` exists (the job writes it last); anything else is
refused with `NotPublished`, one line saying why. `Results.sql()` gives a DuckDB cursor over ``usuarios/``
and `Results.dataset()` a pyarrow dataset of it: queries.py asks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from mailseg_dist.core.catalog import (
    CURRENT_JSON,
    FIGURE_FILES,
    FIGURES_SUBDIR,
    MONTHS_SUBDIR,
    SEGMENTS_JSON,
    SUMMARY_JSON,
    USERS_SUBDIR,
    VERSION_JSON,
    VERSIONS_SUBDIR,
    check_month,
)
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location, is_remote, location


class NotPublished(UsageError):
    """The folder holds no finished run (no run_summary.json): missing, half-written, or not an output folder."""


# ---------------------------------------------------------------- the folder
def read_json(path) -> dict:
    return json.loads(as_location(path).read_text(encoding="utf-8"))


def users_dataset(folder):
    """A pyarrow dataset of the Parquet parts under `folder` (local, or an object store through fsspec)."""
    import pyarrow.dataset as ds

    folder = as_location(folder)
    if is_remote(folder):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return ds.dataset(folder.path, format="parquet", filesystem=PyFileSystem(FSSpecHandler(folder.fs)))
    return ds.dataset(str(folder), format="parquet")


@dataclass
class Results:
    """One published output folder (or one stored version of it), read-only.

    `root` is the output folder; `base` the folder whose files this object shows: `root` itself (the current
    version) or ``modelos/<version>/`` for an earlier month.
    """

    root: object
    base: object
    summary: dict
    version: str | None = None
    _users: object = field(default=None, repr=False)
    _db: object = field(default=None, repr=False)

    @property
    def month(self) -> str | None:
        return self.summary.get("month")

    def segments(self) -> pd.DataFrame:
        """The segment table (segmentos.json), one row per cluster id, in cluster order."""
        path = self.base / SEGMENTS_JSON
        if not path.exists():
            raise NotPublished(f"{path}: segment table not found; the folder is not a finished `mailseg run` output")
        data = read_json(path)
        table = pd.DataFrame(data["segments"]).set_index("cluster").sort_index()
        table.attrs["population"] = data.get("population", {})
        return table

    def figures(self) -> dict:
        """Figure name → path, for the figures this folder holds (report order)."""
        folder = self.base / FIGURES_SUBDIR
        return {name: folder / file for name, file in FIGURE_FILES.items() if (folder / file).exists()}

    def users(self):
        """The per-user results as a pyarrow dataset (opened once)."""
        if self._users is None:
            folder = self.base / USERS_SUBDIR
            if not folder.exists():
                raise NotPublished(f"{folder}: per-user results not found")
            self._users = users_dataset(folder)
        return self._users

    def sql(self):
        """(DuckDB cursor, FROM clause) over the per-user results: the Parquet files the dataset lists, read by
        DuckDB itself (local; filter pushdown and late materialisation of the other columns), or the pyarrow
        dataset handed to DuckDB (object store). A cursor per call: Streamlit serves sessions on threads."""
        import duckdb

        data = self.users()
        if self._db is None:
            self._db = duckdb.connect(config={"threads": 2, "memory_limit": "512MB",
                                              "preserve_insertion_order": True})
        cursor = self._db.cursor()
        if is_remote(self.base):  # a registered object is seen by the cursor that registered it only
            cursor.register("usuarios", data)
            return cursor, "usuarios"
        files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in data.files)
        return cursor, f"read_parquet([{files}])"

    def months(self) -> list[dict]:
        """Every month kept under meses/ with the version that wrote it, oldest first."""
        root = self.root / MONTHS_SUBDIR
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.iterdir()):
            if (path / VERSION_JSON).exists() and (path / USERS_SUBDIR).exists():
                found.append(read_json(path / VERSION_JSON))
        return found

    def versions(self) -> list[dict]:
        """run_summary.json of every sealed version (oldest first), with its id: shares over time."""
        root = self.root / VERSIONS_SUBDIR
        if not root.is_dir():
            return []
        out = []
        for path in sorted(p for p in root.iterdir() if (p / VERSION_JSON).exists()):
            if (path / SUMMARY_JSON).exists():
                out.append({**read_json(path / SUMMARY_JSON), "version": path.name})
        return sorted(out, key=lambda s: s["version"])

    def for_month(self, month: str) -> Results:
        """The same folder as it was published for `month` (that month's version), or self when current."""
        if month == self.month:
            return self
        record = self.root / MONTHS_SUBDIR / check_month(month) / VERSION_JSON  # YYYY-MM only: no ../
        if not record.exists():
            raise NotPublished(f"{record}: month {month!r} is not kept in this folder")
        version = read_json(record)["version"]
        base = self.root / VERSIONS_SUBDIR / version
        if not (base / SUMMARY_JSON).exists():
            raise NotPublished(f"{base}: version {version} has no {SUMMARY_JSON}")
        return Results(self.root, base, read_json(base / SUMMARY_JSON), version)


def open_results(out) -> Results:
    """The published output folder `out` (path or store URL); NotPublished (a UsageError) if it is not one."""
    root = location(out, "output folder")
    summary_path = root / SUMMARY_JSON
    if not root.exists():
        raise NotPublished(f"{root}: folder not found; pass the output folder of `mailseg run` (--out)")
    if not summary_path.exists():
        raise NotPublished(f"{root}: no {SUMMARY_JSON}, so no finished run here (a job still running, one that "
                           "stopped half-way, or not a mailseg output folder); run `mailseg run` first")
    try:
        summary = read_json(summary_path)
    except (OSError, ValueError) as exc:
        raise NotPublished(f"{summary_path}: not readable ({exc})") from None
    pointer = root / VERSIONS_SUBDIR / CURRENT_JSON
    version = read_json(pointer).get("version") if pointer.exists() else summary.get("version")
    return Results(root, root, summary, version)
