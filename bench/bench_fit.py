"""Fit benchmark: wall time and peak memory per engine against scikit-learn KMeans in memory.

    python bench/bench_fit.py --rows 1000000 10000000

For each size: generate seed-like users (Parquet), ingest them with `mailseg ingest`
(partitioned clean layer), then fit k=6 once per engine, each in a fresh process so
its peak memory is its own. Peak memory is the largest sum of RSS over the process
tree (client + Dask workers), sampled every 50 ms. `sklearn` reads the same clean
layer into pandas, scales it and runs KMeans(n_clusters=6, random_state=seed)
(Lloyd, default n_init); `sklearn10` the same with n_init=10 (the quality
reference). Results: bench/results/fit_<rows>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


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
                                                               "daskml_defaults", "sklearn", "sklearn10"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(HERE / ".work"))
    parser.add_argument("--one", nargs=2, metavar=("USERS", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(fit_one(args.one[0], args.one[1], args.seed)))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        users = prepare(rows, args.seed, workdir)
        results = []
        for engine in args.engines:
            out = subprocess.run([sys.executable, __file__, "--one", users, engine, "--seed", str(args.seed)],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
        report(rows, results)


def report(rows: int, results: list[dict]) -> None:
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
    out = HERE / "results" / f"fit_{rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "machine": f"{psutil.cpu_count()} cores, "
                               f"{psutil.virtual_memory().total / 2**30:.0f} GiB", "results": results}, indent=2))
    print(f"\n{rows:,} users, k=6")
    print(f"{'engine':<13} {'seconds':>8} {'peak MB':>8} {'×time':>6} {'×mem':>6} {'Δinertia %':>11}")
    for r in results:
        print(f"{r['engine']:<13} {r['seconds']:>8} {r['peak_rss_mb']:>8} {r.get('time_vs_sklearn', ''):>6} "
              f"{r.get('memory_vs_sklearn', ''):>6} {r.get('inertia_vs_best_sklearn_pct', ''):>11}")


if __name__ == "__main__":
    main()
