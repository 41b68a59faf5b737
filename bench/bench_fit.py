"""Fit benchmark: wall time and peak memory per engine against scikit-learn KMeans in memory.

    python bench/bench_fit.py --rows 1000000 10000000

For each size: generate seed-like users (Parquet), ingest them with `mailseg ingest`
(partitioned clean layer), then fit k=6 once per engine, each in a fresh process so
its peak memory is its own. Peak memory is the largest sum of RSS over the process
tree (client + Dask workers), sampled every 50 ms. `sklearn` reads the same clean
layer into pandas, scales it and runs KMeans(n_clusters=6, random_state=seed)
(Lloyd, default n_init); `sklearn10` the same with n_init=10 (the quality
reference). `passes` (a fresh process too) times one Lloyd pass (k=6, over every user) with the
features kept in worker memory and read from Parquet, against a pyarrow scan of the same columns by
the same workers. Results: bench/results/fit_<rows>.json and a table on stdout;
`python bench/bench_fit.py --readme` writes README.md's table from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import readme_tables  # noqa: E402  the README's marked blocks, the commit measured

START, END = "<!-- bench:fit:start -->", "<!-- bench:fit:end -->"


class PeakRSS:
    """Largest total RSS of this process and its children while the block runs."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fit_one(users: str, engine: str, seed: int) -> dict:
    """Runs inside a fresh process: one fit, its time, inertia and peak memory."""
    from mailseg_dist.core.config import load_config

    cfg = load_config(overrides={"model.k": 6, "model.seed": seed})
    with PeakRSS() as peak:
        start = time.perf_counter()
        if engine.startswith("sklearn"):
            inertia, extra = _sklearn_fit(users, cfg, n_init=10 if engine == "sklearn10" else "auto")
        else:
            inertia, extra = _dask_fit(users, cfg, engine)
        seconds = time.perf_counter() - start
    return {"engine": engine, "seconds": round(seconds, 2), "peak_rss_mb": round(peak.peak / 2**20, 1),
            "inertia": inertia, **extra}


def _sklearn_fit(users: str, cfg: dict, n_init) -> tuple[float, dict]:
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from mailseg_dist.model.features import feature_frame

    features = feature_frame(pd.read_parquet(users), cfg["features"])
    x = StandardScaler().fit_transform(features)
    model = KMeans(n_clusters=6, random_state=cfg["model"]["seed"], n_init=n_init).fit(x)
    return float(model.inertia_), {"n_iter": int(model.n_iter_)}


def _dask_fit(users: str, cfg: dict, engine: str) -> tuple[float, dict]:
    from mailseg_dist.core.client import open_client
    from mailseg_dist.model.modelling import fit_segments

    # daskml_native: dask-ml's k-means|| start with our init_max_iter (2); daskml_defaults: dask-ml as its users
    # run it (k-means||, init_max_iter None, max_iter 300). Our default starts every engine from the hashed sample.
    cfg["model"]["engine"] = engine.split("_")[0]
    if engine in ("daskml_native", "daskml_defaults"):
        cfg["model"]["init"] = "native"
    if engine == "daskml_defaults":
        cfg["model"].update(daskml_init_max_iter=None, max_iter=300)
    cfg["quality"]["bootstrap_rounds"] = 0  # measure the fit, not the quality extras
    # mailseg's own LocalCluster (2 workers x 1 thread, 4 GiB, its worker malloc settings): a bare LocalCluster
    # with Dask's malloc setting made every Lloyd pass 2x slower than `mailseg run` sees it.
    cfg["cluster"].update(dashboard=False, progress=False)
    with open_client(cfg["cluster"]) as client:
        result = fit_segments(users, cfg, client)
    fit_parts = ("read", "scaler", "sample", "cache", "k_search", "final_fit")
    return float(result.inertia), {"n_iter": result.n_iter, "stage_seconds": result.timings,
                                   "fit_seconds": round(sum(result.timings.get(p, 0) for p in fit_parts), 2)}


