"""End-to-end benchmark (issue 12): the seed notebook, scikit-learn, dask-ml and `mailseg run`, same data, one run.

    python bench/bench_e2e.py                          # 212,292 users (xlsx) and 10,000,000 users (Parquet)
    python bench/bench_e2e.py --rows 212292 --repeat 3 # interleaved repetitions, medians reported
    python bench/bench_e2e.py --rows 60000000          # on request; in-memory approaches skipped where they can't fit
    python bench/bench_e2e.py --fit                    # also bench_fit.py's fit-only table for the same sizes
    python bench/readme_tables.py                      # then: README's speed tables from the latest results

Not part of CI. Input per size: `mailseg generate --rows N --seed S` (xlsx up to Excel's 1,048,575 rows, Parquet
above), cached in bench/.work/seed<S>/users_<N>.<ext>. Approaches, each in its own fresh process:

- `seed`: what the notebook did (../shared/seed/SEED_FACTS.md). pandas `read_excel` (openpyxl), engagement_score,
  StandardScaler; choosing k: the elbow (KMeans(k, random_state=seed), scikit-learn's defaults, on all rows for
  k=2..10) and the silhouette by k (MiniBatchKMeans per k on all rows, `silhouette_score` on 2,000 random rows);
  MiniBatchKMeans(n_clusters=6, random_state=seed, batch_size=256).fit_predict, `silhouette_samples` on a random
  sample of --silhouette-sample users (10,000; the notebook's silhouette was sampled too; the other users' column
  stays empty), PCA(2) for the sheet's pca1/pca2, its six figures with matplotlib (correlation heatmap, elbow,
  silhouette by k, PCA scatter of every user by cluster, silhouette per cluster, mean engagement per cluster),
  the scaler and model saved with joblib, and the workbook (sheets Clusters and Recomendaciones) written with
  `to_excel` (openpyxl). Only on xlsx input. Until 2026-12-02 the elbow, the silhouette by k and the figures were
  left out; the stages `elbow`, `silhouette_by_k` and `figures` are timed apart, and `speedup_vs_seed_fit_only`
  compares with the notebook's time without them (what earlier results called the seed approach).
- `sklearn`: read the same input in memory (xlsx: pandas `read_excel(engine="calamine")`; Parquet: pandas/pyarrow),
  engagement_score, StandardScaler, KMeans(n_clusters=6, random_state=seed). A fit, no outputs written. Skipped
  when its estimated peak (SKLEARN_BYTES_PER_ROW, measured at 10M) exceeds 80% of RAM.
- `daskml`: dask-ml as its users run it, on a LocalCluster like mailseg's (2 workers x 1 thread, 4 GiB): read
  (xlsx through pandas/calamine then from_pandas; Parquet with dd.read_parquet, a partition a row group), features
  persisted, dask-ml StandardScaler (persisted), dask-ml KMeans(n_clusters=6, random_state=seed) with its defaults (k-means||).
- `mailseg_k6`, `mailseg_auto`: the CLI, `mailseg run INPUT --data-dir D --out O --k 6|auto --json`, D and O new
  and empty each time, run from an empty folder (no conf/local.yaml). Records the summary's `timings`, the
  stage lines it logs (publish's parts are only there), its wall time including process start, imports and the
  LocalCluster, and `startup` (process start to the first stage) and `teardown` (the last log line to exit).

Each measurement: wall seconds from the process's start (psutil create_time) to the end of the work, seconds per
stage, the peak of the summed RSS of the process and its children (bench_fit.PeakRSS, sampled every 50 ms:
client + scheduler + workers; for the CLI the tree of the `mailseg` process, the measuring wrapper's own RSS
taken off), and the CPU seconds (user + system) of the whole tree from getrusage(RUSAGE_CHILDREN) once it has
exited, less disturbed than wall time when other jobs load the machine. The load average (os.getloadavg) is
recorded before and after each measurement. With --repeat N the approaches run round-robin N times (every other
round in reverse order) and the median is reported (the faster middle run for an even N; wall time and stages
from the same run). `daskml` and `sklearn` are stopped after --timeout seconds (default 300) and recorded as a
timeout, with the stages they had finished.

Results: bench/results/<YYYY-MM-DD>-<rows>.json (machine, load, library versions, git commit and uncommitted
library changes, every run, medians, ratios against the seed approach and sklearn, and the issue's targets).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import psutil
from bench_fit import HERE, ROOT, PeakRSS
import readme_tables  # noqa: E402  the newest results of another size (per-user target)

DEFAULT_ROWS = [212_292, 10_000_000]
EXCEL_MAX_ROWS = 1_048_575
FEATURES = ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]
K = 6
SEED_KS = list(range(2, 11))  # the notebook's elbow and silhouette by k
SEED_K_CHOICE_STAGES = ("elbow", "silhouette_by_k", "figures")  # left out of the seed approach before 2026-12-02
# sklearn's peak at 10M users in bench/results/fit_10000000.json: 4,816 MB, ~500 B per user (+ margin).
SKLEARN_BYTES_PER_ROW = 520
APPROACHES = {
    "seed": "seed notebook (pandas + openpyxl, MiniBatchKMeans)",
    "sklearn": "scikit-learn KMeans in memory",
    "daskml": "dask-ml KMeans",
    "mailseg_k6": "mailseg run --k 6",
    "mailseg_auto": "mailseg run --k auto",
}
MAILSEG_K = {"mailseg_k6": str(K), "mailseg_auto": "auto"}
TIMED_OUT = ("sklearn", "daskml")
# The issue's targets (issue 12): what each is measured on.
TARGETS = [
    {"rows": 212_292, "approach": "mailseg_auto", "what": "end to end, every output", "max_wall_s": 15},
    {"rows": 212_292, "approach": "mailseg_auto", "what": "faster than the seed approach", "min_speedup_vs_seed": 18},
    {"rows": 212_292, "approach": "mailseg_auto", "what": "ingest (read the xlsx, clean, write Parquet) beyond the "
     "cluster start", "stage": ["ingest_read", "ingest_clean"], "max_stage_s": 3},
    {"rows": 10_000_000, "approach": "mailseg_k6", "what": "end to end, every output", "max_wall_s": 60},
    {"rows": 10_000_000, "approach": "mailseg_k6", "what": "publish (every output after the model)", "stage": "publish",
     "max_stage_s": 20},
    {"rows": 10_000_000, "approach": "mailseg_auto", "what": "end to end, every output", "max_wall_s": 120},
    # Against the newest 10M results file (bench/results): seconds per user at 60M over seconds per user at 10M.
    {"rows": 60_000_000, "approach": "mailseg_auto", "what": "end to end, seconds per user against 10,000,000 users'",
     "per_user_of": 10_000_000, "max_ratio": 2.5},
    {"rows": 100_000_000, "approach": "mailseg_k6", "what": "peak memory of the whole process tree",
     "max_peak_mb": 6 * 1024},
]
VERSIONS = ["mailseg", "pandas", "numpy", "scikit-learn", "scipy", "dask", "distributed", "dask-ml", "pyarrow",
            "openpyxl", "python-calamine", "fastexcel", "xlsxwriter", "rustpy-xlsxwriter", "isal", "psutil"]
# mailseg's publish stages are only in its log: "<what it does>: 1.2 s".
STAGE_LINE = re.compile(r"^mailseg: (.+): (\d+(?:\.\d+)?) s$")
PUBLISH_LOG = {"writing per-user results": "publish_user_results", "writing the model, scaler": "publish_model_files",
               "drawing the figures": "publish_figures", "finishing the figures": "publish_figures",
               "writing the report": "publish_report",
               "finishing the workbook": "publish_xlsx_wait"}


# ---------------------------------------------------------------- one approach, inside its own process

class Clock:
    """Seconds per stage, saved to `progress` after each one so a stopped run still tells how far it got."""

    def __init__(self, progress: str | None):
        self.stages: dict[str, float] = {}
        self.progress = progress

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.stages[name] = round(time.perf_counter() - start, 3)
        if self.progress:
            Path(self.progress).write_text(json.dumps(self.stages))


def read_frame(path: str, engine: str | None = None):
    import pandas as pd

    if path.endswith(".xlsx"):
        return pd.read_excel(path, engine=engine)
    return pd.read_parquet(path)


def add_engagement(df) -> None:
    df["engagement_score"] = df["open"] + 2 * df["click"] + 3 * df["Comprador"]


def seed_approach(path: str, seed: int, clock: Clock, scratch: Path, silhouette_sample: int) -> dict:
    with clock("imports"):
        import joblib
        import numpy as np
        import pandas as pd
        from sklearn.cluster import KMeans, MiniBatchKMeans
        from sklearn.decomposition import PCA
        from sklearn.metrics import silhouette_samples, silhouette_score
        from sklearn.preprocessing import StandardScaler
    with clock("read_excel"):
        df = pd.read_excel(path, engine="openpyxl")  # the notebook read with pandas' default engine then, openpyxl
    with clock("engagement"):
        add_engagement(df)
    with clock("scale"):
        scaler = StandardScaler()
        x = scaler.fit_transform(df[FEATURES])
    with clock("elbow"):
        inertias = [KMeans(n_clusters=k, random_state=seed).fit(x).inertia_ for k in SEED_KS]
    with clock("silhouette_by_k"):
        by_k = [silhouette_score(x, MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=256).fit_predict(x),
                                 sample_size=2000, random_state=seed) for k in SEED_KS]
    with clock("fit"):
        model = MiniBatchKMeans(n_clusters=K, random_state=seed, batch_size=256)
        df["cluster"] = model.fit_predict(x)
    with clock("silhouette"):
        rows = np.random.default_rng(seed).choice(len(df), size=min(silhouette_sample, len(df)), replace=False)
        values = silhouette_samples(x[rows], df["cluster"].to_numpy()[rows])
        df["silhouette_score"] = np.nan
        df.iloc[rows, df.columns.get_loc("silhouette_score")] = values
    with clock("pca"):
        df[["pca1", "pca2"]] = PCA(n_components=2, random_state=seed).fit_transform(x)
    with clock("figures"):
        seed_figures(df, inertias, by_k, scratch / "figuras")
    with clock("save_model"):
        joblib.dump(model, scratch / "modelo_clustering.pkl")
        joblib.dump(scaler, scratch / "escalador.pkl")
    with clock("to_excel"):
        means = df.groupby("cluster")["engagement_score"].mean()
        levels = pd.DataFrame({"Cluster": means.index, "Nivel de compromiso": np.where(
            means > df["engagement_score"].mean(), "Alta", "Baja")})
        with pd.ExcelWriter(scratch / "resultados_clustering.xlsx", engine="openpyxl") as writer:
            df.to_excel(writer, sheet_name="Clusters", index=False)
            levels.to_excel(writer, sheet_name="Recomendaciones", index=False)
    return {"n_steps": int(model.n_steps_), "inertia": float(model.inertia_),
            "silhouette_sample": len(rows), "silhouette_mean": round(float(values.mean()), 4),
            "elbow_inertias": [round(float(v), 1) for v in inertias],
            "silhouette_by_k": [round(float(v), 4) for v in by_k]}


def seed_figures(df, inertias: list, by_k: list, folder: Path) -> None:
    """The notebook's six figures, with plain matplotlib (it used seaborn for some; same content)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    clusters = sorted(df["cluster"].unique())

    def save(name, draw):
        fig, ax = plt.subplots(figsize=(8, 6))
        draw(ax)
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=100)
        plt.close(fig)

    corr = df[["send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week",
               "engagement_score"]].corr()

    def heatmap(ax):
        ax.imshow(corr.to_numpy(), cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_xticks(range(len(corr)), corr.columns, rotation=45)
        ax.set_yticks(range(len(corr)), corr.columns)
        for (i, j), v in np.ndenumerate(corr.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)

    save("correlaciones", heatmap)
    save("codo", lambda ax: ax.plot(SEED_KS, inertias, marker="o"))
    save("silueta_por_k", lambda ax: ax.plot(SEED_KS, by_k, marker="o"))
    save("pca", lambda ax: ax.scatter(df["pca1"], df["pca2"], c=df["cluster"], s=1, cmap="tab10"))
    scored = df.dropna(subset=["silhouette_score"])
    save("silueta_por_cluster", lambda ax: ax.violinplot(
        [scored.loc[scored["cluster"] == c, "silhouette_score"] for c in clusters], positions=clusters))
    means = df.groupby("cluster")["engagement_score"].mean()
    save("compromiso", lambda ax: ax.bar(means.index, means.to_numpy(),
                                         color=np.where(means > df["engagement_score"].mean(), "tab:green", "tab:red")))


def sklearn_approach(path: str, seed: int, clock: Clock, scratch: Path, silhouette_sample: int) -> dict:
    with clock("imports"):
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler
    with clock("read"):
        df = read_frame(path, engine="calamine")
    with clock("engagement"):
        add_engagement(df)
    with clock("scale"):
        x = StandardScaler().fit_transform(df[FEATURES])
    with clock("fit"):
        model = KMeans(n_clusters=K, random_state=seed).fit(x)
    return {"n_iter": int(model.n_iter_), "inertia": float(model.inertia_)}


def daskml_approach(path: str, seed: int, clock: Clock, scratch: Path, silhouette_sample: int) -> dict:
    with clock("imports"):
        import dask.dataframe as dd
        from dask_ml.cluster import KMeans
        from dask_ml.preprocessing import StandardScaler
        from distributed import Client, LocalCluster, wait
    with clock("cluster_start"):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="4GiB", host="127.0.0.1",
                               dashboard_address=None, local_directory=str(scratch))
        client = Client(cluster)
    try:
        with clock("read"):
            if path.endswith(".xlsx"):
                ddf = dd.from_pandas(read_frame(path, engine="calamine"), npartitions=2)
            else:
                # One partition a row group (200,000 users): dd.read_parquet's default made the 10M-user file (125 MB,
                # under its 256 MiB blocksize) one partition, and dask-ml's StandardScaler then killed every 4 GiB
                # worker on that 640 MB chunk (KilledWorker on 2026-12-03 and 2026-12-04): what a user would change.
                ddf = dd.read_parquet(path, split_row_groups=True)
            ddf = ddf.assign(engagement_score=ddf["open"] + 2 * ddf["click"] + 3 * ddf["Comprador"])
            x = ddf[FEATURES].astype("float64").to_dask_array(lengths=True).persist()
            wait(x)
        with clock("scale"):
            x = StandardScaler().fit_transform(x).persist()
            wait(x)
        with clock("fit"):
            model = KMeans(n_clusters=K, random_state=seed).fit(x)
    finally:
        with clock("shutdown"):
            client.close()
            cluster.close()
    return {"n_iter": int(model.n_iter_), "partitions": int(x.numblocks[0])}


