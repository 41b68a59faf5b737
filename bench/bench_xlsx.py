"""Workbook benchmark: writing sheet Clusters (every user x 17 columns) with each xlsx writer.

    python bench/bench_xlsx.py --rows 212292

Prepares a real per-user results folder once (bench/.work, git-ignored): `mailseg generate`
seed-like users, then `mailseg run --k 6` on them, whose Resultados/usuarios/ Parquet parts are
what the workbook is written from. Then, in the same run and interleaved (repeat 1 of every
writer, then repeat 2, ...), each writer writes the same Clusters sheet content from those parts,
each write in a fresh process so that its peak memory (ru_maxrss) is its own:

  xlsxwriter      the workbook code before issue 12: xlsxwriter constant_memory, a pandas frame
                  per 65,536-row batch, write_string/write_number/write_row per row
  rustpy          rustpy-xlsxwriter fed an Arrow stream of the Parquet batches (what
                  write_results_xlsx did from issue 12 until the Arrow XML writer), cells written in Rust
  arrow-xml       what write_results_xlsx does now for sheet Clusters: rustpy-xlsxwriter writes the header,
                  the rows are XML built by Arrow (outputs.sheet_xml) spliced in and deflated by ISA-L at
                  level 1 (outputs.xlsx_package)
  arrow-xml-zlib1, arrow-xml-zlib6   the same XML deflated by the standard library's zlib at level 1 / 6
  rustpy-records  rustpy-xlsxwriter fed a generator of dicts (batch.to_pylist())
  pyexcelerate    pyexcelerate, which needs the whole sheet as Python lists (if installed)
  write_results_xlsx  the product function, all three sheets (Clusters, Recomendaciones, Eleccion_k)

Medians of --repeats (default 3), ratio = seconds / xlsxwriter's seconds (same run). Then the
checks: every file re-read with python-calamine and openpyxl (rows, columns, header, values equal
to the Parquet rows, numbers numeric, text as text, no formulas, no dates), formula-looking text
("=1+1", "+SUM(A1)", "-2+3", "@cmd") written by each writer on a small copy, the sampled path
(--sample-limit rows: note row, header, limit - 1 users, the same users for every writer) and the
number formats of sheet Recomendaciones. Results: bench/results/xlsx_<rows>.json and a table;
`python bench/bench_xlsx.py --readme` writes README.md's table from every results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- bench:xlsx:start -->", "<!-- bench:xlsx:end -->"
WRITERS = ["xlsxwriter", "rustpy", "rustpy-records", "pyexcelerate", "arrow-xml", "arrow-xml-zlib1",
           "arrow-xml-zlib6", "write_results_xlsx"]
FORMULA_LIKE = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", '=HYPERLINK("http://e.x")']


# ---------------------------------------------------------------- data
def prepare(rows: int, seed: int, workdir: Path) -> Path:
    """Resultados/ of a real `mailseg run --k 6` on `rows` generated users (made once, then reused)."""
    out = workdir / f"xlsx_{rows}" / "Resultados"
    if (out / "run_summary.json").exists() and (out / "usuarios").is_dir():
        return out
    source = workdir / f"users_{rows}.parquet"
    if not source.exists():
        subprocess.run(["mailseg", "generate", "--rows", str(rows), "--out", str(source), "--seed", str(seed)],
                       check=True)
    subprocess.run(["mailseg", "run", str(source), "--data-dir", str(workdir / f"xlsx_{rows}" / "data"),
                    "--out", str(out), "--k", "6", "--month", "2026-01", "--seed", str(seed), "--replace"],
                   check=True, cwd=ROOT)
    return out


def plan(users: Path, limit: int | None, seed: int):
    """Parts, whether sampled, the hash cut and how many users the sheet holds (as write_results_xlsx)."""
    from mailseg_dist.core.parquet import parquet_files
    from mailseg_dist.core.storage import parquet_metadata
    from mailseg_dist.outputs.workbook import _sample_cut

    files = parquet_files(users)
    total = sum(parquet_metadata(p).num_rows for p in files)
    sampled = limit is not None and total > limit
    size = limit - 1 if sampled else total
    cut = _sample_cut(files, size, seed, total) if sampled else None
    return files, total, size, cut


def note_text(limit: int, size: int, total: int, seed: int, users: Path) -> str:
    from mailseg_dist.outputs.workbook import SAMPLE_NOTE

    return SAMPLE_NOTE["es"].format(m=size, total=total, seed=seed, limit=limit, path=users)


def frames(files, cut, size, seed):
    """The sheet's users as pandas frames, batch by batch (the pre-issue-12 reading and sampling)."""
    from mailseg_dist.inputs.sampling import hash_uniform
    from mailseg_dist.inputs.schema import ID
    from mailseg_dist.outputs.export import RESULT_COLUMNS
    from mailseg_dist.outputs.workbook import _batches

    written = 0
    for batch in _batches(files, RESULT_COLUMNS):
        frame = batch.to_pandas()
        if cut is not None:
            frame = frame[hash_uniform(frame[ID], seed) <= cut].head(size - written)
        written += len(frame)
        yield frame


