"""Read-only queries over an output folder, for `mailseg view` and for Python users.

Everything here reads; nothing writes. Counts, pages and Id lookups over the per-user results
(``usuarios/``, one Parquet part per worker) run in DuckDB: the filter is pushed into the Parquet scan
(row groups whose statistics exclude it are skipped), only the filter and sort columns are read in full,
and a page's other columns only for its rows, so at 10M users a page, a filtered count or an Id lookup
never reads the whole table. The audience export and the filter choices use a pyarrow dataset with the
same filter as an expression (predicate and column pushdown), streamed one record batch at a time, so a
10M-user folder is never held in memory. `Filters.sql` and `Filters.expression` state one filter twice;
the tests hold both to a pandas filter of the same users.

The folder itself (`open_results`, `Results`, `NotPublished`) is results.py; the filter (`Filters`) is
filters.py; both are re-exported here, the one module Python users need.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from mailseg_dist.core.catalog import MONTHS_SUBDIR, PLAIN_JSON, USERS_SUBDIR, check_month
from mailseg_dist.core.errors import UsageError
from mailseg_dist.segments.texts import WEEKDAYS
from mailseg_dist.viewer.filters import Filters
from mailseg_dist.viewer.results import NotPublished, Results, open_results, read_json, users_dataset

__all__ = ["Filters", "NotPublished", "Results", "open_results", "count", "page", "distinct", "advice_kind",
           "advice_kinds", "to_params", "from_params", "find_user", "best_time", "centre_distance", "neutralise",
           "export_csv", "month_shares", "transitions", "movers"]

ID = "Id"
PAGE_COLUMNS = ["Id", "segmento", "nivel", "recomendacion", "silhouette_score", "Comprador", "hour", "day_of_week",
                "send", "open", "click", "bounce", "cluster"]
SORTABLE = ("Id", "silhouette_score", "send", "open", "click", "bounce", "engagement_score")
EXPORT_HEADERS = {"es": ["Id", "segmento", "recomendacion", "mejor_momento"],
                  "en": ["Id", "segment", "recommendation", "best_send_time"]}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BATCH_ROWS = 65_536


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
    plain = read_json(path)
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
        return users_dataset(folder).to_table(columns=[ID, "cluster"])

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
        return users_dataset(folder).to_table(columns=[ID], filter=pc.field("cluster") == int(cluster))

    then, now = ids(month_from, cluster_from), ids(month_to, cluster_to)
    return then.join(now, ID, join_type="inner").slice(0, limit).to_pandas()
