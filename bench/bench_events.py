"""Aggregating an event log: mailseg ingest-events vs a pandas groupby of the same events, same run.

    python bench/bench_events.py --events 10000000 --formats parquet csv.gz
    python bench/bench_events.py --events 50000000 --formats parquet --skip-pandas

The log is made by `mailseg generate --events` (one month, seed 42; users = events / 4.68) in a
work folder (kept between runs: --workdir). Each measurement runs in a fresh process: wall seconds,
CPU seconds of the process tree (user + sys, from the children's rusage) and the peak of the summed
RSS of the process and all its children (bench_fit.PeakRSS, sampled every 50 ms: the LocalCluster's
workers included). mailseg: `ms.ingest_events(files, month=...)` with the default LocalCluster.
pandas: pyarrow reads every file whole (the same columns), the same type mapping, local time,
duplicate removal and one groupby; its counts must equal mailseg's table exactly and its means to
1e-9, else the run is marked failed. The machine's load average is recorded before and after:
another job on a 2-core machine slows every figure. Results: bench/results/events_<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_fit import PeakRSS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_tables  # the README's marked blocks

EVENTS_PER_USER = 4.68
TZ = "Europe/Madrid"


def generate(events: int, fmt: str, workdir: Path) -> Path:
    import mailseg_dist as ms

    folder = workdir / f"log-{events}-{fmt.replace('.', '')}"
    if not (folder / "done.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        summary = ms.generate(int(events / EVENTS_PER_USER), folder, events=True, format=fmt, purchases=False,
                              seed=42)
        (folder / "done.json").write_text(json.dumps({k: summary[k] for k in ("events", "files")}))
    return folder


def run_mailseg(folder: Path, out: Path) -> dict:
    import mailseg_dist as ms

    files = sorted(str(p) for p in folder.glob("events-*") if p.is_file())
    summary = ms.ingest_events(files, month="2026-01", data_dir=str(out), replace=True)
    return {"events": summary["events_read"], "users": summary["users"], "timings": summary["timings"],
            "users_path": summary["manifests"][0]["users_path"]}


def run_pandas(folder: Path, out: Path) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    tables = []
    for path in sorted(p for p in folder.glob("events-*") if p.is_file()):
        if path.suffix == ".parquet":
            tables.append(pq.read_table(path, columns=["event_id", "customer_id", "campaign_id", "event_type",
                                                       "event_time"]))
        else:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                include_columns=["event_id", "customer_id", "campaign_id", "event_type", "event_time"],
                column_types={"event_time": pa.timestamp("ns", "UTC")}))
            tables.append(table)
    table = pa.concat_tables(tables)
    df = pd.DataFrame({"event_id": table.column("event_id").to_numpy(), "customer": table.column("customer_id").to_numpy(),
                       "campaign": table.column("campaign_id").to_numpy(),
                       "kind": table.column("event_type").to_pandas().map({"S": 0, "V": 1, "C": 2, "B": 3, "E": 4}),
                       "ts": pc.cast(pc.cast(table.column("event_time"), pa.timestamp("ns", "UTC")),
                                     pa.int64()).to_numpy()})
    del table, tables
    df = df[~df["event_id"].duplicated()]
    local = pd.DatetimeIndex(pd.to_datetime(df["ts"].to_numpy(), utc=True)).tz_convert(TZ)
    df["hour"], df["dow"] = local.hour, local.dayofweek
    for i, name in enumerate(("send", "open", "click", "bounce")):
        df[name] = (df["kind"] == i).astype(np.int64)
    g = df.groupby("customer")
    users = g[["send", "open", "click", "bounce"]].sum()
    users["Total"] = g.size()
    users["hour"], users["day_of_week"] = g["hour"].mean(), g["dow"].mean()
    users["campaigns"] = g["campaign"].nunique()
    users.reset_index().to_parquet(out / "pandas_users.parquet")
    return {"events": len(df), "users": len(users)}


def one(approach: str, folder: str, out: str) -> dict:
    """In a fresh process: one approach, wall time and peak RSS of the whole tree."""
    started = time.time()
    Path(out).mkdir(parents=True, exist_ok=True)
    with PeakRSS() as peak:
        facts = (run_mailseg if approach == "mailseg" else run_pandas)(Path(folder), Path(out))
    wall = time.time() - started
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak.peak / 2**20, 1), **facts}


def measure(approach: str, folder: Path, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--one", approach, str(folder), str(out)], cwd=ROOT, check=False,
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"status": "failed", "error": " | ".join(proc.stderr.strip().splitlines()[-3:])}
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run.update(status="ok", cpu_s=round(cpu, 1), load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
    run["events_per_s"] = round(run["events"] / run["wall_s"])
    return run


def compare(out_m: Path, out_p: Path, users_path: str) -> dict:
    import numpy as np
    import pandas as pd

    got = pd.read_parquet(users_path).set_index("Id").sort_index()
    want = pd.read_parquet(out_p / "pandas_users.parquet").set_index("customer").sort_index()
    same_ids = got.index.equals(want.index)
    counts = all(np.array_equal(got[c].to_numpy(), want[c].to_numpy())
                 for c in ("send", "open", "click", "bounce", "Total", "campaigns")) if same_ids else False
    means = max(float(np.abs(got[c].to_numpy() - want[c].to_numpy()).max()) for c in ("hour", "day_of_week")) \
        if same_ids else None
    return {"same_users": same_ids, "counts_equal": counts, "max_mean_diff": means,
            "equal": bool(same_ids and counts and means is not None and means < 1e-9)}


START, END = "<!-- bench:events:start -->", "<!-- bench:events:end -->"
FORMAT_LABEL = {"parquet": "Parquet", "csv.gz": "gzip CSV"}


def _mem(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"


def render(records: list[dict]) -> str:
    """README's table, one row per (events, format), from bench/results/events_<N>.json."""
    lines = ["| events | mailseg wall | mailseg CPU s | mailseg peak RSS (tree) | pandas wall | pandas peak RSS | "
             "tables equal | load before |", "|---|---|---|---|---|---|---|---|"]
    for record in sorted(records, key=lambda r: r["events_requested"]):
        for fmt, entry in record["results"].items():
            m, p = entry["mailseg"], entry.get("pandas")
            pandas = [f"{p['wall_s']:.0f} s", _mem(p["peak_rss_mb"])] if p else ["not run", "—"]
            equal = "yes" if entry.get("check", {}).get("equal") else "not checked" if not p else "NO"
            lines.append(f"| {record['events_requested'] / 1e6:g}M, {FORMAT_LABEL[fmt]} ({entry['input_mb']:.0f} MB) | "
                         f"{m['wall_s']:.0f} s ({m['events_per_s'] / 1000:.0f}k events/s) | {m['cpu_s']:.0f} | "
                         f"{_mem(m['peak_rss_mb'])} | {' | '.join(pandas)} | {equal} | {m['load_before']:.1f} |")
    return "\n".join(lines) + "\n"