def mailseg_approach(path: str, k: str, clock: Clock, scratch: Path) -> tuple[dict, float, float]:
    """`mailseg run` in a child process; (facts, wall seconds, peak RSS of the mailseg tree in bytes)."""
    exe = shutil.which("mailseg")
    if exe is None:
        raise SystemExit("mailseg is not on PATH: pip install -e . first")
    cmd = [exe, "run", str(Path(path).resolve()), "--data-dir", str(scratch / "data"), "--out",
           str(scratch / "Resultados"), "--k", k, "--json"]
    own = psutil.Process().memory_info().rss
    lines: list[tuple[float, str]] = []
    with open(scratch / "stdout.txt", "w") as stdout, PeakRSS() as peak:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=scratch, stdout=stdout, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            lines.append((round(time.perf_counter() - start, 3), line.rstrip("\n")))
        code = proc.wait()
        wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"mailseg run exited {code}: " + " | ".join(text for _, text in lines[-5:]))
    summary = json.loads((scratch / "stdout.txt").read_text().strip().splitlines()[-1])
    log_stages = [[m.group(1), float(m.group(2))] for _, text in lines if (m := STAGE_LINE.match(text))]
    first = next(t for t, text in lines if text.endswith(" …"))
    done = next(t for t, text in reversed(lines) if text.startswith("mailseg: done in "))
    stages = {"startup": first, **summary["timings"], "teardown": round(wall - done, 3)}
    for label, seconds in log_stages:
        name = next((v for key, v in PUBLISH_LOG.items() if label.startswith(key)), None)
        if name:
            stages[name] = seconds
    facts = {"command": "mailseg " + " ".join(cmd[1:]), "k": summary["k"], "k_reason": summary["k_reason"],
             "engine": summary["engine"], "n_iter": summary["n_iter"], "inertia": summary["inertia"],
             "silhouette": summary["silhouette"], "rows_kept": summary["rows_kept"],
             "workers_lost": summary.get("cluster", {}).get("workers_lost"), "job_total_s": summary["timings"]["total"],
             "stages": stages, "log_stages": log_stages, "wrapper_rss_mb": round(own / 2**20, 1)}
    return facts, wall, max(peak.peak - own, 0)


