"""Read-only queries over an output folder, for `mailseg view` and for Python users.

Everything here reads; nothing writes. Counts, pages and Id lookups over the per-user results
(``usuarios/``, one Parquet part per worker) run in DuckDB: the filter is pushed into the Parquet scan
(row groups whose statistics exclude it are skipped), only the filter and sort columns are read in full,
and a page's other columns only for its rows, so at 10M users a page, a filtered count or an Id lookup
never reads the whole table. The audience export and the filter choices use a pyarrow dataset with the
same filter as an expression (predicate and column pushdown), streamed one record batch at a time, so a
10M-user folder is never held in memory. `Filters.sql` and `Filters.expression` state one filter twice;
the tests hold both to a pandas filter of the same users.

A folder is *published* when its ``run_summary.json`` exists (the job writes
it last); anything else is refused with `NotPublished`, one line saying why.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mailseg_dist.core.catalog import (
    CURRENT_JSON,
    FIGURE_FILES,
    FIGURES_SUBDIR,
    MONTHS_SUBDIR,
    PLAIN_JSON,
    SEGMENTS_JSON,
    SUMMARY_JSON,
    USERS_SUBDIR,
    VERSION_JSON,
    VERSIONS_SUBDIR,
    check_month,
)
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location, is_remote, location
from mailseg_dist.segments.texts import WEEKDAYS

ID = "Id"
PAGE_COLUMNS = ["Id", "segmento", "nivel", "recomendacion", "silhouette_score", "Comprador", "hour", "day_of_week",
                "send", "open", "click", "bounce", "cluster"]
SORTABLE = ("Id", "silhouette_score", "send", "open", "click", "bounce", "engagement_score")
EXPORT_HEADERS = {"es": ["Id", "segmento", "recomendacion", "mejor_momento"],
                  "en": ["Id", "segment", "recommendation", "best_send_time"]}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BATCH_ROWS = 65_536


class NotPublished(UsageError):
    """The folder holds no finished run (no run_summary.json): missing, half-written, or not an output folder."""


# ---------------------------------------------------------------- the folder
def _read_json(path) -> dict:
    return json.loads(as_location(path).read_text(encoding="utf-8"))


def _dataset(folder):
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
        data = _read_json(path)
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
            self._users = _dataset(folder)
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
                found.append(_read_json(path / VERSION_JSON))
        return found

    def versions(self) -> list[dict]:
        """run_summary.json of every sealed version (oldest first), with its id: shares over time."""
        root = self.root / VERSIONS_SUBDIR
        if not root.is_dir():
            return []
        out = []
        for path in sorted(p for p in root.iterdir() if (p / VERSION_JSON).exists()):
            if (path / SUMMARY_JSON).exists():
                out.append({**_read_json(path / SUMMARY_JSON), "version": path.name})
        return sorted(out, key=lambda s: s["version"])

    def for_month(self, month: str) -> Results:
        """The same folder as it was published for `month` (that month's version), or self when current."""
        if month == self.month:
            return self
        record = self.root / MONTHS_SUBDIR / check_month(month) / VERSION_JSON  # YYYY-MM only: no ../
        if not record.exists():
            raise NotPublished(f"{record}: month {month!r} is not kept in this folder")
        version = _read_json(record)["version"]
        base = self.root / VERSIONS_SUBDIR / version
        if not (base / SUMMARY_JSON).exists():
            raise NotPublished(f"{base}: version {version} has no {SUMMARY_JSON}")
        return Results(self.root, base, _read_json(base / SUMMARY_JSON), version)


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
        summary = _read_json(summary_path)
    except (OSError, ValueError) as exc:
        raise NotPublished(f"{summary_path}: not readable ({exc})") from None
    pointer = root / VERSIONS_SUBDIR / CURRENT_JSON
    version = _read_json(pointer).get("version") if pointer.exists() else summary.get("version")
    return Results(root, root, summary, version)


# ---------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filters:
    """Which users: every field None (or empty) means no condition on it.

    clusters: segment ids; levels: "Alta"/"Baja" (the file's words); recommendations: exact advice texts;
    silhouette: (low, high) inclusive; buyer: True/False; days: weekdays 0=Monday of the best send time
    (the user's mean weekday rounded, as the advice uses it); hours: (first, last) hour of it, inclusive.
    """

    clusters: tuple[int, ...] | None = None
    levels: tuple[str, ...] | None = None
    recommendations: tuple[str, ...] | None = None
    silhouette: tuple[float, float] | None = None
    buyer: bool | None = None
    days: tuple[int, ...] | None = None
    hours: tuple[int, int] | None = None

    def expression(self):
        """The filter as one pyarrow expression (None: all users), evaluated inside the scan."""
        import pyarrow.compute as pc

        parts = []
        if self.clusters:
            parts.append(pc.field("cluster").isin([int(c) for c in self.clusters]))
        if self.levels:
            parts.append(pc.field("nivel").isin(list(self.levels)))
        if self.recommendations:
            parts.append(pc.field("recomendacion").isin(list(self.recommendations)))
        if self.silhouette is not None:
            low, high = self.silhouette
            parts.append((pc.field("silhouette_score") >= float(low)) & (pc.field("silhouette_score") <= float(high)))
        if self.buyer is not None:
            parts.append(pc.field("Comprador") == (1 if self.buyer else 0))
        if self.days:
            parts.append(_any([_day_is(int(d)) for d in sorted(set(self.days))]))
        if self.hours is not None:
            parts.append(_hours_between(*self.hours))
        expr = None
        for part in parts:
            expr = part if expr is None else expr & part
        return expr

    def sql(self) -> tuple[str, list]:
        """The same filter as a SQL WHERE condition with its parameters ("TRUE", [] for all users)."""
        parts, params = [], []

        def among(column: str, values) -> None:
            parts.append(f'"{column}" IN ({", ".join("?" * len(values))})')
            params.extend(values)

        if self.clusters:
            among("cluster", [int(c) for c in self.clusters])
        if self.levels:
            among("nivel", list(self.levels))
        if self.recommendations:
            among("recomendacion", list(self.recommendations))
        if self.silhouette is not None:
            parts.append('"silhouette_score" BETWEEN ? AND ?')
            params += [float(self.silhouette[0]), float(self.silhouette[1])]
        if self.buyer is not None:
            parts.append('"Comprador" = ?')
            params.append(1 if self.buyer else 0)
        if self.days:
            days = []
            for day in sorted({int(d) for d in self.days}):
                low = None if day == 0 else f'"day_of_week" >= {day - 0.5!r}'
                high = None if day == 6 else f'"day_of_week" < {day + 0.5!r}'
                days.append(" AND ".join(c for c in (low, high) if c) or "TRUE")
            parts.append("(" + " OR ".join(f"({d})" for d in days) + ")")
        if self.hours is not None:
            first, last = int(self.hours[0]), int(self.hours[1])
            if not (0 <= first <= last <= 23):
                raise UsageError(f"hours expected 0 <= first <= last <= 23, found {first}-{last}")
            inside = f'("hour" >= {first - 0.5!r} AND "hour" < {last + 0.5!r})'
            parts.append(f'({inside} OR "hour" >= 23.5)' if first == 0 else inside)
        return (" AND ".join(parts) or "TRUE"), params


def _any(exprs):
    out = exprs[0]
    for e in exprs[1:]:
        out = out | e
    return out


def _day_is(day: int):
    """Rounded mean weekday == day, clipped to 0..6 (recommend._time_keys), as bounds on the float column."""
    import pyarrow.compute as pc

    col = pc.field("day_of_week")
    low = None if day == 0 else col >= day - 0.5
    high = None if day == 6 else col < day + 0.5
    return low if high is None else high if low is None else low & high


def _hours_between(first: int, last: int):
    """Rounded mean hour (23.5 and later round to 0) within [first, last], as bounds on the float column."""
    import pyarrow.compute as pc

    col = pc.field("hour")
    first, last = int(first), int(last)
    if not (0 <= first <= last <= 23):
        raise UsageError(f"hours expected 0 <= first <= last <= 23, found {first}-{last}")
    inside = (col >= first - 0.5) & (col < last + 0.5)
    return inside | (col >= 23.5) if first == 0 else inside


def count(results: Results, filters: Filters = Filters()) -> int:
    """Users matching `filters`."""
    cursor, source = results.sql()
    where, params = filters.sql()
    return int(cursor.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone()[0])


def page(results: Results, filters: Filters = Filters(), *, offset: int = 0, limit: int = 50,
         sort_by: str | None = None, descending: bool = False, columns: list[str] | None = None) -> pd.DataFrame:
    """One page of users: rows offset..offset+limit of the filtered users, in the folder's order or sorted
    (ties by Id). DuckDB reads the filter and sort columns, and the page's other columns only where needed."""
    names = results.users().schema.names
    columns = [c for c in (columns or PAGE_COLUMNS) if c in names]
    if sort_by is not None and sort_by not in names:
        raise UsageError(f"sort_by expected one of {', '.join(SORTABLE)}, found {sort_by!r}")
    cursor, source = results.sql()
    where, params = filters.sql()
    order = "" if sort_by is None else f' ORDER BY "{sort_by}" {"DESC" if descending else "ASC"}, "{ID}" ASC'
    select = ", ".join(f'"{c}"' for c in columns)
    query = f"SELECT {select} FROM {source} WHERE {where}{order} LIMIT ? OFFSET ?"
    return cursor.execute(query, [*params, int(limit), int(offset)]).df()


def distinct(results: Results, column: str) -> list:
    """The distinct values of a column, sorted: the choices of a filter."""
    if column not in results.users().schema.names:
        raise UsageError(f"{column}: no such column in the per-user results")
    cursor, source = results.sql()
    return sorted(v for (v,) in cursor.execute(f'SELECT DISTINCT "{column}" FROM {source}').fetchall() if v is not None)


def advice_kind(text: str) -> str:
    """The action part of a per-user advice text (before '; ', ' (' or ': '): ~500 texts in a few kinds."""
    for cut in ("; ", " (", ": "):
        if cut in text:
            text = text.split(cut, 1)[0]
    return text.rstrip(".")


def advice_kinds(results: Results) -> dict[str, list[str]]:
    """Advice kind → the exact advice texts of that kind in this folder's users."""
    kinds: dict[str, list[str]] = {}
    for text in distinct(results, "recomendacion"):
        kinds.setdefault(advice_kind(text), []).append(text)
    return dict(sorted(kinds.items()))


def to_params(filters: Filters, kinds: list[str] | None = None) -> dict:
    """The filters as URL query parameters (advice given by kind, see `from_params`)."""
    f, out = filters, {}
    if f.clusters:
        out["segments"] = ",".join(str(int(c)) for c in f.clusters)
    if f.levels:
        out["levels"] = "|".join(f.levels)
    if kinds:
        out["advice"] = "|".join(kinds)
    if f.silhouette is not None:
        out["silhouette"] = f"{float(f.silhouette[0])!r},{float(f.silhouette[1])!r}"
    if f.buyer is not None:
        out["buyer"] = "1" if f.buyer else "0"
    if f.days:
        out["days"] = ",".join(str(int(d)) for d in f.days)
    if f.hours is not None:
        out["hours"] = f"{int(f.hours[0])},{int(f.hours[1])}"
    return out


def from_params(results: Results, params) -> Filters:
    """Filters from URL query parameters (as `to_params` writes them); UsageError on a malformed value."""
    def ints(name):
        try:
            return tuple(int(v) for v in params[name].split(",") if v != "")
        except ValueError:
            raise UsageError(f"{name} expected comma-separated integers, found {params[name]!r}") from None

    try:
        silhouette = tuple(float(v) for v in params["silhouette"].split(",")) if "silhouette" in params else None
    except ValueError:
        raise UsageError(f"silhouette expected low,high, found {params['silhouette']!r}") from None
    if silhouette is not None and len(silhouette) != 2:
        raise UsageError(f"silhouette expected low,high, found {params['silhouette']!r}")
    hours = ints("hours") if "hours" in params else None
    if hours is not None and len(hours) != 2:
        raise UsageError(f"hours expected first,last, found {params['hours']!r}")
    texts = None
    if params.get("advice"):
        known = advice_kinds(results)
        texts = tuple(t for kind in params["advice"].split("|") for t in known.get(kind, [f"\0{kind}"]))
    buyer = {"1": True, "0": False}.get(params.get("buyer", ""), None)
    return Filters(clusters=ints("segments") if "segments" in params else None,
                   levels=tuple(params["levels"].split("|")) if params.get("levels") else None,
                   recommendations=texts, silhouette=silhouette, buyer=buyer,
                   days=ints("days") if "days" in params else None, hours=hours)


# ---------------------------------------------------------------- one user
def find_user(results: Results, user_id) -> dict | None:
    """The user with this Id (text as typed, matched against the Id column's type), or None."""
    import pyarrow as pa

    kind = results.users().schema.field(ID).type
    value = str(user_id).strip()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        try:
            value = int(value) if pa.types.is_integer(kind) else float(value)
        except ValueError:
            return None
    cursor, source = results.sql()
    found = cursor.execute(f'SELECT * FROM {source} WHERE "{ID}" = ? LIMIT 1', [value]).df()
    if found.empty:
        return None
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in found.iloc[0].to_dict().items()}
    row["best_time"] = best_time(row["day_of_week"], row["hour"])
    row.update(centre_distance(results, row))
    return row