# ---------------------------------------------------------------- writers (sheet Clusters)
def write_xlsxwriter(files, path, cut, size, seed, note):
    """mailseg_dist/outputs/export.py before issue 12 (_write_users_sheet), verbatim in what it writes."""
    import pandas as pd
    import xlsxwriter

    from mailseg_dist.inputs.schema import ID
    from mailseg_dist.outputs.export import RESULT_COLUMNS, TEXT_COLUMNS

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                         "strings_to_urls": False, "strings_to_numbers": False})
    ws = wb.add_worksheet("Clusters")
    row = 0
    if note:
        ws.write_string(0, 0, note)
        row = 1
    for j, col in enumerate(RESULT_COLUMNS):
        ws.write_string(row, j, col)
    row += 1
    text_cols = [c for c in RESULT_COLUMNS if c in TEXT_COLUMNS]
    for frame in frames(files, cut, size, seed):
        id_text = not pd.api.types.is_numeric_dtype(frame[ID])
        numbers = frame[RESULT_COLUMNS[1:-len(text_cols)]].astype(object)
        numbers = numbers.where(frame[numbers.columns].notna(), None).to_numpy().tolist()
        texts = frame[text_cols].astype(object).where(frame[text_cols].notna(), "").to_numpy().tolist()
        for uid, nums, words in zip(frame[ID].tolist(), numbers, texts):
            if id_text:
                ws.write_string(row, 0, str(uid))
            else:
                ws.write_number(row, 0, uid)
            ws.write_row(row, 1, nums)
            for j, word in enumerate(words):
                ws.write_string(row, 1 + len(nums) + j, str(word))
            row += 1
    wb.close()


def _rustpy_options(note):
    from mailseg_dist.outputs.export import RESULT_COLUMNS

    if not note:
        return {}
    return {"header_row": {"Clusters": 1}, "merge_ranges": {"Clusters": [(0, 0, 0, len(RESULT_COLUMNS) - 1, note)]}}


def write_rustpy(files, path, cut, size, seed, note):
    """What write_results_xlsx did for sheet Clusters before the Arrow XML writer: an Arrow stream of the
    Parquet batches (text decoded from its dictionaries) written cell by cell in Rust."""
    import pyarrow as pa
    from rustpy_xlsxwriter import write_worksheets

    from mailseg_dist.outputs.export import RESULT_COLUMNS
    from mailseg_dist.outputs.workbook import _sheet_schema, _users_sheet

    schema = pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                        for f in _sheet_schema(files, RESULT_COLUMNS)])
    stream = pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in _users_sheet(files, cut, size, seed)))
    write_worksheets([("Clusters", stream)], str(path), autofit=False, **_rustpy_options(note))


