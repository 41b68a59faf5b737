"""Reliability of `mailseg run`: killed at any point, run twice at once, memory of the client, config typos.

- Kill: SIGKILL to the job's whole process group (client, scheduler, nannies,
  workers) at chosen moments (stderr lines, or a temporary/output file
  appearing); after each kill every output and data layer present must be
  whole and loadable, leftovers must be hidden temporaries, and the next run
  must succeed from that state.
- Lock: a second job on the same output folder is refused naming the holder;
  a lock left by a killed job is taken over by the next run.
- Memory: the client's peak RSS must not grow with the data (the rows stay on
  the workers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import joblib
import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from cli_helpers import MAILSEG, mailseg, sha256

pytestmark = pytest.mark.slow  # every test runs (and kills) `mailseg` jobs in subprocesses

CHILD_ENV = {**os.environ, "MPLBACKEND": "Agg"}
MONTH = "2026-05"
OUTPUTS = {"modelo_clustering.pkl", "escalador.pkl", "modelo_metadata.json", "modelo.json", "segmentos.json",
           "resultados_clustering.xlsx", "informe.html", "run_summary.json", "usuarios", "figuras",
           "modelos", "meses"}  # versions (modelos/<id>/, modelos/actual.json) and each month's per-user results
FIGURES = {"codo.png", "calidad_k.png", "segmentos.png", "perfiles.png", "pca.png", "silueta.png"}  # every run's
CHANGE_FIGURES = {"cambios_psi.png", "cambios_transiciones.png", "cambios_proporciones.png"}  # an update's, too
TEMPORARY = re.compile(r"^\..+\.tmp(dir)?$")  # hidden and suffixed: never matches an output name or glob
SMALL = {"ingest": {"chunk_rows": 1000}, "quality": {"bootstrap_rounds": 2},
         "cluster": {"n_workers": 2, "dashboard": False}}


def parquet_rows(folder: Path) -> int:
    """Rows of a Parquet folder, read in full (a torn part file fails here); hidden files are not parts."""
    assert all(p.suffix == ".parquet" and not p.name.startswith(".") for p in folder.iterdir()), list(folder.iterdir())
    return pq.read_table(folder).num_rows


# ---------------------------------------------------------------- a job we can kill
class Job:
    """`mailseg ARGS` in its own session (process group); stderr lines collected as they come."""

    def __init__(self, args: list, cwd: Path):
        self.started_ns = time.time_ns()
        self.proc = subprocess.Popen([MAILSEG, *map(str, args)], cwd=cwd, env=CHILD_ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kill_when(self, trigger, delay: float = 0.0, timeout: float = 600) -> bool:
        """SIGKILL the whole group `delay` s after trigger(self) holds. True only if the kill is what ended the
        job; False if the job ended first (before the trigger held, or between it and the signal)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if trigger(self):
                time.sleep(delay)
                self.kill()
                return self.proc.returncode == -signal.SIGKILL
            time.sleep(0.002)
        if self.proc.poll() is None:
            self.kill()
            raise AssertionError(f"trigger never held within {timeout} s: {self.lines}")
        self._reader.join(10)
        return False

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(60)
        self._reader.join(10)
        deadline = time.monotonic() + 30
        while _live_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _live_members(self.proc.pid), "processes of the killed job survived"


def _live_members(pgid: int) -> list[int]:
    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


# ---------------------------------------------------------------- triggers
def appears(folder: Path, pattern: str):
    return lambda job: any(True for _ in folder.glob(pattern)) if folder.exists() else False


def written_after_start(path: Path):
    def trigger(job: Job) -> bool:
        try:
            return path.stat().st_mtime_ns > job.started_ns
        except FileNotFoundError:
            return False
    return trigger


def any_written_after_start(folder: Path, pattern: str):
    def trigger(job: Job) -> bool:
        if not folder.exists():
            return False
        for path in folder.glob(pattern):
            try:
                if path.stat().st_mtime_ns > job.started_ns:
                    return True
            except FileNotFoundError:
                continue
        return False
    return trigger


def says(text: str):
    return lambda job: job.said(text)


def first_of(*triggers):
    return lambda job: any(trigger(job) for trigger in triggers)


