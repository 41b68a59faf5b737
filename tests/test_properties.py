"""Property tests: user tables with junk in random cells.

An independent per-cell oracle (written here from the README's cleaning rules, not from
clean.py) says which rows must survive and with which values; the real code must agree,
rows must reconcile (in = kept + rejected) and every kept row must be valid. Tables go
through coerce_partition/split_partition directly (random partition cuts) and through a
real in-process ingest of CSV files (comma and Spanish dialects, small chunks).
"""

from __future__ import annotations

import csv
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailseg_dist.core.catalog import Catalog
from mailseg_dist.core.config import load_config
from mailseg_dist.inputs.clean import coerce_partition, split_partition
from mailseg_dist.inputs.ingest import ingest
from mailseg_dist.inputs.schema import REQUIRED, SOURCE_ROW, WEEKDAYS, normalize

CFG = load_config()
CCFG = CFG["cleaning"]
MAX_COUNT = CCFG["max_count"]
JUNK = ["abc", "NaN", "nan", "inf", "-inf", "1e400", "99999999999", "-3", "", " ", "#N/A", "2026-01-05",
        "2.5", "sí", "no", "lunes", "Domingo", "7", "24", "=1+1", None, "1e308", "-0", "4.0", " 3 ", "1"]
YES, NO = {"1", "si", "yes", "true", "s", "y", "verdadero"}, {"0", "no", "false", "n", "falso"}

# ---------------------------------------------------------------- the oracle


def _blank(cell) -> bool:
    return cell is None or not cell.strip()


def _number(cell) -> float | None:
    """The cell as a number, None for text or blank ('nan' is text: nobody types it as a count)."""
    if _blank(cell):
        return None
    try:
        value = float(cell.strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _count(cell, optional: bool):
    if _blank(cell):
        return 0 if optional else None
    x = _number(cell)
    ok = x is not None and math.isfinite(x) and x >= 0 and x == round(x) and x <= MAX_COUNT
    return int(x) if ok else None


def _buyer(cell):
    word, x = ("" if cell is None else normalize(cell)), _number(cell)
    if word in YES or x == 1:
        return 1
    if word in NO or x == 0:
        return 0
    return None


def _in(cell, upper: float, names: bool = False):
    x = _number(cell)
    if x is None and names and cell is not None:
        x = WEEKDAYS.get(normalize(cell))
    return float(x) if x is not None and math.isfinite(x) and 0 <= x < upper else None


def _int_id(cell):
    x = _number(cell)
    return int(x) if x is not None and math.isfinite(x) and x == round(x) and abs(x) < 2**53 else None


def id_type_of(rows) -> str:
    present = [r[0] for r in rows if not _blank(r[0])]
    return "int" if all(_int_id(c) is not None for c in present) else "string"


def oracle(rows, id_type: str) -> dict[int, dict]:
    """source row → typed values of the rows that must be kept."""
    valid = {}
    for i, row in enumerate(rows):
        cells = dict(zip(REQUIRED, row))
        user = {"Id": _int_id(cells["Id"]) if id_type == "int" else (None if _blank(cells["Id"]) else cells["Id"].strip())}
        for name in ["send", "bounce", "open", "click", "Total"]:
            user[name] = _count(cells[name], optional=name in ("bounce", "open", "click"))
        user["Comprador"] = _buyer(cells["Comprador"])
        user["hour"] = _in(cells["hour"], 24)
        user["day_of_week"] = _in(cells["day_of_week"], 7, names=True)
        if all(v is not None for v in user.values()):
            valid[i + 2] = user
    first = {}
    for source_row, user in sorted(valid.items()):
        first.setdefault(user["Id"], source_row)
    return {r: u for r, u in valid.items() if first[u["Id"]] == r}


# ---------------------------------------------------------------- tables with junk


def _valid(column: str):
    if column == "Id":
        return st.integers(0, 15).map(str)
    if column == "Comprador":
        return st.sampled_from(["0", "1"])
    if column == "hour":
        return st.floats(0, 23.9999).map(lambda x: f"{x:.6f}")
    if column == "day_of_week":
        return st.one_of(st.floats(0, 6.99).map(lambda x: f"{x:.6f}"), st.sampled_from(["martes", "Friday"]))
    return st.integers(0, 30).map(str)


BOUNDARY = {  # values on either side of each rule's edge
    "Id": [" ", "", "4.0", "4.5", "9007199254740993", "1e308", "A-1"],
    "send": ["0", "-1", "1000000", "1000001", "0.5"], "Total": ["1000000", "1000001"],
    "Comprador": ["2", "-1", "0.5", "SI", "Sí", "True", "falso"],
    "hour": ["24", "23.999999", "0", "-0.000001", "24.000001"],
    "day_of_week": ["7", "6.999999", "0", "-0.000001", "sabado", "Sun"],
}


def _junk(column: str):
    edges = st.sampled_from(BOUNDARY.get(column, ["-1", "0.5"]))
    return st.one_of(edges, st.sampled_from(JUNK), st.floats(allow_nan=True, allow_infinity=True).map(repr))


@st.composite
def tables(draw, max_rows: int = 14) -> list[list]:
    """Mostly valid rows with 0-2 junk cells each (so each rule's edge shows), a blank row now and then."""
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        if draw(st.integers(0, 12)) == 0:
            rows.append([draw(st.sampled_from([None, "", " "])) for _ in REQUIRED])
            continue
        row = [draw(_valid(c)) for c in REQUIRED]
        for _ in range(draw(st.integers(0, 2))):
            column = draw(st.integers(0, len(REQUIRED) - 1))
            row[column] = draw(_junk(REQUIRED[column]))
        rows.append(row)
    return rows


TABLES = tables()


def assert_valid(users: pd.DataFrame) -> None:
    counts = users[["send", "bounce", "open", "click", "Total"]]
    assert (counts.dtypes == np.int64).all() and (counts >= 0).all().all() and (counts <= MAX_COUNT).all().all()
    assert users["Comprador"].isin([0, 1]).all()
    assert users["hour"].between(0, 24, inclusive="left").all()
    assert users["day_of_week"].between(0, 7, inclusive="left").all()
    assert users["Id"].notna().all() and users["Id"].is_unique


def assert_matches_oracle(users: pd.DataFrame, expected: dict[int, dict]) -> None:
    assert sorted(users[SOURCE_ROW]) == sorted(expected)
    for row in users.to_dict("records"):
        want = expected[row[SOURCE_ROW]]
        got = {k: row[k] for k in want}
        assert got == want, (row[SOURCE_ROW], got, want)


def raw_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=REQUIRED, dtype=object) if rows else pd.DataFrame(columns=REQUIRED, dtype=object)
    frame[SOURCE_ROW] = range(2, 2 + len(frame))
    return frame


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(rows=TABLES, cuts=st.lists(st.integers(0, 14), max_size=3))
def test_coerce_and_split_agree_with_the_oracle(rows, cuts):
    frame = raw_frame(rows)
    id_type = id_type_of(rows)
    bounds = sorted({0, len(frame), *[min(c, len(frame)) for c in cuts]})
    parts = [coerce_partition(frame.iloc[a:b], id_type, CCFG) for a, b in zip(bounds, bounds[1:])] or \
        [coerce_partition(frame, id_type, CCFG)]
    whole = pd.concat(parts)
    valid = whole[whole["_reason"].isna()]
    counts = valid["Id"].value_counts()
    first_rows = valid[valid["Id"].isin(counts[counts > 1].index)].groupby("Id")[SOURCE_ROW].min()
    split = [split_partition(p, first_rows) for p in parts]
    users = pd.concat([k for k, _ in split], ignore_index=True)
    ledger = pd.concat([r for _, r in split], ignore_index=True)
    assert len(users) + len(ledger) == len(rows)
    assert set(users[SOURCE_ROW]).isdisjoint(ledger[SOURCE_ROW])
    assert ledger["reason"].notna().all() and ledger["column"].notna().all()
    assert_valid(users)
    assert_matches_oracle(users, oracle(rows, id_type))