def best_time(day_of_week: float, hour: float) -> tuple[int, int]:
    """(weekday 0=Monday, hour) of a user's best send time: their mean weekday and hour, rounded."""
    return (int(np.clip(math.floor(day_of_week + 0.5), 0, 6)), int(math.floor(hour + 0.5) % 24))


def centre_distance(results: Results, row: dict) -> dict:
    """Distance (standardised units) from the user to their segment's centre and to the nearest other one.

    Computed from modelo.json when the model's features are columns of the results and the nearest centre is
    the user's own segment (plain features); otherwise only the silhouette is known and both are None."""
    path = results.base / PLAIN_JSON
    none = {"distance": None, "distance_other": None}
    if not path.exists():
        return none
    plain = _read_json(path)
    if any(f not in row for f in plain["features"]):
        return none
    x = (np.array([row[f] for f in plain["features"]], dtype=float) - np.asarray(plain["scaler"]["mean"])) \
        / np.asarray(plain["scaler"]["scale"])
    dist = np.linalg.norm(np.asarray(plain["centers"]) - x, axis=1)
    own = int(row["cluster"])
    if int(np.argmin(dist)) != own:  # transformed features (log1p, rates, cyclical): not these raw columns
        return none
    return {"distance": float(dist[own]), "distance_other": float(np.min(np.delete(dist, own)))}


