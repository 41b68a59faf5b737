"""Cleaning rules per cell (coerce_partition), the split into users + ledger, and the Dask pass
(clean_layer) over a multi-part raw layer with an empty part, checked against pandas."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from mailseg_dist.core.config import load_config
from mailseg_dist.inputs.clean import REJECT_COLUMNS, coerce_partition, split_partition
from mailseg_dist.inputs.ingest import clean_layer
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, REQUIRED, SOURCE_ROW

CCFG = load_config()["cleaning"]
GOOD = ["7", "4", "0", "1", "0", "5", "1", "17.333333", "2.5"]


def raw_frame(rows: list[list], first_row: int = 2, extra: bool = False) -> pd.DataFrame:
    """Rows of text cells (None = empty) as a reader yields them."""
    frame = pd.DataFrame(rows, columns=REQUIRED, dtype=object)
    frame = frame.astype(object).where(frame.notna(), None)
    if extra:
        frame["ciudad"] = "Madrid"
    frame[SOURCE_ROW] = range(first_row, first_row + len(frame))
    return frame


def row_with(**cells) -> list:
    row = list(GOOD)
    for name, value in cells.items():
        row[REQUIRED.index(name)] = value
    return row


def coerce_one(id_type="int", ccfg=CCFG, **cells) -> pd.Series:
    return coerce_partition(raw_frame([row_with(**cells)]), id_type, ccfg).iloc[0]


# ---------------------------------------------------------------- one cell at a time


def test_valid_row_is_typed():
    out = coerce_partition(raw_frame([GOOD], extra=True), "int", CCFG)
    assert out.columns.tolist() == [*CLEAN_COLUMNS, SOURCE_ROW, "Id_raw", "_column", "_reason", "_value"]
    row = out.iloc[0]
    assert row["_reason"] is None and row["_column"] is None
    assert [row[c] for c in ["Id", "send", "bounce", "open", "click", "Total", "Comprador"]] == [7, 4, 0, 1, 0, 5, 1]
    assert row["hour"] == 17.333333 and row["day_of_week"] == 2.5
    assert row["engagement_score"] == 1 + 2 * 0 + 3 * 1
    assert out.dtypes[["Id", "send", "Comprador", SOURCE_ROW]].tolist() == [np.int64] * 4
    assert out.dtypes[["hour", "day_of_week", "engagement_score"]].tolist() == [np.float64] * 3


@pytest.mark.parametrize("column, value, reason", [
    ("send", "ocho", "expected a whole number, found text"),
    ("send", "#N/A", "expected a whole number, found text"),
    ("send", "NaN", "expected a whole number, found text"),
    ("send", "2026-01-05 00:00:00", "expected a whole number, found text"),
    ("send", None, "missing value"),
    ("Total", "   ", "missing value"),
    ("open", "-1", "negative count"),
    ("click", "2.5", "count is not a whole number"),
    ("bounce", "inf", "not a finite number"),
    ("Total", "1e400", "not a finite number"),
    ("send", "1000001", "count above 1000000"),
    ("Comprador", "2", "expected 0 or 1"),
    ("Comprador", "quizá", "expected 0 or 1"),
    ("Comprador", None, "expected 0 or 1"),
    ("hour", "24", "expected a number in [0, 24)"),
    ("hour", "-0.1", "expected a number in [0, 24)"),
    ("hour", "17:30", "expected a number in [0, 24)"),
    ("hour", None, "expected a number in [0, 24)"),
    ("day_of_week", "7", "expected a number in [0, 7) or a weekday name"),
    ("day_of_week", "funday", "expected a number in [0, 7) or a weekday name"),
    ("Id", None, "missing Id"),
    ("Id", "  ", "missing Id"),
    ("Id", "2.5", "expected an integer Id"),
    ("Id", "9007199254740993", "expected an integer Id"),  # beyond 2**53 a float would merge Ids
])
def test_each_rule_rejects_with_its_reason(column, value, reason):
    row = coerce_one(**{column: value})
    assert row["_column"] == column and row["_reason"] == reason
    assert row["_value"] == (None if value is None else value)  # the cell as found, for the ledger


@pytest.mark.parametrize("column, value, expected", [
    ("send", " 4 ", 4), ("send", "4.0", 4), ("send", "1e3", 1000), ("send", "+4", 4), ("send", "1000000", 1000000),
    ("Comprador", "sí", 1), ("Comprador", "SI", 1), ("Comprador", "yes", 1), ("Comprador", "True", 1),
    ("Comprador", "1.0", 1), ("Comprador", "no", 0), ("Comprador", "False", 0), ("Comprador", "0", 0),
    ("day_of_week", "Lunes", 0.0), ("day_of_week", "sunday", 6.0), ("day_of_week", "Miércoles", 2.0),
    ("day_of_week", "6.999", 6.999), ("hour", "0", 0.0), ("hour", "23.99", 23.99),
])
def test_accepted_spellings(column, value, expected):
    row = coerce_one(**{column: value})
    assert row["_reason"] is None and row[column] == expected


def test_blank_optional_counts_follow_null_counts():
    row = coerce_one(bounce=None, open="", click=" ")
    assert row["_reason"] is None and (row["bounce"], row["open"], row["click"]) == (0, 0, 0)
    strict = {**CCFG, "null_counts": "reject"}
    row = coerce_one(ccfg=strict, bounce=None, open="")
    assert row["_column"] == "bounce;open" and row["_reason"] == "missing value;missing value"


def test_max_count_and_engagement_weights_come_from_config():
    ccfg = {**CCFG, "max_count": 10, "engagement_weights": {"open": 0.5, "click": 4.0, "Comprador": 1.0}}
    assert coerce_one(ccfg=ccfg, send="11")["_reason"] == "count above 10"
    row = coerce_one(ccfg=ccfg, open="2", click="3", Comprador="1")
    assert row["engagement_score"] == 0.5 * 2 + 4.0 * 3 + 1.0


def test_blank_row_has_one_reason_and_several_problems_are_all_listed():
    out = coerce_partition(raw_frame([[None] * 9, row_with(send="x", hour="25", Comprador="2")]), "int", CCFG)
    assert (out["_column"].iloc[0], out["_reason"].iloc[0]) == ("*", "blank row")
    assert out["_column"].iloc[1] == "send;Comprador;hour"
    assert out["_reason"].iloc[1] == "expected a whole number, found text;expected 0 or 1;expected a number in [0, 24)"
    assert out["_value"].iloc[1] == "x;2;25"


def test_string_ids_are_kept_as_text():
    out = coerce_partition(raw_frame([row_with(Id="=1+1"), row_with(Id=" A-7 "), row_with(Id=None)]), "string", CCFG)
    assert out["Id"].dtype == "string"
    assert out["Id"].iloc[:2].tolist() == ["=1+1", "A-7"]
    assert out["_reason"].tolist() == [None, None, "missing Id"]


def test_typed_numeric_input():
    frame = pd.DataFrame({"Id": np.array([2**60, 5], dtype="int64"), "send": [4, 2], "bounce": [0.0, np.nan],
                          "open": [1, 0], "click": [0, 0], "Total": [5, 2], "Comprador": ["True", "0"],
                          "hour": [17.5, np.inf], "day_of_week": [2.0, 1.0], SOURCE_ROW: [1, 2]})
    out = coerce_partition(frame, "int", CCFG)
    assert out["Id"].tolist() == [2**60, 5]  # typed int64 Ids are exact, whatever the size
    assert out["_reason"].tolist() == [None, "expected a number in [0, 24)"]
    assert out["bounce"].tolist() == [0, 0]


def test_empty_partition_keeps_types():
    out = coerce_partition(raw_frame([]), "int", CCFG)
    kept, ledger = split_partition(out, pd.Series(dtype="int64"))
    assert len(kept) == len(ledger) == 0
    assert kept.dtypes[["Id", "send", "hour"]].tolist() == [np.int64, np.int64, np.float64]
    assert ledger.columns.tolist() == REJECT_COLUMNS


# ---------------------------------------------------------------- split and duplicates


def test_split_partition_duplicates_lose_to_the_lowest_source_row():
    frame = raw_frame([row_with(Id="5"), row_with(Id="6"), row_with(Id="5", send="x"), row_with(Id="5")],
                      first_row=10)
    coerced = coerce_partition(frame, "int", CCFG)
    first_rows = pd.Series({5: 3})  # Id 5 was first seen (valid) on row 3, in another partition
    kept, ledger = split_partition(coerced, first_rows)
    assert kept["source_row"].tolist() == [11]
    assert ledger["source_row"].tolist() == [10, 12, 13]
    assert ledger["reason"].tolist() == ["duplicate Id (kept row 3)", "expected a whole number, found text",
                                         "duplicate Id (kept row 3)"]
    assert ledger["column"].tolist() == ["Id", "send", "Id"] and ledger["value"].tolist()[0] == "5"
    assert ledger.dtypes.astype(str).tolist() == ["int64", "string", "string", "string", "string"]


# ---------------------------------------------------------------- the Dask pass, checked against pandas


def write_raw_layer(folder, parts: list[pd.DataFrame]):
    folder.mkdir(parents=True)
    for i, part in enumerate(parts):
        part.astype({c: "string" for c in part.columns if c != SOURCE_ROW}).to_parquet(
            folder / f"part-{i:05d}.parquet", index=False)
    return folder


def pandas_reference(parts: list[pd.DataFrame], id_type: str, ccfg: dict):
    """The same rules on the whole table at once, duplicates resolved by plain pandas."""
    whole = pd.concat(parts, ignore_index=True)
    coerced = coerce_partition(whole, id_type, ccfg)
    valid = coerced[coerced["_reason"].isna()]
    counts = valid["Id"].value_counts()
    repeated = valid[valid["Id"].isin(counts[counts > 1].index)]
    first_rows = repeated.groupby("Id")[SOURCE_ROW].min()
    kept, ledger = split_partition(coerced, first_rows)
    return kept.sort_values(SOURCE_ROW, ignore_index=True), ledger.sort_values(SOURCE_ROW, ignore_index=True)


def mixed_parts():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        row = [str(1000 + i), str(rng.integers(1, 9)), "0", str(rng.integers(0, 3)), "0", "9", str(i % 2),
               f"{rng.uniform(0, 24):.6f}", f"{rng.uniform(0, 7):.6f}"]
        rows.append(row)
    rows[3][1] = "ocho"
    rows[7] = [None] * 9
    rows[12][0] = "1002"    # duplicate of row index 2 (lower source row: kept there)
    rows[30][0] = "1005"    # duplicate across parts
    rows[33][8] = "7"
    frame = raw_frame(rows, extra=True)
    # part order deliberately not source-row order: the rule must follow source rows, not parts
    return [frame.iloc[20:30], frame.iloc[0:0], frame.iloc[0:13], frame.iloc[13:20], frame.iloc[30:]]


@pytest.mark.parametrize("use_client", [False, True], ids=["default-scheduler", "distributed"])
def test_clean_layer_matches_pandas(tmp_path, use_client, request):
    parts = mixed_parts()
    raw = write_raw_layer(tmp_path / "raw", parts)
    users, rejects = tmp_path / "users", tmp_path / "rejects"
    if use_client:
        request.getfixturevalue("dask_client")
    counts = clean_layer(raw, users, rejects, "int", CCFG)
    kept = pd.read_parquet(users).sort_values(SOURCE_ROW, ignore_index=True)
    ledger = pd.read_parquet(rejects).sort_values(SOURCE_ROW, ignore_index=True)
    ref_kept, ref_ledger = pandas_reference(parts, "int", CCFG)
    pd.testing.assert_frame_equal(kept, ref_kept, check_exact=True)
    pd.testing.assert_frame_equal(ledger, ref_ledger, check_exact=True)
    assert counts["rows_kept"] + counts["rows_rejected"] == 40
    assert counts["rows_rejected"] == 5 and set(ledger[SOURCE_ROW]) == {5, 9, 14, 32, 35}
    assert ledger.set_index(SOURCE_ROW)["reason"].to_dict()[32] == "duplicate Id (kept row 7)"
    assert counts["rejects_by_reason"]["duplicate Id"] == 2
    # Ids 1005..1039 of the last part meet every other part's range; two parts hold a later copy
    assert counts["duplicate_scan"] == {"parts": 5, "parts_compared": 4, "parts_cleaned_again": 2}
    assert len(list(users.glob("part-*.parquet"))) == len(parts)  # one users part per raw part, empty included
    assert not list(tmp_path.glob(".*tmpdir"))


@pytest.mark.parametrize("id_type", ["int", "string"])
def test_parts_in_id_order_are_not_compared_and_only_parts_with_a_later_copy_are_cleaned_again(tmp_path, id_type):
    """Ids increasing across parts (a file exported by Id): no cross-part read; a repeat inside one part
    and a rejected row that repeats a valid Id (never a duplicate) are still resolved as pandas does."""
    rows = [row_with(Id=str(100 + i)) for i in range(12)]
    rows[4][0] = "102"                       # later copy inside part 0 (rows 2..7)
    rows[9] = row_with(Id="101", send="x")   # invalid row with a valid Id of another part: not a duplicate
    parts = [raw_frame(rows[:6]), raw_frame([], first_row=8), raw_frame(rows[6:], first_row=8)]
    if id_type == "string":
        parts = [p.assign(Id=p["Id"].map(lambda v: f"u{v}" if v is not None else v)) for p in parts]
    raw = write_raw_layer(tmp_path / "raw", parts)
    counts = clean_layer(raw, tmp_path / "u", tmp_path / "r", id_type, CCFG)
    kept = pd.read_parquet(tmp_path / "u").sort_values(SOURCE_ROW, ignore_index=True)
    ledger = pd.read_parquet(tmp_path / "r").sort_values(SOURCE_ROW, ignore_index=True)
    ref_kept, ref_ledger = pandas_reference(parts, id_type, CCFG)
    pd.testing.assert_frame_equal(kept, ref_kept, check_exact=True)
    pd.testing.assert_frame_equal(ledger, ref_ledger, check_exact=True)
    assert counts["duplicate_scan"] == {"parts": 3, "parts_compared": 0, "parts_cleaned_again": 1}
    assert ledger["reason"].tolist() == ["duplicate Id (kept row 4)", "expected a whole number, found text"]
    assert ledger["Id_raw"].tolist() == [parts[0]["Id"].iloc[4], parts[2]["Id"].iloc[3]]


def test_clean_layer_string_ids_and_all_rejected(tmp_path):
    rows = [row_with(Id="=1+1"), row_with(Id="a"), row_with(Id="a"), row_with(Id="b", send="-3")]
    parts = [raw_frame(rows[:2]), raw_frame([]), raw_frame(rows[2:], first_row=4)]
    raw = write_raw_layer(tmp_path / "raw", parts)
    counts = clean_layer(raw, tmp_path / "u", tmp_path / "r", "string", CCFG)
    kept = pd.read_parquet(tmp_path / "u").sort_values(SOURCE_ROW)
    assert kept["Id"].tolist() == ["=1+1", "a"] and (counts["rows_kept"], counts["rows_rejected"]) == (2, 2)
    bad = [raw_frame([[None] * 9]), raw_frame([row_with(hour="99")], first_row=3)]
    counts = clean_layer(write_raw_layer(tmp_path / "raw2", bad), tmp_path / "u2", tmp_path / "r2", "int", CCFG)
    assert (counts["rows_kept"], counts["rows_rejected"]) == (0, 2)
    assert pd.read_parquet(tmp_path / "u2").dtypes["Id"] == np.int64


def test_clean_layer_replaces_a_previous_version(tmp_path):
    raw = write_raw_layer(tmp_path / "raw", [raw_frame([GOOD])])
    clean_layer(raw, tmp_path / "u", tmp_path / "r", "int", CCFG)
    (tmp_path / "u" / "part-00099.parquet").write_bytes(b"stale")
    clean_layer(raw, tmp_path / "u", tmp_path / "r", "int", CCFG)
    assert [p.name for p in (tmp_path / "u").iterdir()] == ["part-00000.parquet"]


def test_config_dict_is_not_mutated(tmp_path):
    ccfg = copy.deepcopy(CCFG)
    raw = write_raw_layer(tmp_path / "raw", mixed_parts())
    clean_layer(raw, tmp_path / "u", tmp_path / "r", "int", ccfg)
    assert ccfg == CCFG


@pytest.mark.parametrize("null_counts", ["zero", "reject"])
def test_vectorised_and_per_value_paths_clean_alike(null_counts):
    """Typed columns (Parquet), all-text columns (CSV) and mixed columns (text beside numbers: the per-value
    path) give the same clean rows and the same ledger text for the same cells."""
    rng = np.random.default_rng(7)
    n = 400
    typed = pd.DataFrame({"Id": np.arange(1, n + 1), **{c: rng.integers(0, 9, n) for c in
                                                         ["send", "bounce", "open", "click", "Total"]},
                          "Comprador": rng.integers(0, 2, n), "hour": rng.uniform(0, 24, n).round(2),
                          "day_of_week": rng.integers(0, 7, n).astype(float), SOURCE_ROW: np.arange(2, n + 2)})
    words = {"Comprador": ["sí", "no", "yes", "maybe"], "day_of_week": ["lunes", "Sunday", "someday"],
             "open": ["", " ", "x"], "Id": ["", "12.5"]}
    text = typed.astype(str).astype(object)
    text[SOURCE_ROW] = typed[SOURCE_ROW]
    altered = np.zeros(n, dtype=bool)
    for column, choices in words.items():  # some cells become words or blanks, in text form only
        rows = rng.choice(n, size=40, replace=False)
        text.loc[rows, column] = rng.choice(choices, size=len(rows))
        altered[rows] = True
    mixed = text.copy()
    for column in ["send", "hour", "Comprador", "Id"]:  # numbers beside text: the per-value path
        numeric = pd.to_numeric(mixed[column], errors="coerce")
        mixed[column] = [v if pd.isna(x) else (int(x) if float(x).is_integer() else float(x))
                         for v, x in zip(mixed[column], numeric)]
    ccfg = {**CCFG, "null_counts": null_counts}
    clean_typed = coerce_partition(typed, "int", ccfg)
    clean_text, clean_mixed = coerce_partition(text, "int", ccfg), coerce_partition(mixed, "int", ccfg)
    assert clean_typed["_reason"].isna().all() and 0 < clean_text["_reason"].notna().sum() < altered.sum()
    pd.testing.assert_frame_equal(clean_text[~altered], clean_typed[~altered], check_dtype=False)
    pd.testing.assert_frame_equal(clean_mixed[CLEAN_COLUMNS + ["_column", "_reason"]],
                                  clean_text[CLEAN_COLUMNS + ["_column", "_reason"]])
    assert clean_text["Id_raw"].fillna("").tolist() == text["Id"].tolist()  # as written, blank for a blank
