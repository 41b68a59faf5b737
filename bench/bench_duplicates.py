"""The ingest's check for Ids repeated across parts: Id buckets against Dask's value_counts.

    python bench/bench_duplicates.py --rows 10000000

Users parts as the clean pass writes them (100,000 rows each; only the two columns the check reads,
Id and source row) are generated once in bench/.work/duplicates_<rows>/: `unique` holds every Id
once in random order (every part's Id range overlaps the others, so every part is compared), and
`repeated` the same with 1% of the rows given the Id of another row. Each run is a fresh process
with a LocalCluster of 2 workers x 1 thread and 1 GiB each (as the larger-than-memory test), so the
workers' peak RSS (sampled every 20 ms) is the check's own: `value_counts` (what
`inputs.duplicate_ids` ran until then: a task-shuffled value_counts, then the source rows of the
repeated Ids) and `buckets` (what it runs now). Runs alternate; both must find the same Ids and rows.
Results: bench/results/duplicates_<rows>.json; `python bench/bench_duplicates.py --readme` writes README.md's
table from them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import readme_tables  # noqa: E402
from bench_e2e import git, load, machine, versions  # noqa: E402

from mailseg_dist.inputs.schema import SOURCE_ROW  # noqa: E402

PART_ROWS = 100_000
START, END = "<!-- bench:duplicates:start -->", "<!-- bench:duplicates:end -->"
APPROACHES = ("value_counts", "buckets")


def _write_parts(folder: Path, ids: np.ndarray, rows: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, lo in enumerate(range(0, len(ids), PART_ROWS)):
        part = pd.DataFrame({"Id": ids[lo:lo + PART_ROWS], SOURCE_ROW: rows[lo:lo + PART_ROWS]})
        part.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


def make_parts(rows: int, seed: int, workdir: Path) -> dict[str, Path]:
    folders = {"unique": workdir / "unique", "repeated": workdir / "repeated"}
    if (workdir / "done").exists():
        return folders
    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows).astype(np.int64) + 1_000_000
    source_rows = np.arange(2, rows + 2, dtype=np.int64)
    _write_parts(folders["unique"], ids, source_rows)
    copies = rng.random(rows) < 0.01
    ids[copies] = ids[rng.integers(0, rows, int(copies.sum()))]
    _write_parts(folders["repeated"], ids, source_rows)
    (workdir / "done").write_text("")
    return folders


def value_counts_first_rows(files: list[str]) -> pd.Series:
    """The alternative, as inputs/duplicate_ids.py had it: a task-shuffled value_counts of the Ids (one
    output per 8 parts), then the lowest source row of the Ids seen twice or more."""
    import dask
    import dask.dataframe as dd

    from mailseg_dist.core.progress import compute

    users = dd.read_parquet(files, columns=["Id", SOURCE_ROW])
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        counts = users["Id"].value_counts(split_out=max(1, len(files) // 8))
        (repeated,) = compute(counts[counts > 1])
    if not len(repeated):
        return pd.Series(dtype="int64")
    dups = users[users["Id"].isin(list(repeated.index))]
    return compute(dups.groupby("Id")[SOURCE_ROW].min())[0]


def bucket_first_rows(files: list[str]) -> pd.Series:
    from mailseg_dist.inputs.duplicate_ids import _repeated_across

    return _repeated_across(files)


def _worker_peaks(stop: threading.Event, peaks: dict) -> None:
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.02)


def run_one(approach: str, folder: str) -> dict:
    """Runs inside a fresh process: one check, its seconds, the workers' RSS before and at peak."""
    import dask
    import psutil
    from distributed import Client, LocalCluster

    from mailseg_dist.core.parquet import parquet_files

    files = [str(p) for p in parquet_files(folder)]
    check = {"value_counts": value_counts_first_rows, "buckets": bucket_first_rows}[approach]
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB", host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client, dask.config.set(scheduler=client):
        client.run(lambda: None)
        before = [psutil.Process(p).memory_info().rss for p in (c.pid for c in psutil.Process().children())]
        peaks: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_worker_peaks, args=(stop, peaks))
        sampler.start()
        start = time.perf_counter()
        found = check(files)
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
    found = found.sort_index()
    return {"approach": approach, "s": round(seconds, 2), "worker_peak_mib": round(max(peaks.values()) / 2**20),
            "worker_start_mib": round(max(before) / 2**20), "ids_found": int(len(found)),
            "digest": int(pd.util.hash_pandas_object(found.reset_index()).sum() % 2**53)}