def results_files() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((ROOT / "bench" / "results").glob("events_*.json"))]


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


def write_readme() -> None:
    readme_tables.write_block(render(results_files()), START, END)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv.gz"], choices=["parquet", "csv.gz"])
    parser.add_argument("--workdir", default=str(ROOT / "bench" / ".work" / "events"))
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("APPROACH", "FOLDER", "OUT"))
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    args = parser.parse_args()
    if args.readme:
        write_readme()
        return
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    workdir = Path(args.workdir)
    record = {"events_requested": args.events, "machine": {"cores": psutil.cpu_count(), "python": platform.python_version(),
              "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)}, "results": {}}
    for fmt in args.formats:
        folder = generate(args.events, fmt, workdir)
        out_m, out_p = workdir / f"out-mailseg-{fmt}", workdir / f"out-pandas-{fmt}"
        entry = {"input_mb": round(sum(p.stat().st_size for p in folder.glob("events-*")) / 2**20, 1),
                 "mailseg": measure("mailseg", folder, out_m)}
        if not args.skip_pandas:
            entry["pandas"] = measure("pandas", folder, out_p)
            if entry["mailseg"]["status"] == entry["pandas"]["status"] == "ok":
                entry["check"] = compare(out_m, out_p, entry["mailseg"]["users_path"])
        record["results"][fmt] = entry
        print(json.dumps({fmt: entry}), flush=True)
        shutil.rmtree(out_m, ignore_errors=True)
        shutil.rmtree(out_p, ignore_errors=True)
    target = ROOT / "bench" / "results" / f"events_{args.events}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