# ---------------------------------------------------------------- export
def neutralise(text: str) -> str:
    """Text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) prefixed with ' so it stays text."""
    return "'" + text if text.startswith(FORMULA_START) else text


def export_csv(results: Results, filters: Filters = Filters(), *, lang: str = "es", excel: bool = False,
               batch_rows: int = BATCH_ROWS) -> Iterator[bytes]:
    """The audience as CSV bytes, one chunk per record batch: Id, segment, recommendation, best send time.

    excel=False: UTF-8, comma, no BOM. excel=True (Spanish Excel): UTF-8 with BOM and ';'. Text cells that
    look like formulas are neutralised. Rows in the folder's order; memory is one batch.
    """
    sep = ";" if excel else ","
    days = WEEKDAYS["es" if lang == "es" else "en"]
    when = np.array([f"{days[k // 24]} {k % 24:02d}:00" for k in range(7 * 24)], dtype=object)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADERS["es" if lang == "es" else "en"])
    head = buffer.getvalue().encode("utf-8")
    yield (b"\xef\xbb\xbf" + head) if excel else head
    data = results.users()
    columns = [ID, "segmento", "recomendacion", "day_of_week", "hour"]
    # little read-ahead: the defaults (4 files x 16 batches in flight) held ~0.5 GB more at 10M users
    scanner = data.scanner(columns=columns, filter=filters.expression(), batch_size=batch_rows,
                           batch_readahead=2, fragment_readahead=1)
    for batch in scanner.to_batches():
        if batch.num_rows == 0:
            continue
        buffer.seek(0)
        buffer.truncate()
        day = np.clip(np.floor(batch.column("day_of_week").to_numpy(zero_copy_only=False) + 0.5), 0, 6)
        hour = np.floor(batch.column("hour").to_numpy(zero_copy_only=False) + 0.5) % 24
        writer.writerows(zip(_texts(batch.column(ID)), _texts(batch.column("segmento")),
                             _texts(batch.column("recomendacion")), when[(day * 24 + hour).astype(np.int64)]))
        yield buffer.getvalue().encode("utf-8")