def write_arrow_xml(files, path, cut, size, seed, note, deflater=None):
    """What write_results_xlsx does for sheet Clusters: header by rustpy-xlsxwriter, rows as Arrow-built XML
    spliced in (deflated by ISA-L, or by `deflater`)."""
    import io

    import pyarrow as pa
    from rustpy_xlsxwriter import write_worksheets

    from mailseg_dist.outputs import xlsx_package
    from mailseg_dist.outputs.export import RESULT_COLUMNS
    from mailseg_dist.outputs.sheet_xml import dimension
    from mailseg_dist.outputs.workbook import CLUSTERS_PART, _sheet_rows, _users_sheet

    if deflater is not None:
        xlsx_package.rows_deflater = deflater
    frame = io.BytesIO()
    header = pa.schema([pa.field(c, pa.string()) for c in RESULT_COLUMNS]).empty_table()
    write_worksheets([("Clusters", header)], frame, autofit=False, **_rustpy_options(note))
    head = 2 if note else 1
    rows = _sheet_rows(_users_sheet(files, cut, size, seed), head + 1, size)
    xlsx_package.splice_rows(frame.getvalue(), path, CLUSTERS_PART, rows, dimension(len(RESULT_COLUMNS), head + size))


def _zlib(level: int):
    import zlib

    return lambda: zlib.compressobj(level, zlib.DEFLATED, -15)


def write_rustpy_records(files, path, cut, size, seed, note):
    """rustpy-xlsxwriter fed dicts, one per user (the issue's measurement, without the to_dict of a whole frame)."""
    import pyarrow as pa
    from rustpy_xlsxwriter import write_worksheets

    def records():
        for frame in frames(files, cut, size, seed):
            yield from pa.Table.from_pandas(frame, preserve_index=False).to_pylist()

    write_worksheets([("Clusters", records())], str(path), autofit=False, **_rustpy_options(note))


def write_pyexcelerate(files, path, cut, size, seed, note):
    """pyexcelerate: the whole sheet as lists of Python values, then one save."""
    from pyexcelerate import Workbook

    from mailseg_dist.outputs.export import RESULT_COLUMNS

    data = [[note]] if note else []
    data.append(list(RESULT_COLUMNS))
    for frame in frames(files, cut, size, seed):
        values = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
        data.extend(values)
    wb = Workbook()
    wb.new_sheet("Clusters", data=data)
    wb.save(str(path))


def write_product(files, path, cut, size, seed, note, users=None, limit=None):
    """outputs.export.write_results_xlsx itself: three sheets, atomic write."""
    from mailseg_dist.core.config import load_config
    from mailseg_dist.outputs.workbook import write_results_xlsx
    from mailseg_dist.outputs.segment_files import load_segment_table

    results = Path(users).parent
    summary = json.loads((results / "run_summary.json").read_text())
    cfg = load_config(overrides={"model.seed": seed, **({"report.excel_max_rows": limit} if limit else {})})
    write_results_xlsx(users, path, load_segment_table(results), summary["k_table"], cfg, "es",
                       summary.get("k_reason"))


WRITE = {"xlsxwriter": write_xlsxwriter, "rustpy": write_rustpy, "rustpy-records": write_rustpy_records,
         "pyexcelerate": write_pyexcelerate, "arrow-xml": write_arrow_xml,
         "arrow-xml-zlib1": lambda *a: write_arrow_xml(*a, deflater=_zlib(1)),
         "arrow-xml-zlib6": lambda *a: write_arrow_xml(*a, deflater=_zlib(6)),
         "write_results_xlsx": write_product}


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_one(writer: str, users: str, out: str, limit: int | None, seed: int) -> dict:
    """Runs in a fresh process: one write, its time, memory and file size."""
    files, total, size, cut = plan(Path(users), limit, seed)
    note = note_text(limit, size, total, seed, Path(users)) if cut is not None else None
    import mailseg_dist.outputs.workbook  # noqa: F401  (imports out of the measured memory and time)
    if writer == "pyexcelerate":
        import pyexcelerate  # noqa: F401
    if writer == "xlsxwriter":
        import xlsxwriter  # noqa: F401
    Path(out).unlink(missing_ok=True)  # every writer creates its file (none truncates the previous repeat's)
    base = rss_mb()
    start = time.perf_counter()
    if writer == "write_results_xlsx":
        write_product(files, Path(out), cut, size, seed, note, users=users, limit=limit)
    else:
        WRITE[writer](files, Path(out), cut, size, seed, note)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"writer": writer, "seconds": round(seconds, 3), "base_rss_mb": round(base, 1),
            "peak_rss_mb": round(peak, 1), "peak_over_base_mb": round(peak - base, 1),
            "file_mb": round(os.path.getsize(out) / 2**20, 2), "rows": size}


