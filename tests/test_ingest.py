"""Ingest end to end (in process, several part files): every input format of one table gives the
same users Parquet to the bit, idempotent re-ingest, --replace, column matching, reconciliation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter

from mailseg_dist.core.catalog import Catalog
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError, UsageError
from mailseg_dist.inputs import ingest as ingest_module
from mailseg_dist.inputs.ingest import ingest
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, ID, SOURCE_ROW

REPO = Path(__file__).resolve().parent.parent
MONTH = "2026-01"
HEADER = ["Id", "send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week", "Ciudad"]
SPANISH = ["Id", "Enviados", "Rebotes", "Aperturas", "Clics", "Total", "Comprador", "Hora", "Día de la semana",
           "Ciudad"]


def make_table(n: int = 40, seed: int = 7) -> list[list]:
    """Rows as typed cells (None = empty), values with 6 decimals like the seed, plus some junk."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        send = int(rng.integers(1, 12))
        opens, click = int(rng.integers(0, 3)), int(rng.integers(0, 2))
        rows.append([int(rng.integers(0, 2_200_000)), send, int(rng.integers(0, 2)), opens, click,
                     send + opens + click, int(rng.integers(0, 2)), round(float(rng.uniform(0, 23.9)), 6),
                     round(float(rng.uniform(0, 6.9)), 6), ["Málaga", "Sevilla", None][i % 3]])
    if n < 20:
        return rows
    rows[1][7] = 17.333333
    rows[2][8] = 3.5
    rows[4][1] = "ocho"             # text in a count
    rows[6] = [None] * 10           # blank row
    rows[9][0] = rows[3][0]         # duplicate Id: row 11 loses to row 5
    rows[12][6] = "sí"              # a Spanish yes
    rows[15][7] = 25.5              # hour out of range
    rows[18][3] = None              # blank optional count → 0
    return rows


def cfg_with(**ingest_keys) -> dict:
    overrides = {"ingest.chunk_rows": 7, **{f"ingest.{k}": v for k, v in ingest_keys.items()}}
    return load_config(overrides=overrides)


def write_xlsx(path: Path, rows, header=HEADER) -> Path:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Sheet1")
    sheet.write_row(0, 0, header)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if isinstance(value, str):
                sheet.write_string(r, c, value)
            elif value is not None:
                sheet.write_number(r, c, value)
    book.close()
    return path


def _cell(value, decimal=".") -> str:
    if value is None:
        return ""
    return str(value).replace(".", decimal) if isinstance(value, float) else str(value)