def _scan_unit(unit, columns: list[str]) -> int:
    """A pyarrow read of one unit's columns, nothing else: what a pass cannot do in less."""
    from mailseg_dist.core.storage import open_parquet

    path, group, _ = unit
    with open_parquet(path) as parquet:
        table = parquet.read(columns=columns) if group is None else parquet.read_row_group(group, columns=columns)
    return table.num_rows


def _scan_group(group, columns: list[str]) -> int:
    """`_scan_unit` of consecutive units in one task, as a pass from Parquet reads them (scaler.group_partials)."""
    return sum(_scan_unit(unit, columns) for unit in group)


def _median_seconds(run, repeats: int) -> tuple[float, list[float]]:
    """run(i) for i = 0 (a warm-up: the workers' imports and first allocations are not a pass) .. repeats."""
    run(0)
    times = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        run(i)
        times.append(round(time.perf_counter() - start, 3))
    return statistics.median(times), times


def passes_one(users: str, seed: int, repeats: int = 5) -> dict:
    """Runs inside a fresh process: one pyarrow scan and one Lloyd pass, uncached and cached, each `repeats` times."""
    import dask
    from distributed import wait

    from mailseg_dist.core.client import open_client
    from mailseg_dist.core.config import load_config
    from mailseg_dist.core.progress import compute
    from mailseg_dist.core.stages import Stages
    from mailseg_dist.model.engines.lloyd import initial_centers
    from mailseg_dist.model.features import raw_columns
    from mailseg_dist.model.kernels import stats_many
    from mailseg_dist.model.prepare import prepare
    from mailseg_dist.model.scaler import unit_groups

    cfg = load_config(overrides={"model.k": 6, "model.seed": seed, "model.cache_features": False})
    cfg["cluster"].update(dashboard=False, progress=False)
    with open_client(cfg["cluster"]) as client, dask.config.set(scheduler=client):
        prep = prepare(users, cfg, client, Stages(), 6)
        centers = [initial_centers(prep.xs_start, 6, cfg["model"])]
        (first,) = stats_many(prep.data, centers)
        totals = (first.sum_x, first.sum_xx)  # as Lloyd's passes after its first
        columns = raw_columns(cfg["features"])
        # Every run gets keys of its own (unpure scans; centres nudged by i·1e-12): the same keys could be handed
        # back from a previous run's results not yet released (a 5th scan once took 0.07 s instead of 0.8 s).
        # The scan a pass is held to is the faster of a task a unit and a task a group of units (the pass's own
        # tasks): fewer tasks must not flatter the pass against a scan that pays for more.
        unit_scan_s, unit_scan_all = _median_seconds(
            lambda i: compute(*[dask.delayed(_scan_unit, pure=False)(u, columns) for u in prep.data.units]), repeats)
        group_scan_s, group_scan_all = _median_seconds(
            lambda i: compute(*[dask.delayed(_scan_group, pure=False)(g, columns)
                                for g in unit_groups(prep.data.units)]), repeats)
        scan_s, scan_all = min((unit_scan_s, unit_scan_all), (group_scan_s, group_scan_all))
        groups = len(unit_groups(prep.data.units))
        nudged = lambda i: [centers[0] + i * 1e-12]  # noqa: E731
        read_s, read_all = _median_seconds(lambda i: stats_many(prep.data, nudged(i), totals), repeats)
        del prep
        cfg["model"]["cache_features"] = True  # the blocks the fit keeps (first_pass: groups of units)
        kept = prepare(users, cfg, client, Stages(), 6).data
        wait(kept.array)
        kept_s, kept_all = _median_seconds(lambda i: stats_many(kept, nudged(i), totals), repeats)
    return {"engine": "passes", "rows": kept.n_rows, "units": len(kept.units), "blocks_kept": kept.array.numblocks[0],
            "columns": columns,
            "scan_s": scan_s, "scan_unit_tasks_s": unit_scan_s, "scan_group_tasks_s": group_scan_s,
            "groups": groups, "pass_parquet_s": read_s, "pass_in_memory_s": kept_s,
            "pass_parquet_vs_scan": round(read_s / scan_s, 2),
            "runs": {"scan": scan_all, "scan_unit_tasks": unit_scan_all, "scan_group_tasks": group_scan_all,
                     "parquet": read_all, "in_memory": kept_all}}