# ---------------------------------------------------------------- what must hold after any kill
def check_whole(data_dir: Path, out: Path, allowed_rows: set[int]) -> dict:
    """Every output and layer present is complete and loadable; returns what was found (for the report)."""
    found = {"leftovers": [], "outputs": []}
    found["manifests"] = _check_data_layers(data_dir, found["leftovers"])
    if not out.exists():
        return found
    for entry in out.iterdir():
        if entry.name == ".mailseg.lock":
            continue  # a killed job's stale lock: the next run takes it over (checked by the caller)
        if TEMPORARY.match(entry.name):
            found["leftovers"].append(entry.name)
            continue
        assert entry.name in OUTPUTS, f"unexpected entry {entry.name}"
        found["outputs"].append(entry.name)
    found["versions"] = _check_versions(out, allowed_rows)
    kept = _check_outputs(out, allowed_rows, found)
    committed = (out / "run_summary.json").exists()
    found["committed"] = committed
    if committed:
        _check_committed(out, kept)
    return found


def _check_versions(out: Path, allowed_rows: set[int]) -> list[str]:
    """Every sealed version (version.json present) holds a whole, committed output set; the pointer names one.
    An unsealed version folder (a job killed while writing it) is never current, and the next job removes it."""
    root, sealed = out / "modelos", []
    if not root.exists():
        return sealed
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / "version.json").exists():
            leftovers: dict = {"leftovers": [], "outputs": []}
            own_rows = {json.loads((folder / "run_summary.json").read_text())["rows_kept"]}  # maybe an older month's
            _check_committed(folder, _check_outputs(folder, own_rows, leftovers))
            assert leftovers["leftovers"] == [], leftovers
            sealed.append(folder.name)
    if (root / "actual.json").exists():
        assert json.loads((root / "actual.json").read_text())["version"] in sealed
    return sealed


def _check_data_layers(data_dir: Path, leftovers: list) -> dict:
    manifests = {}
    for path in sorted((data_dir / "manifests").glob("*")):
        if TEMPORARY.match(path.name):
            leftovers.append(path.name)
            continue
        manifest = json.loads(path.read_text(encoding="utf-8"))
        month = manifest["month"]
        # the manifest is written last: the layers it describes are in place and agree with it
        assert parquet_rows(data_dir / "parquet" / "users" / f"month={month}") == manifest["rows_kept"]
        assert parquet_rows(data_dir / "rejects" / f"month={month}") == manifest["rows_rejected"]
        assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"]
        manifests[month] = manifest
    for layer in ("parquet/raw", "parquet/users", "rejects"):
        for folder in sorted((data_dir / layer).glob("*")) if (data_dir / layer).exists() else []:
            if TEMPORARY.match(folder.name):
                leftovers.append(f"{layer}/{folder.name}")
                continue
            assert folder.name.startswith("month="), folder
            parquet_rows(folder)  # readable in full, even without a manifest (a killed first ingest)
    return manifests