def write_csv(path: Path, rows, header=HEADER, sep=",", decimal=".", encoding="utf-8") -> Path:
    lines = [sep.join(header)] + [sep.join(_cell(v, decimal) for v in row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def write_text_parquet(path: Path, rows, header=HEADER) -> Path:
    columns = {h: pa.array([None if r[i] is None else _cell(r[i]) for r in rows], pa.string())
               for i, h in enumerate(header)}
    pq.write_table(pa.table(columns), path)
    return path


def run_ingest(path, tmp_path, name, cfg=None, **kwargs) -> tuple[dict, Catalog]:
    catalog = Catalog(cfg or cfg_with(), data_dir=str(tmp_path / f"data-{name}"))
    return ingest(path, cfg or cfg_with(), catalog, month=MONTH, **kwargs), catalog


def users_of(catalog) -> pd.DataFrame:
    return pd.read_parquet(catalog.users(MONTH))


def ledger_of(catalog) -> pd.DataFrame:
    return pd.read_parquet(catalog.rejects(MONTH))


def assert_same_bits(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    for column in left.columns:
        if left[column].dtype == np.float64:
            assert np.array_equal(left[column].to_numpy().view(np.uint64), right[column].to_numpy().view(np.uint64))


# ---------------------------------------------------------------- one table, every format


@pytest.fixture(scope="module")
def table_ingests(tmp_path_factory):
    """The same table as xlsx (both engines), comma CSV, Spanish CSV (cp1252) and text Parquet."""
    tmp = tmp_path_factory.mktemp("formats")
    rows = make_table()
    files = {
        "xlsx": (write_xlsx(tmp / "t.xlsx", rows), cfg_with()),
        "xlsx-openpyxl": (tmp / "t.xlsx", cfg_with(xlsx_engine="openpyxl")),
        "csv": (write_csv(tmp / "t.csv", rows), cfg_with()),
        "csv-es": (write_csv(tmp / "t-es.csv", rows, SPANISH, ";", ",", "cp1252"), cfg_with()),
        "csv-es-utf8": (write_csv(tmp / "t-es8.csv", rows, SPANISH, ";", ",", "utf-8-sig"), cfg_with()),
        "parquet-text": (write_text_parquet(tmp / "t.parquet", rows), cfg_with()),
    }
    return {name: run_ingest(path, tmp, name, cfg) for name, (path, cfg) in files.items()}


def test_every_format_gives_identical_users_to_the_bit(table_ingests):
    manifest, catalog = table_ingests["xlsx"]
    reference = users_of(catalog)
    assert reference.columns.tolist() == [*CLEAN_COLUMNS, SOURCE_ROW]
    assert len(list(catalog.users(MONTH).glob("part-*.parquet"))) == 6  # 40 rows / chunk_rows 7
    for name, (other_manifest, other_catalog) in table_ingests.items():
        users, ledger = users_of(other_catalog), ledger_of(other_catalog)
        if name == "parquet-text":  # Parquet has no header line: its source rows count from 1
            users[SOURCE_ROW] += 1
            ledger[SOURCE_ROW] += 1
            ledger["reason"] = ledger["reason"].str.replace("kept row 4", "kept row 5")
        assert_same_bits(users, reference)
        pd.testing.assert_frame_equal(ledger, ledger_of(catalog))
        for key in ("rows_in", "rows_kept", "rows_rejected", "rejects_by_reason", "id_type", "parts"):
            assert other_manifest[key] == manifest[key], (name, key)
    assert table_ingests["xlsx-openpyxl"][0]["options"]["engine"] == "openpyxl"
    assert table_ingests["csv-es"][0]["options"] == {"sep": ";", "decimal": ",", "encoding": "cp1252"}


def test_the_table_is_cleaned_as_the_rules_say(table_ingests):
    manifest, catalog = table_ingests["csv"]
    rows = make_table()
    users, ledger = users_of(catalog), ledger_of(catalog)
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (40, 36, 4)
    assert ledger[SOURCE_ROW].tolist() == [6, 8, 11, 17]
    assert ledger["reason"].tolist() == ["expected a whole number, found text", "blank row",
                                         "duplicate Id (kept row 5)", "expected a number in [0, 24)"]
    assert ledger["column"].tolist() == ["send", "*", "Id", "hour"]
    by_row = users.set_index(SOURCE_ROW)
    assert by_row.loc[3, "hour"] == 17.333333 and by_row.loc[4, "day_of_week"] == 3.5
    assert by_row.loc[14, "Comprador"] == 1 and by_row.loc[20, "open"] == 0
    assert by_row.loc[5, "Id"] == rows[3][0]
    expected = by_row["open"] + 2 * by_row["click"] + 3 * by_row["Comprador"]
    assert (by_row["engagement_score"] == expected).all()


def test_extra_columns_are_kept_in_the_raw_layer(table_ingests):
    for name in ("xlsx", "csv-es"):
        manifest, catalog = table_ingests[name]
        raw = pd.read_parquet(catalog.raw(MONTH))
        assert "ciudad" in raw.columns and "ciudad" not in users_of(catalog).columns
        assert raw["ciudad"].tolist()[:2] == ["Málaga", "Sevilla"] and pd.isna(raw["ciudad"].iloc[2])
        assert len(raw) == manifest["rows_in"] and raw[SOURCE_ROW].tolist() == list(range(2, 42))


def test_ids_and_source_rows_are_written_without_a_dictionary_in_both_layers(table_ingests):
    """One value a row: a dictionary would be tried and dropped on every part (storage.write_parquet)."""
    import pyarrow.parquet as pq

    for name in ("xlsx", "parquet-text"):
        _, catalog = table_ingests[name]
        for folder in (catalog.raw(MONTH), catalog.users(MONTH)):
            meta = pq.ParquetFile(sorted(folder.glob("part-*.parquet"))[0]).metadata.row_group(0)
            dictionary = {meta.column(i).path_in_schema for i in range(meta.num_columns)
                          if set(meta.column(i).encodings) & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}}
            assert ID not in dictionary and SOURCE_ROW not in dictionary and "send" in dictionary, (name, folder)


def test_typed_parquet_input_matches_csv(tmp_path):
    rows = [r for r in make_table() if all(isinstance(v, (int, float)) for v in r[:9])]
    frame = pd.DataFrame([r[:9] for r in rows], columns=HEADER[:9])
    frame.to_parquet(tmp_path / "typed.parquet", index=False)
    from_parquet = users_of(run_ingest(tmp_path / "typed.parquet", tmp_path, "pq")[1])
    from_csv = users_of(run_ingest(write_csv(tmp_path / "t.csv", rows), tmp_path, "csv")[1])
    # Parquet has no header line: its source rows count from 1, the CSV's from 2
    assert_same_bits(from_parquet.drop(columns=SOURCE_ROW), from_csv.drop(columns=SOURCE_ROW))
    assert (from_parquet[SOURCE_ROW] + 1).tolist() == from_csv[SOURCE_ROW].tolist()


def test_distributed_client_gives_the_same_result(tmp_path):
    from distributed import Client, LocalCluster

    rows = make_table()
    path = write_csv(tmp_path / "t.csv", rows)
    local = run_ingest(path, tmp_path, "local")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        remote = run_ingest(path, tmp_path, "remote", client=client)
        with pytest.raises(InputDataError, match="missing required column"):  # an input error crosses back intact
            run_ingest(write_csv(tmp_path / "bad.csv", [r[:5] for r in rows], HEADER[:5]), tmp_path, "bad",
                       client=client)
    assert_same_bits(users_of(remote[1]), users_of(local[1]))
    pd.testing.assert_frame_equal(ledger_of(remote[1]), ledger_of(local[1]))


@pytest.mark.parametrize("typed", [False, True], ids=["text-parquet", "typed-parquet"])
def test_parquet_row_groups_read_side_by_side_give_what_one_reader_gives(tmp_path, dask_client, typed):
    """A Parquet file of several row groups is read by several worker tasks (runs of row groups): the raw,
    users and rejects layers and the manifest's counts are those of one reader, source rows included."""
    rows = make_table()
    for row in rows[12:18]:  # a whole row group without a city: its chunk types that column as null
        row[9] = None
    if typed:
        rows = [r for r in rows if all(isinstance(v, (int, float)) for v in r[:9])]
        table = pa.Table.from_pandas(pd.DataFrame([r for r in rows], columns=HEADER), preserve_index=False)
        pq.write_table(table, tmp_path / "in.parquet", row_group_size=6)
    else:
        columns = {h: pa.array([None if r[i] is None else _cell(r[i]) for r in rows], pa.string())
                   for i, h in enumerate(HEADER)}
        pq.write_table(pa.table(columns), tmp_path / "in.parquet", row_group_size=6)
    one, one_catalog = run_ingest(tmp_path / "in.parquet", tmp_path, "one")
    many, many_catalog = run_ingest(tmp_path / "in.parquet", tmp_path, "many", client=dask_client)
    names = sorted(p.name for p in many_catalog.raw(MONTH).iterdir())
    assert len({name.split("-")[1] for name in names}) == 4  # 2 workers × 2 runs of row groups
    read = lambda catalog: pd.read_parquet(catalog.raw(MONTH)).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(read(many_catalog), read(one_catalog))
    assert read(many_catalog)[SOURCE_ROW].tolist() == list(range(1, len(rows) + 1))
    assert_same_bits(users_of(many_catalog), users_of(one_catalog))
    pd.testing.assert_frame_equal(ledger_of(many_catalog), ledger_of(one_catalog))
    keys = ["rows_in", "rows_kept", "rows_rejected", "rejects_by_reason", "id_type", "columns", "format"]
    assert {k: many[k] for k in keys} == {k: one[k] for k in keys} and many["rows_in"] == len(rows)
    assert many["parts"] == len(names)


def test_parquet_of_empty_row_groups_read_side_by_side_is_a_header_only_month(tmp_path, dask_client):
    schema = pa.schema([(h, pa.string()) for h in HEADER])
    with pq.ParquetWriter(tmp_path / "empty.parquet", schema) as writer:
        for _ in range(3):
            writer.write_table(pa.table({h: pa.array([], pa.string()) for h in HEADER}))
    assert pq.ParquetFile(tmp_path / "empty.parquet").metadata.num_row_groups == 3
    manifest, catalog = run_ingest(tmp_path / "empty.parquet", tmp_path, "empty", client=dask_client)
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (0, 0, 0)
    assert [p.name for p in catalog.raw(MONTH).iterdir()] == ["part-00000.parquet"]


# ---------------------------------------------------------------- idempotency and replace


def _snapshot(catalog) -> dict:
    files = [catalog.manifest(MONTH), *sorted(catalog.users(MONTH).iterdir()), *sorted(catalog.raw(MONTH).iterdir())]
    return {str(f): (f.stat().st_mtime_ns, f.read_bytes()) for f in files}


def test_same_content_is_skipped_and_changed_content_needs_replace(tmp_path):
    rows = make_table()
    path = write_csv(tmp_path / "t.csv", rows)
    first, catalog = run_ingest(path, tmp_path, "idem")
    assert first["skipped"] is False
    before = _snapshot(catalog)
    again = ingest(path, cfg_with(), catalog, month=MONTH)
    copy = tmp_path / "copy-elsewhere.csv"
    shutil.copy(path, copy)
    again_copy = ingest(copy, cfg_with(), catalog, month=MONTH)
    assert again["skipped"] is True and again_copy["skipped"] is True
    assert again["sha256"] == first["sha256"] and again["rows_kept"] == first["rows_kept"]
    assert _snapshot(catalog) == before  # nothing rewritten

    rows[0][1] = 99
    changed = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(UsageError, match="already ingested from other content.*--replace"):
        ingest(changed, cfg_with(), catalog, month=MONTH)
    assert _snapshot(catalog) == before
    replaced = ingest(changed, cfg_with(), catalog, month=MONTH, replace=True)
    assert replaced["skipped"] is False and replaced["sha256"] != first["sha256"]
    assert json.loads(catalog.manifest(MONTH).read_text())["sha256"] == replaced["sha256"]
    assert users_of(catalog).set_index(SOURCE_ROW).loc[2, "send"] == 99
    assert not list(catalog.users(MONTH).parent.glob(".*tmpdir"))


def test_same_file_with_other_options_is_not_skipped(tmp_path):
    """Another sheet, or other cleaning rules, would give other rows: that needs --replace, not a skip."""
    path = tmp_path / "two.xlsx"
    book = xlsxwriter.Workbook(str(path))
    for name, rows in (("Enero", make_table(9)), ("Febrero", make_table(4, seed=1))):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, HEADER)
        for r, row in enumerate(rows, start=1):
            sheet.write_row(r, 0, [v for v in row])
    book.close()
    first, catalog = run_ingest(path, tmp_path, "opts")
    assert first["rows_in"] == 9 and first["request"]["sheet"] is None
    assert ingest(path, cfg_with(), catalog, month=MONTH)["skipped"] is True
    with pytest.raises(UsageError, match="already ingested from this content with other sheet settings"):
        ingest(path, cfg_with(), catalog, month=MONTH, sheet="Febrero")
    strict = load_config(overrides={"ingest.chunk_rows": 7, "cleaning.null_counts": "reject"})
    with pytest.raises(UsageError, match="with other cleaning settings; pass --replace"):
        ingest(path, strict, catalog, month=MONTH)
    february = ingest(path, cfg_with(), catalog, month=MONTH, sheet="Febrero", replace=True)
    assert february["rows_in"] == 4 and len(users_of(catalog)) == 4
    assert ingest(path, cfg_with(), catalog, month=MONTH, sheet="Febrero")["skipped"] is True


def test_failed_replace_keeps_the_previous_users_and_manifest(tmp_path, monkeypatch):
    rows = make_table()
    path = write_csv(tmp_path / "t.csv", rows)
    first, catalog = run_ingest(path, tmp_path, "crash")
    users_before = users_of(catalog)
    manifest_before = catalog.manifest(MONTH).read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("worker died")
    monkeypatch.setattr(ingest_module, "_write_clean_part", broken)
    rows[0][1] = 99
    with pytest.raises(RuntimeError, match="worker died"):
        ingest(write_csv(path, rows), cfg_with(), catalog, month=MONTH, replace=True)
    pd.testing.assert_frame_equal(users_of(catalog), users_before)
    assert catalog.manifest(MONTH).read_bytes() == manifest_before
    assert not list(catalog.users(MONTH).parent.glob(".*tmpdir"))


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
def test_cli_changed_content_exits_2_unless_replace(tmp_path, scheduler):
    rows = make_table(12)
    path = write_csv(tmp_path / "t.csv", rows)
    first, _ = run_ingest(path, tmp_path, "cli")
    rows[0][1] = 99
    write_csv(path, rows)

    def cli(*extra):
        return subprocess.run(["mailseg", "ingest", str(path), "--data-dir", str(tmp_path / "data-cli"),
                               "--month", MONTH, "--json", "--scheduler", scheduler, *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    refused = cli()
    assert refused.returncode == 2, refused.stderr
    assert "pass --replace" in refused.stderr.splitlines()[-1] and "Traceback" not in refused.stderr
    replaced = cli("--replace")
    assert replaced.returncode == 0, replaced.stderr
    manifest = json.loads(replaced.stdout.splitlines()[-1])
    assert manifest["skipped"] is False and manifest["sha256"] != first["sha256"]
    again = cli()
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["skipped"] is True


# ---------------------------------------------------------------- columns, ids, edge tables


def test_headers_are_matched_loosely(tmp_path):
    header = [" ID ", "SEND", "Rebotes", " Open ", "clicks", "total", "buyer", "Hora", "weekday", "Notas",
              "dia_semana"]
    rows = [[1, 2, 0, 1, 0, 3, 1, 17.5, 2.0, "n", 9], [2, 1, 0, 0, 0, 1, 0, 8.25, 6.5, "m", 9]]
    manifest, catalog = run_ingest(write_csv(tmp_path / "h.csv", rows, header), tmp_path, "h")
    assert manifest["columns"] == {" ID ": "Id", "SEND": "send", "Rebotes": "bounce", " Open ": "open",
                                   "clicks": "click", "total": "Total", "buyer": "Comprador", "Hora": "hour",
                                   "weekday": "day_of_week", "Notas": "notas", "dia_semana": "dia_semana"}
    users = users_of(catalog)
    assert users["day_of_week"].tolist() == [2.0, 6.5]  # the first matching header wins, the later one is extra
    assert pd.read_parquet(catalog.raw(MONTH))["dia_semana"].tolist() == ["9", "9"]


def test_missing_required_column_writes_nothing(tmp_path):
    path = write_csv(tmp_path / "m.csv", [[1, 2]], ["Id", "send"])
    catalog = Catalog(cfg_with(), data_dir=str(tmp_path / "data"))
    with pytest.raises(InputDataError) as err:
        ingest(path, cfg_with(), catalog, month=MONTH)
    assert "missing required column(s) bounce, open, click, Total, Comprador, hour, day_of_week" in str(err.value)
    assert "found: Id, send" in str(err.value)
    assert not catalog.manifest(MONTH).exists() and not catalog.users(MONTH).exists()
    assert not catalog.raw(MONTH).exists()


def test_header_only_is_an_empty_readable_month(tmp_path):
    for name, writer in (("csv", write_csv), ("xlsx", write_xlsx), ("pq", write_text_parquet)):
        manifest, catalog = run_ingest(writer(tmp_path / f"h.{name}", []), tmp_path, name)
        assert (manifest["rows_in"], manifest["rows_kept"], manifest["rows_rejected"]) == (0, 0, 0)
        users = dd.read_parquet(str(catalog.users(MONTH))).compute()
        assert len(users) == 0 and users["send"].dtype == np.int64 and users["hour"].dtype == np.float64


def test_ids_keep_their_exact_value(tmp_path):
    big = 2**53 + 1
    frame = pd.DataFrame({"Id": [big, 2**60], "send": [1, 2], "bounce": [0, 0], "open": [0, 0], "click": [0, 0],
                          "Total": [1, 2], "Comprador": [0, 1], "hour": [1.0, 2.0], "day_of_week": [0.0, 1.0]})
    frame.to_parquet(tmp_path / "big.parquet", index=False)
    manifest, catalog = run_ingest(tmp_path / "big.parquet", tmp_path, "pq")
    assert manifest["id_type"] == "int" and users_of(catalog)["Id"].tolist() == [big, 2**60]
    rows = frame.astype(object).values.tolist()
    manifest, catalog = run_ingest(write_csv(tmp_path / "big.csv", rows, HEADER[:9]), tmp_path, "csv")
    assert manifest["id_type"] == "string"  # text beyond 2**53: kept as text rather than rounded
    assert users_of(catalog)["Id"].tolist() == [str(big), str(2**60)]


def test_blank_id_does_not_turn_ids_into_text(tmp_path):
    rows = [r[:9] for r in make_table(5)]
    rows[2][0] = "   "
    manifest, catalog = run_ingest(write_csv(tmp_path / "b.csv", rows, HEADER[:9]), tmp_path, "b")
    assert manifest["id_type"] == "int" and users_of(catalog)["Id"].dtype == np.int64
    assert ledger_of(catalog)["reason"].tolist() == ["missing Id"]


def test_month_is_checked_before_anything_is_written(tmp_path):
    path = write_csv(tmp_path / "t.csv", make_table(3))
    catalog = Catalog(cfg_with(), data_dir=str(tmp_path / "data"))
    for month in ("../x", "2026-13", "2026-1", ".."):
        with pytest.raises(UsageError, match="month expected YYYY-MM"):
            ingest(path, cfg_with(), catalog, month=month)
    assert not (tmp_path / "data").exists()
    manifest = ingest(path, load_config(overrides={"ingest.month": "2025-12"}), catalog)
    assert manifest["month"] == "2025-12" and catalog.users("2025-12").exists()


def test_reject_ledger_schema(table_ingests):
    ledger = ledger_of(table_ingests["xlsx"][1])
    assert ledger.columns.tolist() == ["source_row", "Id_raw", "column", "value", "reason"]
    assert ledger["source_row"].dtype == np.int64
    assert ledger["reason"].notna().all() and ledger["column"].notna().all()
    assert os.path.basename(table_ingests["xlsx"][0]["rejects_path"]) == f"month={MONTH}"