def prepare(rows: int, seed: int, workdir: Path) -> str:
    data_dir = workdir / f"data_{rows}"
    source = workdir / f"users_{rows}.parquet"
    if not source.exists():
        subprocess.run(["mailseg", "generate", "--rows", str(rows), "--out", str(source), "--seed", str(seed)],
                       check=True)
    subprocess.run(["mailseg", "ingest", str(source), "--data-dir", str(data_dir), "--month", "2026-01"],
                   check=True, cwd=ROOT)
    return str(data_dir / "parquet" / "users" / "month=2026-01")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", default=["lloyd", "minibatch", "daskml", "daskml_native",
                                                               "daskml_defaults", "sklearn", "sklearn10", "passes"])
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(HERE / ".work"))
    parser.add_argument("--one", nargs=2, metavar=("USERS", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.readme:
        readme_tables.write_block(render(results_files()), START, END)
        return
    if args.one:
        users, engine = args.one
        print(json.dumps(passes_one(users, args.seed) if engine == "passes" else fit_one(users, engine, args.seed)))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    for rows in args.rows:
        users = prepare(rows, args.seed, workdir)
        # Untimed: the first run with a cold numba cache compiles the loops (model/fused.py; 15.1 s against
        # 7.8-8.9 s warm at 10M on the AMD EPYC), a cost a user pays once, not per fit.
        warm_up = _engine_run(users, "lloyd", args.seed)
        results = []
        for engine in args.engines:
            results.append(_engine_run(users, engine, args.seed))
            print(json.dumps(results[-1]), flush=True)
        report(rows, results, load_start, warm_up["seconds"])


def _engine_run(users: str, engine: str, seed: int) -> dict:
    """One engine in a fresh process (`fit_one`, or `passes_one` for "passes")."""
    out = subprocess.run([sys.executable, __file__, "--one", users, engine, "--seed", str(seed)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(rows: int, results: list[dict], load_start: tuple, warm_up_s: float | None = None) -> None:
    passes = next((r for r in results if r["engine"] == "passes"), None)
    results = [r for r in results if r["engine"] != "passes"]
    by = {r["engine"]: r for r in results}
    base = by.get("sklearn")
    ref = by.get("sklearn10", base)
    for r in results:
        if base:
            r["time_vs_sklearn"] = round(r["seconds"] / base["seconds"], 3)
            r["memory_vs_sklearn"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 3)
        if ref:
            r["inertia_vs_best_sklearn_pct"] = round(100 * (r["inertia"] / ref["inertia"] - 1), 4)
        for other in ("daskml", "daskml_native", "daskml_defaults"):
            if other in by and r["engine"] != other:
                r[f"speedup_vs_{other}"] = round(by[other]["seconds"] / r["seconds"], 2)
    from bench_e2e import machine  # here: bench_e2e imports this module

    out = HERE / "results" / f"fit_{rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "commit": readme_tables.git_commit(),
                               "machine": f"{psutil.cpu_count()} cores ({machine()['cpu']}), "
                                          f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
                               "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                               "warm_up_lloyd_s": warm_up_s, "results": results, "passes": passes}, indent=2))
    print(render([json.loads(out.read_text())]))


# ---------------------------------------------------------------- README
LABELS = {"lloyd": "`lloyd` (default)", "minibatch": "`minibatch`", "daskml": "`daskml` (our start)",
          "daskml_native": "`daskml_native`", "daskml_defaults": "`daskml_defaults`", "sklearn": "sklearn `KMeans`",
          "sklearn10": "sklearn `KMeans(n_init=10)`"}
# Issue 12's fit targets: (what, how to read it from a results file, the largest value that meets it).
TARGETS = (
    ("`lloyd` wall / scikit-learn's (read + scale + KMeans)", lambda r, p: r["lloyd"]["time_vs_sklearn"], 0.5),
    ("`lloyd` inertia / `KMeans(n_init=10)`'s", lambda r, p: 1 + r["lloyd"]["inertia_vs_best_sklearn_pct"] / 100,
     1.001),
    ("`lloyd` peak memory / scikit-learn's", lambda r, p: r["lloyd"]["memory_vs_sklearn"], 0.5),
    ("one Lloyd pass, features in worker memory (s)", lambda r, p: p["pass_in_memory_s"], 0.5),
    ("one Lloyd pass from Parquet / a pyarrow scan of its columns", lambda r, p: p["pass_parquet_vs_scan"], 1.5),
)


def results_files() -> list[dict]:
    """The fit results that record their commit (the format `render` reads), smallest size first."""
    files = [json.loads(f.read_text()) for f in (HERE / "results").glob("fit_*.json")]
    return sorted((f for f in files if f.get("commit")), key=lambda f: f["rows"])


def _row(r: dict) -> str:
    delta = "reference" if r["engine"] == "sklearn10" else f"{r.get('inertia_vs_best_sklearn_pct', 0):+.3f}%"
    return (f"| {LABELS.get(r['engine'], r['engine'])} | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} | "
            f"{r.get('time_vs_sklearn', 0):.2f} | {r.get('memory_vs_sklearn', 0):.2f} | {delta} |")


def _targets(report: dict) -> str:
    by, passes, parts = {r["engine"]: r for r in report["results"]}, report.get("passes"), []
    for what, measure, limit in TARGETS:
        try:
            value = measure(by, passes)
        except (KeyError, TypeError):
            parts.append(f"{what} ≤ {limit}: not measured")
            continue
        parts.append(f"{what} ≤ {limit}: {value:.3f} ({'met' if value <= limit else 'not met'})")
    return "Issue 12 targets: " + "; ".join(parts) + "."


def render(reports: list[dict]) -> str:
    out = []
    for report in reports:
        out += [f"| {report['rows']:,} users | seconds | peak MB | × sklearn time | × sklearn memory | Δ inertia |",
                "|---|---|---|---|---|---|", *(_row(r) for r in report["results"]), ""]
        p = report.get("passes")
        if p:
            out += [f"One Lloyd pass over the {p['rows']:,} users (k=6, medians of {len(p['runs']['scan'])}): "
                    f"{p['pass_in_memory_s']:.2f} s with the features in worker memory"
                    + (f" ({p['blocks_kept']} blocks)" if "blocks_kept" in p else "") + f", {p['pass_parquet_s']:.2f} s "
                    f"reading them from Parquet ({p['units']} units), where a pyarrow scan of the same columns by "
                    f"the same workers takes {p['scan_s']:.2f} s ({p['pass_parquet_vs_scan']:.2f}×)"
                    + (f"; the faster of a task a unit ({p['scan_unit_tasks_s']:.2f} s) and a task a group of units "
                       f"({p['groups']} groups, {p['scan_group_tasks_s']:.2f} s), as the pass reads them"
                       if "groups" in p else "") + ".", ""]
        out += [_targets(report), "",
                f"Measured {report['date'][:10]}, commit `{report['commit']}`, {report['machine']}, load average "
                f"{report['loadavg_start'][0]:.1f} at start and {report['loadavg_end'][0]:.1f} at end"
                + (f"; every engine timed after an untimed `lloyd` run ({report['warm_up_lloyd_s']:.1f} s), so that "
                   "none pays the one-time compile of numba's loops into its on-disk cache"
                   if report.get("warm_up_lloyd_s") else "") + ".", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


if __name__ == "__main__":
    main()