def _check_outputs(out: Path, allowed_rows: set[int], found: dict) -> int | None:
    kept = None
    if (out / "usuarios").exists():
        users = pq.read_table(out / "usuarios", columns=["Id", "cluster"]).to_pandas()
        parquet_rows(out / "usuarios")
        assert users["Id"].is_unique and len(users) in allowed_rows, len(users)
        kept = len(users)
    if (out / "resultados_clustering.xlsx").exists():
        import openpyxl

        workbook = openpyxl.load_workbook(out / "resultados_clustering.xlsx", read_only=True)
        assert {"Clusters", "Recomendaciones", "Eleccion_k"} <= set(workbook.sheetnames)
        assert sum(1 for _ in workbook["Clusters"].iter_rows(values_only=True)) - 1 in allowed_rows
        workbook.close()
    for name in ("modelo_clustering.pkl", "escalador.pkl"):
        if (out / name).exists():
            joblib.load(out / name)  # whole (a torn pickle raises); trusted here: we wrote it ourselves
    for name in ("modelo_metadata.json", "modelo.json", "segmentos.json", "run_summary.json"):
        if (out / name).exists():
            json.loads((out / name).read_text(encoding="utf-8"))
    if (out / "informe.html").exists():
        assert (out / "informe.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    if (out / "figuras").exists():
        from PIL import Image

        for png in (out / "figuras").iterdir():
            if TEMPORARY.match(png.name):
                found["leftovers"].append(f"figuras/{png.name}")
                continue
            assert png.name in FIGURES | CHANGE_FIGURES, png
            with Image.open(png) as image:
                image.verify()
                image.close()
    return kept


def _check_committed(out: Path, kept: int | None) -> None:
    """run_summary.json is the commit mark: every output beside it belongs to the run it describes."""
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    metadata = json.loads((out / "modelo_metadata.json").read_text(encoding="utf-8"))
    for name, info in metadata["files"].items():
        assert sha256(out / name) == info["sha256"], f"{name} does not match modelo_metadata.json"
    plain = json.loads((out / "modelo.json").read_text(encoding="utf-8"))
    segments = json.loads((out / "segmentos.json").read_text(encoding="utf-8"))["segments"]
    assert summary["k"] == metadata["k"] == plain["k"] == len(segments)
    assert kept == summary["rows_kept"] == metadata["rows_kept"]
    assert summary["input_sha256"] == metadata["input_sha256"]
    figures = {p.name for p in (out / "figuras").glob("*.png")}
    assert FIGURES <= figures <= FIGURES | CHANGE_FIGURES, figures
    assert (figures > FIGURES) == ("drift" in summary.get("update", {}))  # drift figures exactly when an update has them
    assert (out / "resultados_clustering.xlsx").exists() and (out / "informe.html").exists()


def assert_no_leftovers(data_dir: Path, out: Path) -> None:
    stray = [p for root in (data_dir, out) for p in root.rglob("*") if TEMPORARY.match(p.name)]
    assert stray == [], stray
    assert not (out / ".mailseg.lock").exists()


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    files = {}
    for name, rows, seed in (("a", 4000, 3), ("b", 3000, 4)):
        files[name] = root / f"{name}.csv"
        assert mailseg("generate", "--rows", rows, "--out", files[name], "--seed", seed, cwd=root).returncode == 0
    files["rows"] = {"a": 4000, "b": 3000}
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    files["config"] = config
    return files


def _run_args(inputs, name: str, k: int, *extra) -> list:
    return ["run", inputs[name], "--data-dir", "data", "--out", "out", "--month", MONTH, "--k", k,
            "--config", inputs["config"], *extra]


KILL_ATTEMPTS = 3


def _kill_series(root: Path, scenarios, allowed_rows: set[int], report: list) -> None:
    """Run each scenario's job and kill it at its moment; what it leaves must be whole.

    A job that ends before its kill lands tests nothing: its state (data/ and out/) is put back as it was
    before the attempt and the scenario is tried again, with half the delay each time (an earlier moment);
    after KILL_ATTEMPTS such misses the test fails."""
    for label, args, trigger, delay in scenarios:
        saved = _save_state(root)
        try:
            for attempt in range(1, KILL_ATTEMPTS + 1):
                job = Job(args, root)
                if job.kill_when(trigger, delay / 2 ** (attempt - 1)):
                    break
                assert job.proc.returncode == 0, job.lines  # ended first: then it must have succeeded
                _restore_state(root, saved)
            else:
                pytest.fail(f"{label}: the job ended before its kill in all {KILL_ATTEMPTS} attempts "
                            f"(delay {delay} s, then halved): this moment is never caught, move the trigger")
        finally:
            shutil.rmtree(saved)
        found = check_whole(root / "data", root / "out", allowed_rows)
        report.append((label, attempt, found.get("committed"), sorted(found["outputs"]), found["leftovers"]))


STATE = ("data", "out")  # what a job in `root` writes (with the run arguments above)


def _save_state(root: Path) -> Path:
    saved = Path(tempfile.mkdtemp(prefix="before-kill-", dir=root.parent))
    for name in STATE:
        if (root / name).exists():
            shutil.copytree(root / name, saved / name, symlinks=True)
    return saved


def _restore_state(root: Path, saved: Path) -> None:
    for name in STATE:
        shutil.rmtree(root / name, ignore_errors=True)
        if (saved / name).exists():
            shutil.copytree(saved / name, root / name, symlinks=True)


def _print_report(title: str, report: list) -> None:
    print(f"\n{title}: {len(report)} kills survived, {sum(r[1] - 1 for r in report)} missed kills retried")
    for label, attempts, committed, outputs, leftovers in report:
        print(f"  {label:<28} attempts={attempts} committed={committed!s:<5} outputs={len(outputs)} "
              f"leftovers={leftovers}")


def test_killed_at_every_stage_of_a_fresh_run_leaves_only_whole_files(tmp_path, inputs):
    data, out = tmp_path / "data", tmp_path / "out"
    args = _run_args(inputs, "a", 4)
    scenarios = [
        ("reading the input", args, appears(data / "parquet" / "raw", ".month=*.tmpdir"), 0.0),
        ("cleaning", args, appears(data / "parquet" / "users", ".month=*.tmpdir"), 0.0),
        ("modelling", args, says("fitting segments"), 1.0),
        # Its temporary folder can come and go between two polls at this size (CI missed it three times in a row
        # once): the kill also fires when the stage starts, as for the workbook.
        ("per-user parquet", args, first_of(appears(out, ".usuarios.*.tmpdir"),
                                            says("writing per-user results")), 0.0),
        # The workbook is written on a worker while the client draws, in a few ms at this size: its temporary is
        # rarely seen, so the kill also fires when the client starts waiting for it (before the run commits).
        ("workbook", args, first_of(appears(out, ".resultados_clustering.xlsx.*.tmp"),
                                    says("finishing the workbook")), 0.0),
        ("model files", args, written_after_start(out / "modelo_clustering.pkl"), 0.0),
        ("figures", args, any_written_after_start(out / "figuras", "*"), 0.0),
        ("report written, no summary", args, written_after_start(out / "informe.html"), 0.0),
    ]
    report: list = []
    _kill_series(tmp_path, scenarios, {inputs["rows"]["a"]}, report)  # fails unless every kill was real
    _print_report("fresh run", report)
    assert [r[0] for r in report] == [s[0] for s in scenarios]

    final = mailseg(*args, "--json", cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    found = check_whole(data, out, {inputs["rows"]["a"]})
    assert found["committed"] and set(found["outputs"]) == OUTPUTS
    assert_no_leftovers(data, out)


def test_killed_over_a_complete_previous_output_keeps_every_file_whole(tmp_path, inputs):
    data, out = tmp_path / "data", tmp_path / "out"
    first = mailseg(*_run_args(inputs, "a", 4), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    previous = json.loads((out / "run_summary.json").read_text())
    rows = {inputs["rows"]["a"], inputs["rows"]["b"]}
    refit = _run_args(inputs, "a", 3)  # same data, another k: every output changes
    replace = _run_args(inputs, "b", 3, "--replace")  # other content for the same month
    scenarios = [
        ("modelling (before publish)", refit, says("fitting segments"), 0.5),
        ("per-user parquet", refit, first_of(appears(out, ".usuarios.*.tmpdir"), says("writing per-user results")),
         0.0),
        ("model files", refit, written_after_start(out / "modelo_clustering.pkl"), 0.0),
        ("figures", refit, any_written_after_start(out / "figuras", "*"), 0.0),
        ("report written, no summary", refit, written_after_start(out / "informe.html"), 0.0),
        ("replace: reading", replace, appears(data / "parquet" / "raw", ".month=*.tmpdir"), 0.0),
        ("replace: cleaning", replace, appears(data / "parquet" / "users", ".month=*.tmpdir"), 0.0),
    ]
    report: list = []
    for i, scenario in enumerate(scenarios):
        _kill_series(tmp_path, [scenario], rows, report)  # fails unless the kill was real
        if i == 0:  # killed before publishing: the previous run's outputs are untouched
            assert json.loads((out / "run_summary.json").read_text()) == previous
        if scenario[0].startswith("replace"):  # the month still holds the previous content
            manifest = json.loads((data / "manifests" / f"month={MONTH}.json").read_text())
            assert manifest["sha256"] == sha256(inputs["a"])
    _print_report("over a complete output", report)
    assert [r[0] for r in report] == [s[0] for s in scenarios]

    final = mailseg(*replace, "--json", cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    found = check_whole(data, out, {inputs["rows"]["b"]})
    assert found["committed"] and set(found["outputs"]) == OUTPUTS
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["k"] == 3 and summary["input_sha256"] == sha256(inputs["b"])
    assert_no_leftovers(data, out)


# ---------------------------------------------------------------- two jobs, one folder
def test_a_second_run_on_the_same_output_is_refused_and_a_stale_lock_recovered(tmp_path, inputs):
    holder = Job(["run", inputs["a"], "--data-dir", "d1", "--out", "out", "--k", 3, "--config", inputs["config"]],
                 tmp_path)
    lock = tmp_path / "out" / ".mailseg.lock"
    try:
        deadline = time.monotonic() + 120
        info = None
        while info is None and time.monotonic() < deadline and holder.proc.poll() is None:
            try:
                info = json.loads(lock.read_text())
            except (OSError, ValueError):
                time.sleep(0.01)
        assert info is not None and info["pid"] == holder.proc.pid and info["command"] == "mailseg run"

        second = mailseg("run", inputs["b"], "--data-dir", "d2", "--out", "out", "--k", 3, cwd=tmp_path)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("mailseg: error:")]
        assert len(errors) == 1 and "locked by another mailseg job" in errors[0]
        assert f"pid {holder.proc.pid}" in errors[0]
        assert "LocalCluster" not in second.stderr  # refused before starting a cluster
        assert not (tmp_path / "d2").exists()
    finally:
        holder.kill()
    assert json.loads(lock.read_text())["pid"] == holder.proc.pid  # the killed job's lock stays behind

    recovered = mailseg("run", inputs["a"], "--data-dir", "d1", "--out", "out", "--k", 3, "--config",
                        inputs["config"], "--json", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.splitlines()[-1])["status"] == "ok"
    assert not lock.exists()


# ---------------------------------------------------------------- config typos
def test_a_mistyped_cluster_setting_is_an_error_not_ignored(tmp_path, inputs):
    config = tmp_path / "typo.yaml"
    config.write_text("cluster:\n  n_worker: 8\n  memory_limit: 1GiB\n")
    proc = mailseg("run", inputs["a"], "--data-dir", "d", "--out", "o", "--config", config, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"mailseg: error: {config}: unknown config key 'cluster.n_worker'; did you mean 'cluster.n_workers'?"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml"]


# ---------------------------------------------------------------- client memory
WRAPPER = '''
import json, resource, sys


def collect_before_fitting():
    # the counterfactual: a client that pulls the users table to itself for a while
    import dask.dataframe as dd
    import mailseg_dist.model.modelling as modelling
    fit = modelling.fit_segments

    def collecting(users_path, cfg, client=None, **options):
        table = dd.read_parquet(str(users_path)).compute()
        SEEN.append(len(table))
        del table  # dropped before modelling: only a sampled profile can see it, not the final peak
        return fit(users_path, cfg, client, **options)
    modelling.fit_segments = collecting


SEEN = []
if __name__ == "__main__":  # the LocalCluster's spawned workers import this file again: they must not run the job
    if sys.argv[1] == "--collect":
        sys.argv.pop(1)
        collect_before_fitting()
    from jobs.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "collected_rows": sum(SEEN)}))
'''
CLEAN_COLUMNS_BYTES = 11 * 8  # Id, 6 counts, hour, day_of_week, engagement_score, source_row: 8 bytes each
STAGE_ENDS = {"ingest": "rows read =", "model": "mailseg: k="}  # log lines that close each stage


def _client_profile(root: Path, data: Path, name: str, config: Path, collect: bool = False) -> dict:
    """Peak RSS of the client process only, per stage (sampled every 20 ms) and overall (ru_maxrss)."""
    argv = [sys.executable, str(root / "wrapper.py"), *(["--collect"] if collect else []), "run", str(data),
            "--data-dir", f"data_{name}", "--out", f"out_{name}", "--k", "4", "--config", str(config)]
    proc = subprocess.Popen(argv, cwd=root, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = psutil.Process(proc.pid)  # the workers are other processes: never counted here
    marks: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: marks.extend((time.monotonic(), line) for line in proc.stderr),
                              daemon=True)
    reader.start()
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        try:
            samples.append((time.monotonic(), client.memory_info().rss))
        except psutil.Error:
            break
        time.sleep(0.02)
    reader.join(30)
    result = json.loads(proc.stdout.read().splitlines()[-1])
    assert result["code"] == 0, "".join(line for _, line in marks)
    ends = [next(t for t, line in marks if text in line) for text in STAGE_ENDS.values()] + [float("inf")]
    starts = [0.0] + ends[:-1]
    result["stages_kb"] = {stage: max(rss for t, rss in samples if start <= t < end) // 1024
                           for stage, start, end in zip([*STAGE_ENDS, "publish"], starts, ends)}
    return result


def test_the_client_peak_memory_does_not_grow_with_the_rows(tmp_path):
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    # Samples capped below the small size, so both sizes use the same samples. The silhouette sample is cut to
    # 1,000 because its exact pairwise distances (5,000² floats = 200 MB by default) would be a fixed spike
    # in the modelling stage that hides anything smaller; it does not depend on the rows either way.
    config = tmp_path / "memory.yaml"
    config.write_text(yaml.safe_dump({
        "cluster": {"n_workers": 2, "dashboard": False}, "quality": {"bootstrap_rounds": 2, "bootstrap_sample": 20000},
        "model": {"init_sample": 20000, "refine_sample": 20000}, "report": {"excel_max_rows": 20000},
        "selection": {"silhouette_sample": 1000}}))
    # The client's RSS takes a step of up to 16 MiB between a one-partition and a multi-partition run (thread
    # arenas, figures drawn beside the workers; measured flat from 400k to 1.2M rows): the large size keeps
    # the bound below (1.2M rows: 48 MiB) well clear of that step, so only memory that grows with rows fails.
    sizes = {"small": 50_000, "large": 1_200_000}
    for name, rows in sizes.items():
        assert mailseg("generate", "--rows", rows, "--out", tmp_path / f"{name}.csv", cwd=tmp_path).returncode == 0
    small = _client_profile(tmp_path, tmp_path / "small.csv", "small", config)
    large = _client_profile(tmp_path, tmp_path / "large.csv", "large", config)
    collecting = _client_profile(tmp_path, tmp_path / "large.csv", "collect", config, collect=True)
    # Holding even half of the extra rows' clean columns would cost this much; the client must stay below it.
    bound_kb = (sizes["large"] - sizes["small"]) * CLEAN_COLUMNS_BYTES / 2 / 1024
    print(f"\nbound {bound_kb / 1024:.1f} MiB; client peak RSS in MiB (ru_maxrss; per stage ingest/model/publish):")
    small_label, large_label = (f"{rows:,} rows" for rows in sizes.values())
    for label, run in ((small_label, small), (large_label, large), (f"{large_label}, collecting", collecting)):
        stages = "/".join(f"{kb / 1024:.1f}" for kb in run["stages_kb"].values())
        print(f"  {label:<28} {run['peak_kb'] / 1024:.1f}; {stages}")
    assert large["peak_kb"] - small["peak_kb"] < bound_kb
    for stage in small["stages_kb"]:
        assert large["stages_kb"][stage] - small["stages_kb"][stage] < bound_kb, stage
    # the measurement does see a client that holds the rows, even for a moment
    assert collecting["collected_rows"] == sizes["large"]
    assert collecting["stages_kb"]["model"] - small["stages_kb"]["model"] > bound_kb


@pytest.mark.slow
def test_an_update_killed_at_any_moment_leaves_the_previous_version_current(tmp_path, inputs):
    """Issue 13: a killed update never changes which version is current, and the next update completes."""
    data, out = tmp_path / "data", tmp_path / "out"
    first = mailseg(*_run_args(inputs, "a", 3), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    current = json.loads((out / "modelos" / "actual.json").read_text())["version"]
    update = ["update", inputs["b"], "--data-dir", "data", "--out", "out", "--month", "2026-06",
              "--config", inputs["config"]]
    scenarios = [
        ("update: reading", update, appears(data / "parquet" / "raw", ".month=*.tmpdir"), 0.0),
        ("update: fitting", update, says("fitting segments"), 0.5),
        ("update: writing its version", update, says("writing per-user results"), 0.0),
        ("update: drift", update, says("measuring what changed"), 0.0),  # from the new per-user results
        ("update: making it current", update, says("making version"), 0.0),
    ]
    report: list = []
    rows = {inputs["rows"]["a"], inputs["rows"]["b"]}
    for scenario in scenarios:
        _kill_series(tmp_path, [scenario], rows, report)  # fails unless the kill was real
        assert json.loads((out / "modelos" / "actual.json").read_text())["version"] == current, scenario[0]
    _print_report("update", report)
    assert [r[0] for r in report] == [s[0] for s in scenarios]

    final = mailseg(*update, "--json", cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["month"] == "2026-06" and summary["parent_version"] == current
    assert json.loads((out / "modelos" / "actual.json").read_text())["version"] == summary["version"]
    found = check_whole(data, out, {inputs["rows"]["b"]})
    assert found["committed"] and set(found["outputs"]) == OUTPUTS
    assert_no_leftovers(data, out)