def run_child(writer: str, users: Path, out: Path, limit: int | None, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--one", writer, str(users), str(out), "--seed", str(seed)]
    if limit:
        cmd += ["--limit", str(limit)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- checks
def expected_frame(files, cut, size, seed):
    import pandas as pd

    return pd.concat(list(frames(files, cut, size, seed)), ignore_index=True)


def _compare(got, expected, reader: str) -> dict:
    """got: list of data rows (reader values); expected: the Parquet rows. Values and cell types."""
    import numpy as np
    import pandas as pd

    from mailseg_dist.outputs.export import RESULT_COLUMNS, TEXT_COLUMNS

    out = {"rows_equal": len(got) == len(expected), "cols_equal": all(len(r) == len(RESULT_COLUMNS) for r in got)}
    if not (out["rows_equal"] and out["cols_equal"]):
        return out
    blank = None if reader == "openpyxl" else ""
    columns = list(zip(*got))
    numbers_numeric, text_text, values_equal, max_rel = True, True, True, 0.0
    kinds = {}
    for col, cells in zip(RESULT_COLUMNS, columns):
        want = expected[col]
        missing = want.isna().to_numpy()
        kinds[col] = sorted({type(c).__name__ for c in cells})
        if col in TEXT_COLUMNS or not pd.api.types.is_numeric_dtype(want):
            text_text &= all(isinstance(c, str) for c, m in zip(cells, missing) if not m)
            values_equal &= [c if c is not None else "" for c in cells] == want.fillna("").astype(str).tolist()
            continue
        ok = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c, m in zip(cells, missing) if not m)
        numbers_numeric &= ok
        values_equal &= all(c in (blank, None, "") for c, m in zip(cells, missing) if m)
        if ok:
            have = np.array([float(c) for c, m in zip(cells, missing) if not m])
            ref = want.to_numpy(dtype=float)[~missing]
            if pd.api.types.is_integer_dtype(want):
                values_equal &= bool(np.array_equal(have, ref))
            else:
                rel = np.abs(have - ref) / np.maximum(np.abs(ref), 1e-300)
                max_rel = max(max_rel, float(rel.max(initial=0.0)))
                values_equal &= bool(np.allclose(have, ref, rtol=1e-15, atol=0))
    dates = any(isinstance(c, (dt.date, dt.time, dt.timedelta)) for column in columns for c in column)
    out.update(numbers_numeric=numbers_numeric, text_is_text=text_text, values_equal=values_equal,
               max_float_rel_error=max_rel, no_dates=not dates, python_types=kinds)
    return out


def check_file(path: Path, expected, note: str | None) -> dict:
    """Sheet Clusters of `path` against the expected rows, read with python-calamine and openpyxl."""
    import openpyxl
    from python_calamine import CalamineWorkbook

    from mailseg_dist.outputs.export import RESULT_COLUMNS

    head = 2 if note else 1
    result = {}
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Clusters").to_python(skip_empty_area=False)
    cal = {"total_rows": len(rows), "header": list(rows[head - 1]) == RESULT_COLUMNS,
           "note": (rows[0][0] == note) if note else True}
    cal.update(_compare(rows[head:], expected, "calamine"))
    result["calamine"] = cal
    wb = openpyxl.load_workbook(path, read_only=True)
    ws = wb["Clusters"]
    kinds, got, all_rows = {}, [], 0
    first = []
    for i, row in enumerate(ws.iter_rows()):
        all_rows += 1
        if i < head:
            first.append([c.value for c in row])
            continue
        got.append([c.value for c in row])
        for col, cell in zip(RESULT_COLUMNS, row):
            kinds.setdefault(col, set()).add(cell.data_type)
    wb.close()
    opx = {"total_rows": all_rows, "header": first[head - 1][:len(RESULT_COLUMNS)] == RESULT_COLUMNS,
           "note": (first[0][0] == note) if note else True,
           "no_formulas": not any("f" in k for k in kinds.values()),
           "data_types": {c: sorted(k) for c, k in kinds.items()}}
    opx.update(_compare(got, expected, "openpyxl"))
    result["openpyxl"] = opx
    result["ok"] = all(v is True for r in (cal, opx) for k, v in r.items() if isinstance(v, bool))
    return result


def formula_text_check(users: Path, workdir: Path, seed: int, writers: list[str]) -> dict:
    """A 2,000-user copy with text Ids, formula-looking Ids and texts, and missing numbers, per writer."""
    import numpy as np
    import openpyxl
    import pyarrow.parquet as pq

    from mailseg_dist.core.parquet import parquet_files

    small = workdir / "formula_text" / "usuarios"
    small.mkdir(parents=True, exist_ok=True)
    frame = pq.read_table(parquet_files(users)[0]).slice(0, 2000).to_pandas()
    frame["Id"] = frame["Id"].astype(str)
    for i, text in enumerate(FORMULA_LIKE):
        frame.loc[i, "Id"] = text
    frame["recomendacion"] = frame["recomendacion"].astype(str)
    frame.loc[0, "recomendacion"], frame.loc[1, "recomendacion"] = "=A1", "@SUM(1)"
    frame.loc[2, "pca1"], frame.loc[3, "silhouette_score"] = np.nan, np.nan
    pq.write_table(__import__("pyarrow").Table.from_pandas(frame, preserve_index=False), small / "part-00000.parquet")
    out = {}
    for writer in writers:
        path = workdir / "formula_text" / f"{writer}.xlsx"
        files, _, size, cut = plan(small, None, seed)
        if writer == "write_results_xlsx":
            write_product(files, path, cut, size, seed, None, users=str(small_results(small, users)))
        else:
            WRITE[writer](files, path, cut, size, seed, None)
        ws = openpyxl.load_workbook(path)["Clusters"]
        cells = {row[0].value: row for row in ws.iter_rows(min_row=2)}
        ids = {t: (t in cells and cells[t][0].data_type == "s" and cells[t][0].value == t) for t in FORMULA_LIKE}
        rec = [cells[FORMULA_LIKE[0]][16], cells[FORMULA_LIKE[1]][16]]
        texts = {c.value: c.data_type == "s" for c in rec}
        blanks = cells[FORMULA_LIKE[2]][12].value is None and cells[FORMULA_LIKE[3]][11].value is None
        result = check_file(path, frame, None)
        out[writer] = {"ids_stay_text": ids, "texts_stay_text": texts, "nan_is_blank": blanks,
                       "reread_ok": result["ok"],
                       "ok": all(ids.values()) and all(texts.values()) and texts.keys() == {"=A1", "@SUM(1)"}
                       and blanks and result["ok"]}
    return out


def small_results(small: Path, users: Path) -> Path:
    """write_product reads run_summary.json and segmentos.json beside the users folder: copy them."""
    import shutil

    for name in ("run_summary.json", "segmentos.json"):
        shutil.copy(users.parent / name, small.parent / name)
    return small


def formats_check(path: Path) -> dict:
    """Number formats of sheet Recomendaciones as the pre-issue-12 writer set them."""
    import openpyxl

    from mailseg_dist.outputs.workbook import PERCENT_COLUMNS, SEGMENT_SHEET_COLUMNS

    ws = openpyxl.load_workbook(path)["Recomendaciones"]
    rows = list(ws.iter_rows(min_row=2))
    bad = []
    for j, col in enumerate(SEGMENT_SHEET_COLUMNS):
        want = "0.0%" if col in PERCENT_COLUMNS else "0.00" if col.endswith(("_mean", "_rate")) else "General"
        for row in rows:
            cell = row[j]
            if isinstance(cell.value, (int, float)) and cell.number_format != want:
                bad.append((col, cell.number_format))
    return {"ok": not bad, "wrong": bad[:5], "sheets": openpyxl.load_workbook(path, read_only=True).sheetnames}


# ---------------------------------------------------------------- main
def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("xlsxwriter", "rustpy-xlsxwriter", "isal", "pyexcelerate", "python-calamine", "openpyxl", "pyarrow",
                 "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=212_292)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--writers", nargs="+", default=WRITERS, choices=WRITERS)
    parser.add_argument("--sample-limit", type=int, default=100_000,
                        help="report.excel_max_rows for the sampled-path check (0: skip)")
    parser.add_argument("--no-checks", action="store_true", help="time only")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    parser.add_argument("--workdir", default=str(HERE / ".work"))
    parser.add_argument("--one", nargs=3, metavar=("WRITER", "USERS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import readme_tables  # the README's marked blocks, the commit measured
    if args.readme:
        write_readme()
        return
    if args.one:
        print(json.dumps(write_one(*args.one, args.limit, args.seed)))
        return
    writers = [w for w in args.writers if w != "pyexcelerate" or versions()["pyexcelerate"]]
    workdir = Path(args.workdir)
    results_dir = prepare(args.rows, args.seed, workdir)
    users = results_dir / "usuarios"
    outdir = workdir / f"xlsx_{args.rows}" / "written"
    outdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    runs = {w: [] for w in writers}
    for rep in range(args.repeats):
        for writer in writers:
            runs[writer].append(run_child(writer, users, outdir / f"{writer}.xlsx", None, args.seed))
            print(json.dumps({"repeat": rep + 1, **runs[writer][-1]}), flush=True)
    table = {}
    for writer, rs in runs.items():
        table[writer] = {key: statistics.median(r[key] for r in rs)
                         for key in ("seconds", "base_rss_mb", "peak_rss_mb", "peak_over_base_mb", "file_mb")}
        table[writer]["seconds_all"] = [r["seconds"] for r in rs]
    if "xlsxwriter" in table:
        base = table["xlsxwriter"]["seconds"]
        for row in table.values():
            row["ratio_vs_xlsxwriter"] = round(row["seconds"] / base, 3)
            row["speedup_vs_xlsxwriter"] = round(base / row["seconds"], 2)
    report = {"rows": args.rows, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
              "versions": versions(), "repeats": args.repeats, "commit": readme_tables.git_commit(),
              "what": "sheet Clusters (every user x 17 columns) from Resultados/usuarios/ of a real mailseg run "
                      "--k 6; write_results_xlsx: the whole workbook; seconds and memory: medians, each write in "
                      "a fresh process; peak_rss_mb: ru_maxrss, base_rss_mb: RSS after imports",
              "results": table}
    if not args.no_checks:
        from mailseg_dist.outputs.export import RESULT_COLUMNS  # noqa: F401

        files, total, size, cut = plan(users, None, args.seed)
        expected = expected_frame(files, cut, size, args.seed)
        checks = {"full": {w: check_file(outdir / f"{w}.xlsx", expected, None) for w in writers}}
        print(json.dumps({"checked": "full"}), flush=True)
        checks["formula_text"] = formula_text_check(users, workdir / f"xlsx_{args.rows}", args.seed, writers)
        if args.sample_limit and args.sample_limit < total:
            files, total, size, cut = plan(users, args.sample_limit, args.seed)
            expected = expected_frame(files, cut, size, args.seed)
            note = note_text(args.sample_limit, size, total, args.seed, users)
            sampled = {}
            for w in writers:
                path = outdir / f"{w}_sampled.xlsx"
                timing = run_child(w, users, path, args.sample_limit, args.seed)
                sampled[w] = {"seconds": timing["seconds"], "data_rows": timing["rows"],
                              **check_file(path, expected, note)}
            checks["sampled"] = {"limit": args.sample_limit, "data_rows_expected": size, "writers": sampled}
        if "write_results_xlsx" in writers:
            checks["recomendaciones_formats"] = formats_check(outdir / "write_results_xlsx.xlsx")
        report["checks"] = checks
    out = HERE / "results" / f"xlsx_{args.rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print_table(report)


def print_table(report: dict) -> None:
    checks = report.get("checks", {})
    print(f"\n{report['rows']:,} users, medians of {report['repeats']} (each write in a fresh process)\n")
    print("| writer | seconds | vs xlsxwriter | peak RSS MB (over imports) | file MB | re-read ok | formula text |")
    print("|---|---|---|---|---|---|---|")
    for w, r in report["results"].items():
        full = checks.get("full", {}).get(w, {}).get("ok", "-")
        ftext = checks.get("formula_text", {}).get(w, {}).get("ok", "-")
        print(f"| {w} | {r['seconds']:.2f} | {r.get('ratio_vs_xlsxwriter', float('nan')):.2f} "
              f"({r.get('speedup_vs_xlsxwriter', float('nan')):.1f}x) | {r['peak_rss_mb']:.0f} "
              f"({r['peak_over_base_mb']:.0f}) | {r['file_mb']:.1f} | {full} | {ftext} |")


# ---------------------------------------------------------------- README table
def results_files() -> list[dict]:
    """Every results file that measured the writer mailseg uses now, fewest rows first."""
    found = [json.loads(p.read_text()) for p in (HERE / "results").glob("xlsx_*.json")]
    return sorted((r for r in found if "arrow-xml" in r["results"]), key=lambda r: r["rows"])


def _checked(report: dict, writer: str) -> str:
    checks = report.get("checks", {})
    if not checks:
        return "not checked"
    verdicts = [checks.get("full", {}).get(writer, {}).get("ok"), checks.get("formula_text", {}).get(writer, {}).get("ok"),
                checks.get("sampled", {}).get("writers", {}).get(writer, {}).get("ok")]
    verdicts = [v for v in verdicts if v is not None]
    return "yes" if verdicts and all(verdicts) else "no" if verdicts else "not checked"


def render(reports: list[dict]) -> str:
    lines = ["| users in sheet Clusters | writer | seconds | vs rustpy-xlsxwriter | peak MB over imports | file MB | "
             "re-read equal |", "|---|---|---|---|---|---|---|"]
    for r in reports:
        base = r["results"].get("rustpy", {}).get("seconds")
        for writer, row in r["results"].items():
            ratio = f"{row['seconds'] / base:.2f}" if base else "—"
            lines.append(f"| {r['rows']:,} | {writer} | {row['seconds']:.2f} | {ratio} | {row['peak_over_base_mb']:.0f} | "
                         f"{row['file_mb']:.1f} | {_checked(r, writer)} |")
    when = ", ".join(f"{r['rows']:,}: {r['date'][:10]}" + (f", commit `{r['commit']}`" if r.get("commit") else "")
                     + f", medians of {r['repeats']}, load average {r['machine']['loadavg_start'][0]:.1f} at start"
                     for r in reports)
    return "\n".join(lines) + f"\n\nMeasured on 2 cores ({when}).\n"


def readme_block(text: str) -> str:
    sys.path.insert(0, str(HERE))
    import readme_tables

    return readme_tables.readme_block(text, START, END)


def write_readme() -> None:
    sys.path.insert(0, str(HERE))
    import readme_tables

    readme_tables.write_block(render(results_files()), START, END)


if __name__ == "__main__":
    main()
