"""A corpus of named malformed inputs, each run through the real `mailseg ingest` CLI.

Every case ends one of two ways:
- exit 3 (2 for a usage error) with one `mailseg: error:` line on stderr that names the
  file and says what was expected, and no traceback;
- exit 0 with the rows reconciled (rows_in = kept + rejected), exactly the listed source
  rows in the rejects ledger with the expected column and reason, and every kept row valid.

Decisions documented here: a header-only file is a valid empty month (exit 0, rows_in 0);
a CSV row with more fields than the header stops the ingest (exit 3: the columns can no
longer be trusted), a row with fewer fields is rejected row by row; Excel error values
(#N/A) are rejected as text with either xlsx engine; a formula-looking Id ("=1+1") is kept
and makes the table's Ids text.

Speed: the cases connect to one shared in-process scheduler (`--scheduler`) and run two at
a time; two further tests use the CLI's default LocalCluster exactly as a user would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xlsxwriter

REPO = Path(__file__).resolve().parent.parent
MONTH = "2026-01"
HEADER = ["Id", "send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week"]
GOOD = [  # sample rows of the seed notebook plus two more; source rows 2..6
    [2044163, 4, 0, 0, 0, 4, 0, 17.0, 3.5],
    [1004992, 8, 0, 1, 0, 10, 1, 18.222222, 2.0],
    [65824, 9, 0, 9, 1, 19, 1, 14.105263, 2.052632],
    [11, 1, 1, 0, 0, 2, 0, 20.5, 6.0],
    [12, 3, 0, 1, 1, 5, 1, 0.0, 0.0],
]


# ---------------------------------------------------------------- file builders


def _text(value) -> str:
    return "" if value is None else str(value)


def csv_file(rows=None, header=HEADER, sep=",", encoding="utf-8", tail="") -> callable:
    rows = GOOD if rows is None else rows

    def build(path: Path) -> Path:
        lines = [sep.join(header)] + [sep.join(_text(v) for v in row) for row in rows]
        path.write_bytes(("\n".join(lines) + "\n" + tail).encode(encoding))
        return path
    return build


def with_cell(row: int, column: str, value, rows=None) -> list:
    """GOOD with one cell replaced (row is 0-based: source row = row + 2)."""
    rows = [list(r) for r in (GOOD if rows is None else rows)]
    rows[row][HEADER.index(column)] = value
    return rows


def xlsx_file(sheets: dict | None = None, cells: dict | None = None) -> callable:
    """Workbook with `sheets` (name → rows); `cells` writes special cells on the first sheet."""
    sheets = sheets or {"Sheet1": GOOD}

    def build(path: Path) -> Path:
        book = xlsxwriter.Workbook(str(path))
        date_format = book.add_format({"num_format": "yyyy-mm-dd"})
        for index, (name, rows) in enumerate(sheets.items()):
            sheet = book.add_worksheet(name)
            sheet.write_row(0, 0, HEADER)
            for r, row in enumerate(rows, start=1):
                for c, value in enumerate(row):
                    if isinstance(value, str):
                        sheet.write_string(r, c, value)  # never let xlsxwriter turn "=1+1" into a formula
                    elif value is not None:
                        sheet.write_number(r, c, value)
            for (r, column), value in ((cells or {}).items() if index == 0 else []):
                c = HEADER.index(column)
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(r, c, value, date_format)
                else:  # an Excel error: a formula whose cached value is the error
                    sheet.write_formula(r, c, value[0], None, value[1])
        book.close()
        return path
    return build


def raw_bytes(data: bytes) -> callable:
    def build(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return build


def zip_bomb(path: Path) -> Path:
    """An .xlsx-named zip whose one sheet entry is 100 MB of zeros (file ~100 KB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("xl/worksheets/sheet1.xml", "w") as entry:
            block = b"\0" * (1 << 20)
            for _ in range(100):
                entry.write(block)
    return path


def directory(path: Path) -> Path:
    path.mkdir()
    return path


def nothing(path: Path) -> Path:
    return path  # never created


# ---------------------------------------------------------------- the corpus


@dataclass
class Case:
    name: str
    suffix: str
    build: callable
    exit: int = 0
    says: tuple = ()                  # error cases: substrings of the stderr error line
    rows_in: int | None = None        # ok cases
    rejects: dict = field(default_factory=dict)  # source_row → (column, reason substring)
    args: tuple = ()
    check: callable | None = None     # extra check on (manifest, users)


def _users_have(column, values):
    def check(manifest, users):
        assert sorted(users[column].tolist()) == sorted(values)
    return check


def _string_ids(manifest, users):
    assert manifest["id_type"] == "string"
    assert "=1+1" in users["Id"].tolist() and "2044163" in users["Id"].tolist()


def _integer_ids(manifest, users):
    assert manifest["id_type"] == "int" and users["Id"].dtype == np.int64  # one blank Id makes no text Ids


ERR = 3
CASES = [
    Case("missing_column", ".csv", csv_file([r[:7] + r[8:] for r in GOOD], HEADER[:7] + HEADER[8:]), ERR,
         ("missing required column(s) hour;", "found: Id, send, bounce, open, click, Total, Comprador, day_of_week")),
    Case("wrong_sheet", ".xlsx", xlsx_file(), ERR, ("no sheet named 'nope'", "sheets found: Sheet1"),
         args=("--sheet", "nope")),
    Case("text_in_counts", ".csv", csv_file(with_cell(1, "send", "ocho")), rows_in=5,
         rejects={3: ("send", "expected a whole number, found text")}),
    Case("negative_numbers", ".csv", csv_file(with_cell(2, "bounce", -1)), rows_in=5,
         rejects={4: ("bounce", "negative count")}),
    Case("blank_rows", ".csv", csv_file(GOOD[:2] + [[None] * 9] + GOOD[2:], tail="\n"), rows_in=7,
         rejects={4: ("*", "blank row"), 8: ("*", "blank row")}),
    Case("duplicate_ids_first_kept", ".csv", csv_file(GOOD + [with_cell(0, "send", 7)[0]]), rows_in=6,
         rejects={7: ("Id", "duplicate Id (kept row 2)")}, check=_users_have("send", [4, 8, 9, 1, 3])),
    Case("hour_out_of_range", ".csv", csv_file(with_cell(3, "hour", 24, with_cell(4, "hour", -0.5))), rows_in=5,
         rejects={5: ("hour", "[0, 24)"), 6: ("hour", "[0, 24)")}),
    Case("day_of_week_7", ".csv", csv_file(with_cell(0, "day_of_week", 7)), rows_in=5,
         rejects={2: ("day_of_week", "expected a number in [0, 7) or a weekday name")}),
    Case("day_of_week_name", ".csv", csv_file(with_cell(0, "day_of_week", "Martes")), rows_in=5,
         check=_users_have("day_of_week", [1.0, 2.0, 2.052632, 6.0, 0.0])),
    Case("comprador_2", ".csv", csv_file(with_cell(0, "Comprador", 2)), rows_in=5,
         rejects={2: ("Comprador", "expected 0 or 1")}),
    Case("comprador_si", ".csv", csv_file(with_cell(0, "Comprador", "sí")), rows_in=5,
         check=_users_have("Comprador", [1, 1, 1, 0, 1])),
    Case("empty_file", ".csv", raw_bytes(b""), ERR, ("empty file (0 bytes)",)),
    Case("header_only", ".csv", csv_file([]), rows_in=0),
    Case("random_bytes_xlsx", ".xlsx", raw_bytes(np.random.default_rng(1).bytes(4096)), ERR,
         ("is not an xlsx workbook",)),
    Case("csv_named_xlsx", ".xlsx", csv_file(), ERR, ("is not an xlsx workbook", "name it .csv")),
    Case("zip_bomb", ".xlsx", zip_bomb, ERR, ("refused, it would unpack to 104,857,600 bytes", "ordinary xlsx")),
    Case("ole2_password_protected", ".xlsx", raw_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x07" * 2000), ERR,
         ("password-protected workbook or a legacy .xls", "unprotected .xlsx")),
    Case("several_sheets_first_used", ".xlsx", xlsx_file({"Enero": GOOD, "Febrero": GOOD[:2]}), rows_in=5),
    Case("several_sheets_pick_second", ".xlsx", xlsx_file({"Enero": GOOD, "Febrero": GOOD[:2]}), rows_in=2,
         args=("--sheet", "Febrero")),
    Case("path_does_not_exist", ".csv", nothing, ERR, ("no such file",)),
    Case("directory_as_file", ".csv", directory, ERR, ("is a directory", "expected an .xlsx, .csv or .parquet")),
    Case("nan_inf_huge", ".csv",
         csv_file(with_cell(0, "open", "NaN", with_cell(1, "click", "inf", with_cell(2, "Total", "1e400",
                  with_cell(3, "send", 99999999999))))), rows_in=5,
         rejects={2: ("open", "found text"), 3: ("click", "not a finite number"),
                  4: ("Total", "not a finite number"), 5: ("send", "count above 1000000")}),
    Case("excel_error_values", ".xlsx", xlsx_file(cells={(1, "open"): ("=NA()", "#N/A"),
                                                         (2, "send"): ("=1/0", "#DIV/0!")}), rows_in=5,
         rejects={2: ("open", "found text"), 3: ("send", "found text")}),
    Case("dates_where_numbers_belong", ".xlsx", xlsx_file(cells={(1, "send"): dt.datetime(2026, 1, 5),
                                                                 (2, "hour"): dt.datetime(2026, 1, 5, 17)}),
         rows_in=5, rejects={2: ("send", "found text"), 3: ("hour", "[0, 24)")}),
    Case("formula_looking_id", ".xlsx", xlsx_file({"Sheet1": with_cell(4, "Id", "=1+1")}), rows_in=5,
         check=_string_ids),
    Case("csv_ragged_long_row", ".csv", csv_file(GOOD[:2] + [GOOD[2] + [99]] + GOOD[3:]), ERR,
         ("line 4 has 10 fields but the header has 9",)),
    Case("csv_ragged_first_row", ".csv", csv_file(with_cell(0, "hour", "17,5")), ERR,  # unquoted decimal comma
         ("line 2 has 10 fields but the header has 9",)),
    Case("csv_ragged_short_row", ".csv", csv_file(GOOD[:1] + [GOOD[1][:5]] + GOOD[2:]), rows_in=5,
         rejects={3: ("Total", "missing value")}),
    Case("csv_cp1252_spanish", ".csv",
         csv_file([[str(v).replace(".", ",") for v in with_cell(0, "Comprador", "Sí")[i]] for i in range(5)],
                  ["Id", "Enviados", "Rebotes", "Aperturas", "Clics", "Total", "Comprador", "Hora",
                   "Día de la semana"], sep=";", encoding="cp1252"), rows_in=5,
         check=_users_have("hour", [17.0, 18.222222, 14.105263, 20.5, 0.0])),
    Case("csv_utf8_bom", ".csv", csv_file(encoding="utf-8-sig"), rows_in=5),
    Case("blank_id", ".csv", csv_file(with_cell(1, "Id", "  ")), rows_in=5,
         rejects={3: ("Id", "missing Id")}, check=_integer_ids),
    Case("non_integer_count", ".csv", csv_file(with_cell(0, "send", 2.5)), rows_in=5,
         rejects={2: ("send", "count is not a whole number")}),
    Case("empty_strings", ".csv", csv_file(with_cell(0, "send", '""', with_cell(1, "open", '""'))), rows_in=5,
         rejects={2: ("send", "missing value")}, check=_users_have("open", [0, 9, 0, 1])),
    Case("bad_month", ".csv", csv_file(), 2, ("month expected YYYY-MM",), args=("--month", "../x")),
]


# ---------------------------------------------------------------- running the CLI


@pytest.fixture(scope="module")
def scheduler():
    """One in-process scheduler + worker that every CLI run of this module connects to."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


def run_cli(path: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    month = [] if "--month" in extra else ["--month", MONTH]
    return subprocess.run(["mailseg", "ingest", str(path), "--data-dir", str(data_dir), *month, "--json", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def results(request, tmp_path_factory, scheduler):
    """Every selected case started at once (two at a time); each test waits for its own."""
    root = tmp_path_factory.mktemp("malformed")
    pool = ThreadPoolExecutor(max_workers=2)
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}

    def start(case: Case):
        path = case.build(root / f"{case.name}{case.suffix}")
        return path, run_cli(path, root / f"data-{case.name}", *case.args, "--scheduler", scheduler)

    futures = {case.name: pool.submit(start, case) for case in CASES if case.name in selected}
    yield futures
    pool.shutdown(wait=True)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mailseg: error:")]


def assert_clean_failure(proc, path: Path, code: int, says: tuple) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == lines[0]  # the error is the last word
    if code == 3:
        assert str(path) in lines[0]
    for text in says:
        assert text in lines[0], lines[0]
    assert proc.stdout.strip() == ""  # no JSON summary for a failed command


def assert_valid_users(users: pd.DataFrame) -> None:
    for name in ["send", "bounce", "open", "click", "Total", "Comprador", "source_row"]:
        assert users[name].dtype == "int64"
    assert (users[["send", "bounce", "open", "click", "Total"]] >= 0).all().all()
    assert users["Comprador"].isin([0, 1]).all()
    assert users["hour"].between(0, 24, inclusive="left").all()
    assert users["day_of_week"].between(0, 7, inclusive="left").all()
    assert users["Id"].is_unique and users["Id"].notna().all()
    expected = users["open"] + 2 * users["click"] + 3 * users["Comprador"]
    np.testing.assert_array_equal(users["engagement_score"].to_numpy(), expected.to_numpy(dtype=float))


def assert_ingested(proc, case: Case) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    manifest = json.loads(proc.stdout.strip().splitlines()[-1])
    users = pd.read_parquet(manifest["users_path"])
    ledger = pd.read_parquet(manifest["rejects_path"])
    assert manifest["rows_in"] == case.rows_in
    assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"]
    assert (len(users), len(ledger)) == (manifest["rows_kept"], manifest["rows_rejected"])
    assert sorted(ledger["source_row"]) == sorted(case.rejects)
    for row in ledger.itertuples():
        column, reason = case.rejects[row.source_row]
        assert column in row.column.split(";") and reason in row.reason, row
    assert not set(users["source_row"]) & set(ledger["source_row"])
    assert_valid_users(users)
    if case.check:
        case.check(manifest, users)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input(case, results):
    path, proc = results[case.name].result()
    if case.exit:
        assert_clean_failure(proc, path, case.exit, case.says)
    else:
        assert_ingested(proc, case)


def test_corpus_is_large_and_named():
    assert len({c.name for c in CASES}) == len(CASES) >= 25


def test_unreadable_file(tmp_path, scheduler, monkeypatch, capsys):
    path = csv_file()(tmp_path / "locked.csv")
    path.chmod(0)
    if os.geteuid() != 0:
        proc = run_cli(path, tmp_path / "data", "--scheduler", scheduler)
    else:  # chmod 000 does not stop root: make the OS answer "no read access" for this file, run the CLI in-process
        from jobs.cli import main

        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == path else real_access(p, mode, **kw))
        code = main(["ingest", str(path), "--data-dir", str(tmp_path / "data"), "--month", MONTH, "--json"])
        out = capsys.readouterr()
        proc = subprocess.CompletedProcess([], code, out.out, out.err)
    assert_clean_failure(proc, path, 3, ("cannot be read (permission denied)",))
    assert not (tmp_path / "data").exists()


if os.geteuid() != 0:  # the CLI runs in a subprocess then (in-process only as root)
    test_unreadable_file = pytest.mark.slow(test_unreadable_file)


# ---------------------------------------------------------------- the default LocalCluster, as a user runs it


@pytest.mark.slow
@pytest.mark.parametrize("name", ["missing_column"])
def test_default_cluster_keeps_stderr_to_one_line(name, tmp_path):
    """Without --scheduler the CLI starts its own LocalCluster: still no traceback or log noise on stderr."""
    case = next(c for c in CASES if c.name == name)
    path = case.build(tmp_path / f"{name}{case.suffix}")
    config = tmp_path / "small.yaml"
    config.write_text("cluster: {n_workers: 1}\n")  # dashboard on a free port (false would still bind :8787)
    proc = run_cli(path, tmp_path / "data", "--config", str(config))
    if case.exit:
        assert_clean_failure(proc, path, case.exit, case.says)
    else:
        assert_ingested(proc, case)
    assert len(proc.stderr.splitlines()) <= 3, proc.stderr  # a status line or two, not the cluster's logs