def one(approach: str, path: str, seed: int, scratch: Path, progress: str | None, silhouette_sample: int) -> dict:
    """Runs inside a fresh process: one approach, its wall time, stages and peak memory."""
    born = psutil.Process().create_time()
    clock = Clock(progress)
    clock.stages["process_start"] = round(time.time() - born, 3)
    scratch.mkdir(parents=True, exist_ok=True)
    if approach.startswith("mailseg_"):
        facts, wall, peak = mailseg_approach(path, MAILSEG_K[approach], clock, scratch)
        return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak / 2**20, 1), **facts}
    run = {"seed": seed_approach, "sklearn": sklearn_approach, "daskml": daskml_approach}[approach]
    with PeakRSS() as peak:
        facts = run(path, seed, clock, scratch, silhouette_sample)
        wall = time.time() - born
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak.peak / 2**20, 1), "stages": clock.stages, **facts}


# ---------------------------------------------------------------- the driver

def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"cores": psutil.cpu_count(), "physical_cores": psutil.cpu_count(logical=False), "cpu": cpu,
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform()}


def versions() -> dict:
    out = {}
    for name in VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def prepare_input(rows: int, seed: int, workdir: Path) -> tuple[Path, dict]:
    """The generated users for (rows, seed), cached: xlsx up to Excel's limit, Parquet above."""
    fmt = "xlsx" if rows <= EXCEL_MAX_ROWS else "parquet"
    path = workdir / f"seed{seed}" / f"users_{rows}.{fmt}"
    info = {"path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path), "format": fmt,
            "rows": rows, "seed": seed, "generated_by": f"mailseg generate --rows {rows} --seed {seed} --out {path.name}"}
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        subprocess.run(["mailseg", "generate", "--rows", str(rows), "--out", str(path), "--seed", str(seed)],
                       check=True, cwd=path.parent)
        info["generate_s"] = round(time.perf_counter() - start, 1)
    info["bytes"] = path.stat().st_size
    return path, info


