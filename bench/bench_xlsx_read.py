"""xlsx reader benchmark: the ingest's raw layer written from one workbook with each reader.

    python bench/bench_xlsx_read.py --rows 212292

The workbook is the one bench_e2e.py reads (`mailseg generate --rows N --seed 42`, made if missing).
Interleaved rounds (every reader once, then again, ...), each in a fresh process so that its imports
and peak memory (ru_maxrss) are its own:

  fastexcel     ingest.xlsx_engine fastexcel (the default): typed Arrow columns, inputs/xlsx_columns.py
  calamine      ingest.xlsx_engine calamine: python-calamine rows walked in Python
  openpyxl      ingest.xlsx_engine openpyxl: the slowest, most tolerant reader
  pandas        pandas.read_excel(engine="calamine"), only reading (no raw layer), for scale

Seconds are the median of --repeats; ratio = seconds / fastexcel's seconds (same run). The check: the raw
layer each reader wrote is read back and compared, every cell and row number equal to fastexcel's.
Results: bench/results/xlsx_read_<rows>.json and a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("fastexcel", "calamine", "openpyxl")
READERS = (*ENGINES, "pandas")


def workbook(rows: int) -> Path:
    path = ROOT / "bench" / ".work" / "seed42" / f"users_{rows}.xlsx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mailseg", "generate", "--rows", str(rows), "--seed", "42", "--out", str(path)], check=True)
    return path


def child(reader: str, path: str, out: str) -> None:
    """Runs in a fresh process: one read, its seconds and peak memory as one JSON line."""
    start = time.perf_counter()
    if reader == "pandas":
        import pandas as pd

        rows = len(pd.read_excel(path, engine="calamine"))
    else:
        from mailseg_dist.core.config import load_config
        from mailseg_dist.inputs.raw_layer import write_raw_layer

        ingest = {**load_config()["ingest"], "xlsx_engine": reader}
        summary = write_raw_layer(path, out, ingest)
        rows = summary["rows_in"]
        assert summary["options"]["engine"] == reader, summary["options"]
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 3), "rows": rows,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def one(reader: str, path: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", reader, str(path), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_raw_layers(folders: dict[str, Path]) -> dict[str, bool]:
    import pandas as pd

    reference = pd.read_parquet(folders["fastexcel"])
    return {name: bool(pd.read_parquet(folder).equals(reference)) for name, folder in folders.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=212_292)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    path, runs = workbook(args.rows), {reader: [] for reader in READERS}
    with tempfile.TemporaryDirectory() as scratch:
        folders = {engine: Path(scratch) / engine for engine in ENGINES}
        for _ in range(args.repeats):
            for reader in READERS:
                runs[reader].append(one(reader, path, Path(scratch) / f"{reader}-{len(runs[reader])}"))
        for engine in ENGINES:
            (Path(scratch) / f"{engine}-0").rename(folders[engine])
        checks = same_raw_layers(folders)
    median = {reader: statistics.median(r["seconds"] for r in runs[reader]) for reader in READERS}
    results = {reader: {"seconds": median[reader], "seconds_all": [r["seconds"] for r in runs[reader]],
                        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs[reader]),
                        "rows": runs[reader][0]["rows"], "ratio_vs_fastexcel": round(median[reader] / median["fastexcel"], 2)}
               for reader in READERS}
    record = {"rows": args.rows, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": f"python bench/bench_xlsx_read.py --rows {args.rows} --repeats {args.repeats}",
              "git": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
              "input": str(path.relative_to(ROOT)), "results": results, "raw_layer_equal_to_fastexcel": checks}
    out = ROOT / "bench" / "results" / f"xlsx_read_{args.rows}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{'reader':<10} {'seconds':>8} {'x fastexcel':>12} {'peak MB':>8}  same raw layer")
    for reader in READERS:
        r = results[reader]
        print(f"{reader:<10} {r['seconds']:>8.2f} {r['ratio_vs_fastexcel']:>12.2f} {r['peak_rss_mb']:>8.0f}  "
              f"{checks.get(reader, '-')}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