def measure(folders: dict[str, Path], repeat: int) -> dict:
    runs: dict = {data: {a: [] for a in APPROACHES} for data in folders}
    for rep in range(repeat):
        for data, folder in folders.items():
            for approach in (APPROACHES if rep % 2 == 0 else APPROACHES[::-1]):
                out = subprocess.run([sys.executable, __file__, "--one", approach, str(folder)], check=True,
                                     capture_output=True, text=True)
                runs[data][approach].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps({"rep": rep, "data": data, **runs[data][approach][-1]}), flush=True)
    return runs


def summary(runs: dict) -> dict:
    out = {}
    for data, by in runs.items():
        if len({r["digest"] for a in APPROACHES for r in by[a]}) != 1:
            raise SystemExit(f"{data}: the approaches found different Ids or rows")
        med = {a: {k: round(statistics.median(r[k] for r in by[a]), 2) for k in ("s", "worker_peak_mib",
                                                                                 "worker_start_mib")}
               for a in APPROACHES}
        out[data] = {"ids_found": by["buckets"][0]["ids_found"], "median": med,
                     "buckets_vs_value_counts_s": round(med["buckets"]["s"] / med["value_counts"]["s"], 3),
                     "buckets_vs_value_counts_peak_over_start": round(
                         (med["buckets"]["worker_peak_mib"] - med["buckets"]["worker_start_mib"])
                         / (med["value_counts"]["worker_peak_mib"] - med["value_counts"]["worker_start_mib"]), 3)}
    return out


def render(records: list[dict]) -> str:
    """README's table, a row per size and data set, from bench/results/duplicates_<rows>.json."""
    data_sets = {"unique": "each Id once", "repeated": "1% of rows repeat an Id"}
    lines = ["| users | data | repeated Ids found | value_counts s | buckets s | × time | value_counts worker peak "
             "MiB | buckets worker peak MiB | × peak over start |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["rows"]):
        for data, res in r["results"].items():
            vc, bk = res["median"]["value_counts"], res["median"]["buckets"]
            lines.append(f"| {r['rows']:,} | {data_sets[data]} | {res['ids_found']:,} | {vc['s']:.2f} | {bk['s']:.2f} | "
                         f"{res['buckets_vs_value_counts_s']:.2f} | {vc['worker_peak_mib']:.0f} | "
                         f"{bk['worker_peak_mib']:.0f} | {res['buckets_vs_value_counts_peak_over_start']:.2f} |")
    when = "; ".join(f"{r['rows']:,}: {r['date']}, commit `{r['git']['commit'][:7]}`, {r['machine']['cpu']}, medians "
                     f"of {r['repeat']}, workers at {r['runs']['unique']['buckets'][0]['worker_start_mib']} MiB "
                     f"before the check, load average {r['machine']['load_at_start'][0]:.1f} at start"
                     for r in records)
    return "\n".join([*lines, "", f"({when}.)"]) + "\n"


def results_files() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("duplicates_*.json"))]


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--one", nargs=2, metavar=("APPROACH", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    args = parser.parse_args()
    if args.readme:
        readme_tables.write_block(render(results_files()), START, END)
        return
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    folders = make_parts(args.rows, args.seed, HERE / ".work" / f"duplicates_{args.rows}")
    load_start = load()
    runs = measure(folders, args.repeat)
    record = {"rows": args.rows, "date": time.strftime("%Y-%m-%d"), "git": {"commit": git("rev-parse", "HEAD")},
              "machine": {**machine(), "load_at_start": load_start, "load_at_end": load()}, "versions": versions(),
              "cluster": "LocalCluster 2 workers x 1 thread, 1 GiB each", "repeat": args.repeat,
              "results": summary(runs), "runs": runs}
    out = HERE / "results" / f"duplicates_{args.rows}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(render([record]), f"wrote {out}")


if __name__ == "__main__":
    main()