def _write_csv(path: Path, rows, sep: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow(REQUIRED)
        for row in rows:  # the Spanish dialect writes decimal commas; the reader turns them back
            writer.writerow(["" if c is None else (c.replace(".", ",") if sep == ";" else c) for c in row])
    return path


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=TABLES.filter(lambda rows: not any(c and "," in c for r in rows for c in r)),
       sep=st.sampled_from([",", ";"]), chunk_rows=st.integers(2, 5))
def test_csv_ingest_reconciles_and_agrees_with_the_oracle(rows, sep, chunk_rows):
    cfg = load_config(overrides={"ingest.chunk_rows": chunk_rows})
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_csv(Path(tmp) / "users.csv", rows, sep)
        catalog = Catalog(cfg, data_dir=str(Path(tmp) / "data"))
        manifest = ingest(path, cfg, catalog, month="2026-01")
        users = pd.read_parquet(catalog.users("2026-01"))
        ledger = pd.read_parquet(catalog.rejects("2026-01"))
    assert manifest["rows_in"] == len(rows) == manifest["rows_kept"] + manifest["rows_rejected"]
    assert (len(users), len(ledger)) == (manifest["rows_kept"], manifest["rows_rejected"])
    assert sorted([*users[SOURCE_ROW], *ledger[SOURCE_ROW]]) == list(range(2, 2 + len(rows)))
    assert ledger["reason"].notna().all() and ledger["column"].notna().all()
    assert manifest["id_type"] == id_type_of(rows)
    assert_valid(users)
    assert_matches_oracle(users, oracle(rows, manifest["id_type"]))