def skip_reason(approach: str, rows: int, fmt: str) -> str | None:
    if approach == "seed" and fmt != "xlsx":
        return (f"the notebook reads and writes one Excel sheet, at most {EXCEL_MAX_ROWS:,} users; "
                f"{rows:,} users are given as Parquet")
    ram = psutil.virtual_memory().total
    if approach in ("seed", "sklearn") and rows * SKLEARN_BYTES_PER_ROW > 0.8 * ram:
        return (f"in memory it needs about {rows * SKLEARN_BYTES_PER_ROW / 2**30:.0f} GiB "
                f"({SKLEARN_BYTES_PER_ROW} B per user), more than 80% of this machine's {ram / 2**30:.0f} GiB")
    return None


def measure(approach: str, path: Path, args, scratch: Path) -> dict:
    """Run one approach in a fresh process (its own session, so a timeout stops its whole tree)."""
    progress = scratch.parent / f"{scratch.name}.progress.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", approach, str(path), "--seed", str(args.seed),
           "--scratch", str(scratch), "--progress", str(progress), "--silhouette-sample", str(args.silhouette_sample)]
    timeout = args.timeout if approach in TIMED_OUT else None
    run = {"load_before": load()}
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        done = json.loads(progress.read_text()) if progress.exists() else {}
        run.update(status="timeout", timeout_s=timeout, stages_done=done)
    else:
        if proc.returncode == 0:
            run.update(status="ok", **json.loads(out.strip().splitlines()[-1]))
        else:
            run.update(status="failed", error=" | ".join(err.strip().splitlines()[-3:]))
    run["parent_wall_s"] = round(time.perf_counter() - start, 2)
    if run["status"] == "ok":
        run["cpu_s"] = round(children_cpu() - cpu, 1)
    run["load_after"] = load()
    shutil.rmtree(scratch, ignore_errors=True)
    progress.unlink(missing_ok=True)
    return run


