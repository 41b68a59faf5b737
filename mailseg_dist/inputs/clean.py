"""Cleaning: raw rows → typed, validated users, and a ledger of every rejected row.

Rules (README "Cleaning rules"):
- a row with no value in any schema column is rejected as a blank row;
- Id is required; it is an integer when every Id in the input is one, else text;
- send, Total are required whole numbers in [0, cleaning.max_count];
  bounce, open, click likewise, but a blank follows cleaning.null_counts
  (zero: counted as 0; reject: the row is rejected);
- Comprador is 0 or 1 (also sí/si/yes/true/no/false);
- hour is a number in [0, 24); day_of_week a number in [0, 7) or a weekday name
  (lunes/monday = 0 … domingo/sunday = 6);
- duplicate Ids (cleaning.duplicate_ids = keep_first): the row with the lowest
  source row is kept, later ones are rejected naming the row that was kept.
Every rejected row lands in the ledger once, with all the reasons found.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mailseg_dist.inputs.schema import (
    BUYER,
    CLEAN_COLUMNS,
    COUNTS,
    ENGAGEMENT,
    ID,
    OPTIONAL_COUNTS,
    REQUIRED,
    SOURCE_ROW,
    WEEKDAYS,
    normalize,
)

REJECT_COLUMNS = [SOURCE_ROW, "Id_raw", "column", "value", "reason"]
_YES = {"1", "si", "yes", "true", "s", "y", "verdadero"}
_NO = {"0", "no", "false", "n", "falso"}


# Columns are cleaned vectorised where their values allow it (numbers, or text and blanks only);
# per-value Python runs only for mixed columns and for the few rows that have a problem.


def _all_text(col: pd.Series) -> bool:
    return pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")


def _is_number(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


# Every character str.strip() removes lies outside ASCII '!'..'~' (ASCII blanks and controls, or non-ASCII
# spaces): a value that neither starts nor ends with such a character is already stripped.
_MAY_NEED_STRIP = r"^[^\x21-\x7e]|[^\x21-\x7e]$"


def _arrow_text(col: pd.Series) -> pa.Array | None:
    """The values of a text column as an Arrow string array (None for a column of blanks only)."""
    values = pa.array(col, from_pandas=True)
    return values if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) else None


def _stripped_text(col: pd.Series) -> pd.Series:
    """str.strip() of a text column: Arrow finds the few values with an edge to strip, Python strips those.

    Stripping every value in Python was 70% of cleaning an xlsx part (24 x 49 ms per 100,000 rows);
    the Arrow scan takes 6 ms per column and the result is the same, value for value."""
    values = _arrow_text(col)
    if values is None:  # no value at all
        return col
    edge = pc.fill_null(pc.match_substring_regex(values, _MAY_NEED_STRIP), False).to_numpy(zero_copy_only=False)
    if not edge.any():
        return col
    out = col.astype(object)
    out[edge] = [value.strip() for value in out[edge]]
    return out


def _stripped(col: pd.Series) -> pd.Series:
    """The column as it is checked: numbers as they are, text with the blanks around it stripped."""
    if _is_number(col) or pd.api.types.is_bool_dtype(col):
        return col
    if _all_text(col):
        return _stripped_text(col)
    return col.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)


def _arrow_numbers(text: pd.Series) -> np.ndarray | None:
    """Arrow's float64 of a stripped text column, or None when a value needs pandas' rules.

    Arrow parses 100,000 values in ~4 ms where pd.to_numeric takes ~40 ms (9 columns per part). It
    refuses the whole column at the first value it cannot read (pandas then gives it NaN), and reads
    '-0' as -0.0 where pandas reads the integer 0: both go to pandas. Every other value it reads, it
    reads as pandas does (tests/test_clean_numbers.py)."""
    values = _arrow_text(text)
    if values is None:
        return None
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    try:
        numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    return None if (np.signbit(numbers) & (numbers == 0)).any() else numbers


def _as_number(text: pd.Series) -> pd.Series:
    """Numbers of a `_stripped` column (NaN where a value is not one)."""
    if _is_number(text):
        return text.astype("float64")
    if pd.api.types.is_bool_dtype(text):
        text = text.astype(object)
    numbers = _arrow_numbers(text) if _all_text(text) else None
    if numbers is not None:
        return pd.Series(numbers, index=text.index)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _blank(text: pd.Series) -> pd.Series:
    """Missing or empty values of a `_stripped` column."""
    if pd.api.types.is_numeric_dtype(text):
        return text.isna()
    if _all_text(text):
        return text.isna() | text.eq("").fillna(False).astype(bool)
    return text.isna() | text.map(lambda v: isinstance(v, str) and not v)


class _Problems:
    """Collects (column, reason) per row with a problem (most rows have none); the ledger joins them."""

    def __init__(self, n: int):
        self.n = n
        self.found: dict[int, tuple[list, list]] = {}  # row position → (columns, reasons), in order found
        self.silenced = np.zeros(n, dtype=bool)  # blank rows: one reason is enough

    def add(self, mask: np.ndarray, column: str, reason: str) -> None:
        for i in np.flatnonzero(mask & ~self.silenced):
            columns, reasons = self.found.setdefault(int(i), ([], []))
            columns.append(column)
            reasons.append(reason)

    def joined(self, which: int, index) -> pd.Series:
        """';'-joined columns (which=0) or reasons (which=1) per row, None for a valid row."""
        values = np.full(self.n, None, dtype=object)
        for i, lists in self.found.items():
            values[i] = ";".join(lists[which])
        return pd.Series(values, index=index, dtype=object)


def _check_counts(text, out, problems, ccfg):
    for name in COUNTS:
        num = _as_number(text[name])
        blank = _blank(text[name]).to_numpy()
        if name in OPTIONAL_COUNTS and ccfg["null_counts"] == "zero":
            num = num.where(~blank, 0.0)
        else:
            problems.add(blank, name, "missing value")
        non_number = (num.isna().to_numpy() & ~blank)
        problems.add(non_number, name, "expected a whole number, found text")
        vals = num.to_numpy()
        finite = np.isfinite(vals)
        problems.add(~finite & ~num.isna().to_numpy(), name, "not a finite number")
        with np.errstate(invalid="ignore"):
            problems.add(finite & (vals < 0), name, "negative count")
            problems.add(finite & (vals != np.round(vals)), name, "count is not a whole number")
            problems.add(finite & (vals > ccfg["max_count"]), name, f"count above {ccfg['max_count']}")
        out[name] = np.nan_to_num(np.clip(vals, 0, ccfg["max_count"]), nan=0).astype("int64")


def _check_buyer(frame, text, out, problems):
    raw = frame[BUYER]
    as_num = _as_number(text[BUYER]).to_numpy()
    value = np.where(as_num == 1, 1, np.where(as_num == 0, 0, -1))
    words = (value < 0) & raw.notna().to_numpy()  # only non-numbers can be sí/no/yes/true...
    if words.any():
        text = raw[words].astype(object).map(normalize)
        value[words] = np.where(text.isin(_YES), 1, np.where(text.isin(_NO), 0, -1))
    problems.add(value < 0, BUYER, "expected 0 or 1")
    out[BUYER] = np.where(value < 0, 0, value).astype("int64")


def _check_averages(frame, text, out, problems):
    hour = _as_number(text["hour"]).to_numpy()
    problems.add(~(np.isfinite(hour) & (hour >= 0) & (hour < 24)), "hour", "expected a number in [0, 24)")
    out["hour"] = np.nan_to_num(hour, nan=0.0, posinf=0.0, neginf=0.0)
    raw_day = frame["day_of_week"]
    day = _as_number(text["day_of_week"])
    day = day.to_numpy(dtype="float64", copy=True)
    words = np.isnan(day) & raw_day.notna().to_numpy()  # only non-numbers can be weekday names
    if words.any():
        names = raw_day[words].astype(object).map(lambda v: WEEKDAYS.get(normalize(v)) if isinstance(v, str) else None)
        day[words] = pd.to_numeric(names, errors="coerce").to_numpy(dtype="float64")
    problems.add(~(np.isfinite(day) & (day >= 0) & (day < 7)), "day_of_week",
                 "expected a number in [0, 7) or a weekday name")
    out["day_of_week"] = np.nan_to_num(day, nan=0.0, posinf=0.0, neginf=0.0)


def _check_id(frame, text, out, problems, id_type):
    raw = frame[ID]
    blank = _blank(text[ID]).to_numpy()
    problems.add(blank, ID, "missing Id")
    if id_type == "int" and pd.api.types.is_integer_dtype(raw) and not raw.isna().any():
        out[ID] = raw.astype("int64")  # typed input (Parquet): exact, whatever the magnitude
    elif id_type == "int":
        num = _as_number(text[ID]).to_numpy()
        # beyond 2**53 a float no longer holds every integer: two Ids could silently merge
        ok = np.isfinite(num) & (num == np.round(num)) & (np.abs(num) < 2**53)
        problems.add(~ok & ~blank, ID, "expected an integer Id")
        out[ID] = np.where(ok, num, 0).astype("int64")
    else:
        out[ID] = raw.astype(object).map(lambda v: None if v is None else str(v).strip()).astype("string")


def coerce_partition(frame: pd.DataFrame, id_type: str, ccfg: dict, every_id_raw: bool = True) -> pd.DataFrame:
    """Typed clean columns + source_row + `_column`/`_reason` (None where the row is valid) + `Id_raw`.

    `every_id_raw=False`: `Id_raw` (the Id as the ledger shows it) only for rows with a problem, None
    elsewhere; showing every Id as text was half the cost of a typed part (45 of 100 ms per 100,000 rows)
    and a valid row needs it only if it turns out to be a later copy of a repeated Id."""
    n = len(frame)
    problems = _Problems(n)
    text = pd.DataFrame({name: _stripped(frame[name]) for name in REQUIRED}, index=frame.index)
    blank_row = np.ones(n, dtype=bool)
    for name in REQUIRED:
        blank_row &= _blank(text[name]).to_numpy()
    out = pd.DataFrame(index=frame.index)
    problems.add(blank_row, "*", "blank row")
    problems.silenced = blank_row
    _check_id(frame, text, out, problems, id_type)
    _check_counts(text, out, problems, ccfg)
    _check_buyer(frame, text, out, problems)
    _check_averages(frame, text, out, problems)
    weights = ccfg["engagement_weights"]
    out[ENGAGEMENT] = (weights["open"] * out["open"] + weights["click"] * out["click"]
                       + weights["Comprador"] * out[BUYER]).astype("float64")
    out[SOURCE_ROW] = frame[SOURCE_ROW].astype("int64")
    out["_column"] = problems.joined(0, frame.index)
    out["_reason"] = problems.joined(1, frame.index)
    out["_value"] = _failing_values(frame, problems)
    out["Id_raw"] = _id_shown(frame[ID]) if every_id_raw else _id_shown_where(frame[ID], out["_reason"].notna())
    return out[[*CLEAN_COLUMNS, SOURCE_ROW, "Id_raw", "_column", "_reason", "_value"]]


def _failing_values(frame: pd.DataFrame, problems: _Problems) -> pd.Series:
    values = np.full(len(frame), None, dtype=object)
    for i, (cols, _) in problems.found.items():
        seen = dict.fromkeys(c for c in cols if c != "*")
        values[i] = ";".join(_shown(frame[c].iloc[i]) for c in seen) or None
    return pd.Series(values, index=frame.index, dtype=object)


def _id_shown(raw: pd.Series) -> pd.Series:
    """The Id cell as the ledger shows it (None when blank)."""
    if pd.api.types.is_integer_dtype(raw) and not raw.isna().any():
        return pd.Series(raw.to_numpy().astype(str).astype(object), index=raw.index)  # dtype inferred, as map does
    if _all_text(raw):
        text = raw.astype(object)
        return pd.Series(text.where(text.notna() & text.ne(""), None).to_numpy(), index=raw.index)
    return raw.astype(object).map(lambda v: _shown(v) or None)


def _id_shown_where(raw: pd.Series, rows: pd.Series) -> pd.Series:
    shown = pd.Series(None, index=raw.index, dtype=object)
    if rows.any():
        shown[rows.to_numpy()] = _id_shown(raw[rows.to_numpy()]).to_numpy()
    return shown


def _shown(value: object) -> str:
    """A cell as the ledger shows it: blank for a missing value, not 'None' or 'nan'."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA else str(value)


def split_partition(coerced: pd.DataFrame, first_rows: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid rows → users; invalid rows and duplicate-Id losers → ledger rows."""
    duplicate_of = coerced[ID].map(first_rows) if len(first_rows) else pd.Series(np.nan, index=coerced.index)
    loser = coerced["_reason"].isna() & duplicate_of.notna() & (duplicate_of != coerced[SOURCE_ROW])
    rejects = coerced[coerced["_reason"].notna() | loser].copy()
    dup_rows = loser[loser].index
    rejects.loc[dup_rows, "_column"] = ID
    rejects.loc[dup_rows, "_value"] = coerced.loc[dup_rows, "Id_raw"]
    rejects.loc[dup_rows, "_reason"] = [f"duplicate Id (kept row {int(r)})" for r in duplicate_of[dup_rows]]
    kept = coerced[coerced["_reason"].isna() & ~loser][[*CLEAN_COLUMNS, SOURCE_ROW]]
    ledger = rejects.rename(columns={"_column": "column", "_reason": "reason", "_value": "value"})
    return kept.reset_index(drop=True), ledger[REJECT_COLUMNS].reset_index(drop=True).astype(
        {"Id_raw": "string", "column": "string", "value": "string", "reason": "string"})