def _texts(column) -> list:
    """A column's values as CSV text, formula-looking text neutralised; a dictionary column is neutralised once
    per distinct value, numbers as Python prints them."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        values = np.array([None if v is None else neutralise(str(v)) for v in column.dictionary.to_pylist()],
                          dtype=object)
        return values[column.indices.to_numpy(zero_copy_only=False)].tolist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [None if v is None else neutralise(v) for v in column.to_pylist()]
    return [str(v) for v in column.to_pylist()]


# ---------------------------------------------------------------- months
def month_shares(results: Results) -> pd.DataFrame:
    """Each segment's share of users per published version's month (rows: month, columns: segment name)."""
    rows = []
    for summary in results.versions():
        for seg in summary.get("segments", []):
            rows.append({"month": summary.get("month"), "version": summary["version"], "cluster": seg["cluster"],
                         "name": seg["name"], "share": seg["share"], "users": seg.get("users")})
    return pd.DataFrame(rows, columns=["month", "version", "cluster", "name", "share", "users"])


def transitions(results: Results, month_from: str, month_to: str) -> pd.DataFrame:
    """Users present in both months, counted by (segment then, segment now): who moved where.

    Reads only (Id, cluster) of each month's meses/<month>/usuarios/."""

    def clusters(month):
        folder = results.root / MONTHS_SUBDIR / check_month(month) / USERS_SUBDIR
        if not folder.exists():
            raise NotPublished(f"{folder}: month {month!r} is not kept in this folder")
        return _dataset(folder).to_table(columns=[ID, "cluster"])

    then = clusters(month_from).rename_columns([ID, "then"])
    now = clusters(month_to).rename_columns([ID, "now"])
    both = then.join(now, ID, join_type="inner")
    counts = both.group_by(["then", "now"]).aggregate([(ID, "count")]).to_pandas()
    if counts.empty:
        return pd.DataFrame()
    return counts.pivot(index="then", columns="now", values=f"{ID}_count").fillna(0).astype(int)


def movers(results: Results, month_from: str, month_to: str, cluster_from: int, cluster_to: int,
           limit: int = 50) -> pd.DataFrame:
    """Up to `limit` Ids of users who were in `cluster_from` in one month and are in `cluster_to` in the other."""
    import pyarrow.compute as pc

    def ids(month, cluster):
        folder = results.root / MONTHS_SUBDIR / check_month(month) / USERS_SUBDIR
        return _dataset(folder).to_table(columns=[ID], filter=pc.field("cluster") == int(cluster))

    then, now = ids(month_from, cluster_from), ids(month_to, cluster_to)
    return then.join(now, ID, join_type="inner").slice(0, limit).to_pandas()