def children_cpu() -> float:
    """User + system CPU seconds of every finished descendant (each approach's process tree once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the faster of the middle two for an even count)."""
    ok = sorted((r for r in runs if r["status"] == "ok"), key=lambda r: r["wall_s"])
    return ok[(len(ok) - 1) // 2] if ok else runs[-1]


def summarise(approach: str, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    entry = {"label": APPROACHES[approach], "runs": runs}
    if not ok:
        last = runs[-1]
        done = ", ".join(f"{k} {v:.1f} s" for k, v in last.get("stages_done", {}).items()) or "none"
        entry.update(status=last["status"], reason=(
            f"stopped after {last['timeout_s']:.0f} s; stages finished: {done}"
            if last["status"] == "timeout" else last.get("error", "")))
        return entry
    mid = median_run(runs)  # its stages add up to its wall time, so wall and stages come from the same run
    entry.update(status="ok", wall_s=mid["wall_s"], cpu_s=statistics.median_low(r["cpu_s"] for r in ok),
                 peak_rss_mb=statistics.median_low(r["peak_rss_mb"] for r in ok),
                 wall_s_range=[min(r["wall_s"] for r in ok), max(r["wall_s"] for r in ok)],
                 stages=mid.get("stages", {}), n_ok=len(ok))
    if len(ok) < len(runs):
        entry["not_ok"] = [r["status"] for r in runs if r["status"] != "ok"]
    return entry


def ratios(results: dict) -> None:
    seed = results.get("seed")
    if seed and seed["status"] == "ok" and all(s in seed["stages"] for s in SEED_K_CHOICE_STAGES):
        # What earlier results called the seed approach: the same run without choosing k and drawing.
        fit_only = seed["wall_s"] - sum(seed["stages"][s] for s in SEED_K_CHOICE_STAGES)
        seed["wall_s_fit_only"] = round(fit_only, 2)
        for entry in results.values():
            if entry["status"] == "ok":
                entry["speedup_vs_seed_fit_only"] = round(fit_only / entry["wall_s"], 2)
    for base in ("seed", "sklearn"):
        ref = results.get(base)
        if not ref or ref["status"] != "ok":
            continue
        for entry in results.values():
            if entry["status"] == "ok":
                entry[f"speedup_vs_{base}"] = round(ref["wall_s"] / entry["wall_s"], 2)
                entry[f"cpu_speedup_vs_{base}"] = round(ref["cpu_s"] / entry["cpu_s"], 2)
                entry[f"memory_vs_{base}"] = round(entry["peak_rss_mb"] / ref["peak_rss_mb"], 2)


def check_targets(rows: int, results: dict) -> list[dict]:
    out = []
    for target in (t for t in TARGETS if t["rows"] == rows):
        entry = results.get(target["approach"], {})
        row = {k: v for k, v in target.items() if k != "rows"}
        if entry.get("status") != "ok":
            row.update(measured=None, met=False, note=f"{target['approach']} {entry.get('status', 'not run')}")
        elif "max_wall_s" in target:
            row.update(measured=entry["wall_s"], met=entry["wall_s"] <= target["max_wall_s"],
                       factor_to_go=round(entry["wall_s"] / target["max_wall_s"], 2))
        elif "max_stage_s" in target:
            seconds = round(sum(entry["stages"][name] for name in _names(target["stage"])), 3)
            row.update(measured=seconds, met=seconds <= target["max_stage_s"],
                       factor_to_go=round(seconds / target["max_stage_s"], 2))
        elif "max_peak_mb" in target:
            row.update(measured=entry["peak_rss_mb"], met=entry["peak_rss_mb"] <= target["max_peak_mb"],
                       factor_to_go=round(entry["peak_rss_mb"] / target["max_peak_mb"], 2))
        elif "per_user_of" in target:
            row.update(per_user_ratio(rows, entry, target))
        elif "speedup_vs_seed" in entry:
            row.update(measured=entry["speedup_vs_seed"], met=entry["speedup_vs_seed"] >= target["min_speedup_vs_seed"],
                       factor_to_go=round(target["min_speedup_vs_seed"] / entry["speedup_vs_seed"], 2),
                       measured_fit_only=entry.get("speedup_vs_seed_fit_only"))
        else:
            row.update(measured=None, met=False, note="the seed approach was not measured")
        out.append(row)
    return out


def _names(stage: str | list[str]) -> list[str]:
    """A target's stage, or the stages whose seconds it adds up."""
    return [stage] if isinstance(stage, str) else list(stage)


def per_user_ratio(rows: int, entry: dict, target: dict, results_dir: Path = HERE / "results") -> dict:
    """Seconds per user of `entry` over the same approach's in the newest results file of target["per_user_of"]
    users: how the time grows beyond proportional."""
    base = {r["rows"]: r for r in readme_tables.latest_results(results_dir)}.get(target["per_user_of"])
    other = (base or {}).get("approaches", {}).get(target["approach"], {})
    if other.get("status") != "ok":
        return {"measured": None, "met": False, "note": f"no {target['per_user_of']:,}-user run of {target['approach']}"}
    ratio = (entry["wall_s"] / rows) / (other["wall_s"] / target["per_user_of"])
    return {"measured": round(ratio, 2), "met": ratio <= target["max_ratio"],
            "factor_to_go": round(ratio / target["max_ratio"], 2),
            "against": {"date": base["date"], "commit": base["git"]["commit"][:7], "wall_s": other["wall_s"]}}


def bench_size(rows: int, args, workdir: Path) -> dict:
    path, info = prepare_input(rows, args.seed, workdir)
    started = dt.datetime.now()
    record = {"rows": rows, "date": started.strftime("%Y-%m-%d"), "started": started.isoformat(timespec="seconds"),
              "command": "python bench/bench_e2e.py " + " ".join(sys.argv[1:]), "input": info,
              "machine": {**machine(), "load_at_start": load()}, "versions": versions(),
              "git": {"commit": git("rev-parse", "HEAD"),
                      "uncommitted_library_files": git("status", "--porcelain", "--", "mailseg_dist", "jobs", "conf",
                                                       "pyproject.toml").splitlines()},
              "settings": {"k": K, "seed": args.seed, "repeat": args.repeat, "timeout_s": args.timeout,
                           "silhouette_sample": args.silhouette_sample, "cluster": "LocalCluster 2 workers x 1 thread, 4 GiB"}}
    todo = [a for a in args.approaches if not skip_reason(a, rows, info["format"])]
    runs: dict[str, list] = {a: [] for a in todo}
    for rep in range(args.repeat):
        for approach in (todo if rep % 2 == 0 else todo[::-1]):
            if runs[approach] and runs[approach][-1]["status"] == "timeout":
                continue  # once over the limit, not again
            run = measure(approach, path, args, workdir / "runs" / f"{rows}-{approach}-{rep}")
            runs[approach].append(run)
            print(json.dumps({"rows": rows, "approach": approach, "rep": rep, **{
                k: run.get(k) for k in ("status", "wall_s", "peak_rss_mb", "load_before", "load_after")}}), flush=True)
    results = {}
    for approach in args.approaches:
        reason = skip_reason(approach, rows, info["format"])
        results[approach] = ({"label": APPROACHES[approach], "status": "skipped", "reason": reason} if reason
                             else summarise(approach, runs[approach]))
    ratios(results)
    record["machine"]["load_at_end"] = load()
    record["approaches"] = results
    record["targets"] = check_targets(rows, results)
    out = HERE / "results" / f"{record['date']}-{rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print_table(record)
    print(f"wrote {out.relative_to(ROOT)}")
    return record


def print_table(record: dict) -> None:
    print(f"\n{record['rows']:,} users ({record['input']['format']}), load {record['machine']['load_at_start']}")
    print(f"{'approach':<14} {'status':<8} {'wall s':>8} {'CPU s':>7} {'peak MB':>8} {'x seed':>7} {'x sklearn':>9}")
    for name, r in record["approaches"].items():
        print(f"{name:<14} {r['status']:<8} {r.get('wall_s', ''):>8} {r.get('cpu_s', ''):>7} {r.get('peak_rss_mb', ''):>8} "
              f"{r.get('speedup_vs_seed', ''):>7} {r.get('speedup_vs_sklearn', ''):>9}"
              + ("" if r["status"] == "ok" else f"  {r.get('reason', '')}"))
    for t in record["targets"]:
        print(f"target {t['approach']} {t['what']}: {t}")


def fit_table(rows: list[int], seed: int, workdir: Path) -> None:
    """bench_fit.py's fit-only table for the same sizes (its own results files), on the cached Parquet inputs."""
    import bench_fit

    argv = sys.argv
    sys.argv = [bench_fit.__file__, "--rows", *map(str, rows), "--seed", str(seed), "--workdir",
                str(workdir / f"seed{seed}")]
    try:
        bench_fit.main()
    finally:
        sys.argv = argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=DEFAULT_ROWS)
    parser.add_argument("--approaches", nargs="+", choices=list(APPROACHES), default=list(APPROACHES))
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians are reported")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before sklearn/daskml are stopped")
    parser.add_argument("--silhouette-sample", type=int, default=10_000, help="users in the seed approach's silhouette")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(HERE / ".work"))
    parser.add_argument("--fit", action="store_true", help="also run bench_fit.py's fit-only table for these sizes")
    parser.add_argument("--one", nargs=2, metavar=("APPROACH", "INPUT"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.seed, Path(args.scratch), args.progress,
                             args.silhouette_sample)))
        return
    workdir = Path(args.workdir).resolve()
    for rows in args.rows:
        bench_size(rows, args, workdir)
    if args.fit:
        fit_table(args.rows, args.seed, workdir)


if __name__ == "__main__":
    main()
