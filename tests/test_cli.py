"""The `mailseg` console script end to end: exit codes, --json, the README run, determinism.

Every test runs the installed `mailseg` command in a subprocess, in a temporary
folder, so the data/ and Resultados/ it writes never touch the checkout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from cli_helpers import (
    assert_one_line_error,
    mailseg,
    one_json_last_line,
    read_users,
    sha256,
    write_config,
)

from jobs.cli import build_parser
from mailseg_dist.core.config import load_config
from mailseg_dist.model.features import feature_frame

pytestmark = pytest.mark.slow  # every test starts the `mailseg` command in a subprocess

REPO = Path(__file__).resolve().parent.parent
SMALL = {"ingest": {"chunk_rows": 1000}, "quality": {"bootstrap_rounds": 2}, "model": {"k_max": 5}}
OUTPUT_FILES = ["modelo_clustering.pkl", "escalador.pkl", "modelo_metadata.json", "modelo.json", "segmentos.json",
                "resultados_clustering.xlsx", "informe.html", "run_summary.json"]
FIGURES = ["codo.png", "calidad_k.png", "segmentos.png", "perfiles.png", "pca.png", "silueta.png"]


def verified_pickles(out: Path) -> tuple:
    """(model, scaler) unpickled only after their SHA-256 matched modelo_metadata.json."""
    recorded = json.loads((out / "modelo_metadata.json").read_text(encoding="utf-8"))["files"]
    for name in ("modelo_clustering.pkl", "escalador.pkl"):
        assert sha256(out / name) == recorded[name]["sha256"], name
    return joblib.load(out / "modelo_clustering.pkl"), joblib.load(out / "escalador.pkl")


def assert_model_reproduces_clusters(out: Path, fcfg: dict) -> pd.DataFrame:
    """joblib scaler.transform + model.predict on the per-user table give its cluster column, for every user."""
    model, scaler = verified_pickles(out)
    users = read_users(out / "usuarios")
    predicted = model.predict(scaler.transform(feature_frame(users, fcfg)))
    mismatched = int((predicted != users["cluster"].to_numpy()).sum())
    assert mismatched == 0, f"{mismatched} of {len(users)} users"
    return users


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def small_csv(work) -> Path:
    """3,000 generated users (through `mailseg generate --json`, whose contract is checked here)."""
    path = work / "users.csv"
    proc = mailseg("generate", "--rows", 3000, "--out", path, "--seed", 5, "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    summary = one_json_last_line(proc)
    assert summary["rows"] == 3000 and summary["format"] == "csv" and Path(summary["path"]) == path
    assert len(pd.read_csv(path)) == 3000
    return path


@pytest.fixture(scope="module")
def small_config(work) -> Path:
    return write_config(work / "small.yaml", SMALL)


@pytest.fixture(scope="module")
def scheduler():
    """An in-process Dask cluster the commands join with --scheduler: no LocalCluster start per command."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


# ---------------------------------------------------------------- help and usage
EXPECTED_OPTIONS = {
    "run": ["INPUT", "--config", "--data-dir", "--json", "--debug", "--scheduler", "--out", "--month", "--k",
            "--engine", "--seed", "--lang", "--replace", "--profile"],
    "ingest": ["INPUT", "--config", "--data-dir", "--json", "--debug", "--scheduler", "--month", "--sheet", "--sep",
               "--decimal", "--replace"],
    "generate": ["--rows", "--out", "--format", "--seed", "--json", "--debug"],
    "score": ["INPUT", "--config", "--data-dir", "--json", "--debug", "--scheduler", "--model-dir", "--out",
              "--month", "--lang", "--trust-unverified"],
    "update": ["INPUT", "--config", "--data-dir", "--json", "--debug", "--scheduler", "--out", "--model-dir",
               "--month", "--engine", "--seed", "--lang", "--replace", "--profile", "--trust-unverified"],
}


def _parser_options(command: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return [s for action in sub._actions for s in action.option_strings if s.startswith("--")]


@pytest.mark.parametrize("command", [None, *EXPECTED_OPTIONS])
def test_help_exits_0_and_mentions_every_option(tmp_path, command):
    proc = mailseg(*([command] if command else []), "--help", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    if command is None:
        assert all(name in proc.stdout for name in EXPECTED_OPTIONS) and "Exit codes" in proc.stdout
        return
    for option in {*EXPECTED_OPTIONS[command], *_parser_options(command)}:
        assert option in proc.stdout, option
    assert "Exit codes" in proc.stdout


BAD_CONFIGS = {"typo_key.yaml": ({"model": {"kk": 3}}, ["unknown config key 'model.kk'", "did you mean 'model.k'"]),
               "typo_section.yaml": ({"modle": {"k": 3}}, ["unknown config key 'modle'", "did you mean 'model'"])}


@pytest.mark.parametrize("args, needles", [
    (["run", "--k", "x"], ["--k expected an integer or 'auto'", "'x'"]),
    (["run", "--k", "1"], ["model.k expected 'auto' or an integer >= 2"]),
    (["run", "{csv}", "--month", "2026-13"], ["month expected YYYY-MM", "'2026-13'"]),
    (["run", "{csv}", "--month", "../x"], ["month expected YYYY-MM", "'../x'"]),
    (["run", "--month", "2026-13"], ["month expected YYYY-MM"]),
    (["ingest", "{csv}", "--month", "../x"], ["month expected YYYY-MM", "'../x'"]),
    (["score", "{csv}", "--month", "2026-13"], ["month expected YYYY-MM"]),
    (["run", "{csv}", "--config", "typo_key.yaml"], BAD_CONFIGS["typo_key.yaml"][1]),
    (["ingest", "{csv}", "--config", "typo_section.yaml"], BAD_CONFIGS["typo_section.yaml"][1]),
    (["generate", "--rows", "0", "--out", "x.csv"], ["--rows expected a positive number"]),
    (["generate", "--rows", "5", "--out", "x.txt"], ["cannot tell the format"]),
    (["run", "{csv}", "--data-dir", "ftp://host/d"], ["--data-dir ftp://host/d", "ftp:// is not a supported storage"]),
    (["score", "http://host/users.csv"], ["input http://host/users.csv", "http:// is not a supported storage"]),
    (["run", "{csv}", "--config", "s3://bucket/conf.yaml"], ["--config s3://bucket/conf.yaml: must be a local path"]),
], ids=["k_not_a_number", "k_below_2", "month_13", "month_dotdot", "month_13_no_input", "ingest_month_dotdot",
        "score_month_13", "config_key_typo", "config_section_typo", "generate_0_rows", "generate_unknown_format",
        "unknown_storage_data_dir", "http_input", "config_in_a_store"])
def test_usage_errors_exit_2_with_one_line_and_touch_nothing(tmp_path, small_csv, args, needles):
    for name, (overrides, _) in BAD_CONFIGS.items():
        write_config(tmp_path / name, overrides)
    args = [a.format(csv=small_csv) for a in args]
    folders = {"run": ["--data-dir", "d", "--out", "o"], "ingest": ["--data-dir", "d"],
               "score": ["--data-dir", "d", "--model-dir", "o"], "generate": []}[args[0]]
    folders = folders if "--data-dir" not in args else folders[2:]
    proc = mailseg(*args, *folders, cwd=tmp_path)
    assert_one_line_error(proc, 2, *needles)
    assert "LocalCluster" not in proc.stderr  # refused at the door, before any cluster starts
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BAD_CONFIGS)  # no data/ or output folder made


@pytest.mark.parametrize("args", [["run", "--engine", "foo"], ["run", "--lang", "fr"], ["bogus"], ["run", "--nope"],
                                  ["generate", "--out", "x.csv"]])
def test_argparse_usage_errors_exit_2_without_traceback(tmp_path, args):
    proc = mailseg(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("mailseg") and "error:" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_console_script_returns_mains_exit_code_and_then_freezes_the_heap(monkeypatch):
    import jobs.cli as cli

    events = []
    monkeypatch.setattr(cli, "main", lambda: events.append("main") or 3)
    monkeypatch.setattr(cli.gc, "freeze", lambda: events.append("freeze"))
    assert cli.console() == 3 and events == ["main", "freeze"]


# ---------------------------------------------------------------- input errors (exit 3) and re-ingest (exit 2)
def test_missing_input_exits_3_before_starting_a_cluster(tmp_path):
    for command in (["run"], ["ingest"], ["score"]):
        proc = mailseg(*command, tmp_path / "nope.csv", "--data-dir", "d", cwd=tmp_path)
        assert_one_line_error(proc, 3, str(tmp_path / "nope.csv"), "no such file")
        assert "LocalCluster" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_column_exits_3_naming_it_and_commits_no_month(tmp_path, small_csv, scheduler):
    bad = tmp_path / "no_open.csv"
    pd.read_csv(small_csv).drop(columns=["open"]).to_csv(bad, index=False)
    proc = mailseg("run", bad, "--data-dir", "d", "--out", "o", "--month", "2026-01", "--scheduler", scheduler,
                   cwd=tmp_path)
    assert_one_line_error(proc, 3, str(bad), "missing required column(s) open")
    assert not (tmp_path / "d" / "manifests").exists() and not (tmp_path / "o" / "run_summary.json").exists()
    assert not (tmp_path / "o" / ".mailseg.lock").exists()  # the lock is released on failure


# ---------------------------------------------------------------- --json of run and ingest; re-ingest through run
def test_run_json_is_the_last_line_and_changed_content_needs_replace(tmp_path, small_csv, small_config, scheduler):
    common = ["--data-dir", "d", "--out", "o", "--month", "2026-02", "--config", small_config,
              "--scheduler", scheduler]
    proc = mailseg("run", small_csv, "--k", 3, *common, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = one_json_last_line(proc)
    assert summary == json.loads((tmp_path / "o" / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["k"] == 3 and summary["rows_in"] == 3000 and summary["rows_reconciled"] is True
    assert summary["input_sha256"] == sha256(small_csv) and summary["ingest_skipped"] is False
    assert "Traceback" not in proc.stderr and not (tmp_path / "o" / ".mailseg.lock").exists()
    assert len(read_users(tmp_path / "o" / "usuarios", ["Id"])) == summary["rows_kept"]

    changed = tmp_path / "changed.csv"
    pd.read_csv(small_csv).head(2000).to_csv(changed, index=False)
    refused = mailseg("run", changed, "--k", 3, *common, cwd=tmp_path)
    assert_one_line_error(refused, 2, str(changed), "month 2026-02 was already ingested from other content",
                          "--replace")
    on_disk = json.loads((tmp_path / "d/manifests/month=2026-02.json").read_text())
    assert on_disk["sha256"] == sha256(small_csv)  # the month is untouched
    assert json.loads((tmp_path / "o" / "run_summary.json").read_text()) == summary  # and so are the outputs


def test_ingest_json_is_the_last_line_and_reconciles(tmp_path, small_csv, scheduler):
    proc = mailseg("ingest", small_csv, "--data-dir", "d", "--month", "2026-03", "--json", "--scheduler", scheduler,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = one_json_last_line(proc)
    assert manifest == {**json.loads((tmp_path / "d/manifests/month=2026-03.json").read_text()),
                        "skipped": False, "timings": manifest["timings"]}
    assert manifest["rows_in"] == 3000 == manifest["rows_kept"] + manifest["rows_rejected"]
    assert len(read_users(Path(manifest["users_path"]), ["Id"])) == manifest["rows_kept"]
    assert len(read_users(Path(manifest["rejects_path"]))) == manifest["rows_rejected"]


def test_ingest_accepts_file_urls(tmp_path, small_csv, scheduler):
    """file:// URLs (how fsspec names shared storage mounted on every worker) are local paths."""
    data = tmp_path / "shared data"
    proc = mailseg("ingest", small_csv.as_uri(), "--data-dir", data.as_uri(), "--month", "2026-04", "--json",
                   "--scheduler", scheduler, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = one_json_last_line(proc)
    assert manifest["users_path"] == str(data / "parquet" / "users" / "month=2026-04")
    assert len(read_users(Path(manifest["users_path"]), ["Id"])) == manifest["rows_kept"] == 3000


# ---------------------------------------------------------------- determinism (slow: three runs)
LAYOUTS = [(1000, 2), (50000, 2), (1000, 1)]  # (ingest.chunk_rows, cluster.n_workers): 6 or 1 partitions


@pytest.fixture(scope="module")
def layout_runs(tmp_path_factory) -> dict:
    """The same 6,000 users and seed run with each layout: layout → (summary, users' cluster and silhouette)."""
    root = tmp_path_factory.mktemp("determinism")
    data = root / "users.csv"
    assert mailseg("generate", "--rows", 6000, "--out", data, "--seed", 11, cwd=root).returncode == 0
    runs = {}
    for chunk_rows, workers in LAYOUTS:
        name = (chunk_rows, workers)
        config = write_config(root / f"c{chunk_rows}_w{workers}.yaml",
                              {**SMALL, "ingest": {"chunk_rows": chunk_rows}, "cluster": {"n_workers": workers}})
        data_dir, out = root / f"d_{chunk_rows}_{workers}", root / f"o_{chunk_rows}_{workers}"
        proc = mailseg("run", data, "--data-dir", data_dir, "--out", out, "--config", config, "--json", cwd=root)
        assert proc.returncode == 0, proc.stderr
        parts = list(data_dir.glob("parquet/users/month=*/*.parquet"))
        assert len(parts) > 1 if chunk_rows == 1000 else len(parts) == 1
        users = read_users(out / "usuarios", ["Id", "cluster", "silhouette_score"]).set_index("Id").sort_index()
        runs[name] = (one_json_last_line(proc), users)
    return runs


def test_the_number_of_workers_does_not_change_anything(layout_runs):
    (one, users_one), (two, users_two) = layout_runs[(1000, 1)], layout_runs[(1000, 2)]
    assert users_one.index.equals(users_two.index)
    assert (users_one["cluster"] == users_two["cluster"]).all()
    assert (one["k"], one["n_iter"], one["inertia"]) == (two["k"], two["n_iter"], two["inertia"])


def test_the_partitioning_changes_labels_at_most_at_floating_point_ties(layout_runs):
    (many, users_many), (single, users_single) = layout_runs[(1000, 2)], layout_runs[(50000, 2)]
    assert (many["k"], many["n_iter"]) == (single["k"], single["n_iter"])
    assert many["inertia"] == pytest.approx(single["inertia"], rel=1e-6)
    assert users_many.index.equals(users_single.index)
    differ = users_many["cluster"] != users_single["cluster"]
    assert differ.sum() <= 0.001 * len(differ)
    assert (users_many.loc[differ, "silhouette_score"].abs() < 0.01).all()  # only users on a boundary


def test_the_partitioning_gives_bit_identical_labels(layout_runs):
    (many, users_many), (single, users_single) = layout_runs[(1000, 2)], layout_runs[(50000, 2)]
    assert (users_many["cluster"] == users_single["cluster"]).all()
    assert many["inertia"] == single["inertia"]


# ---------------------------------------------------------------- the README's run on the default data (slow)
@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`mailseg run --json` in a copy of the working-dir layout: generates the 212,292-user default data."""
    root = tmp_path_factory.mktemp("readme")
    (root / "conf").mkdir()
    shutil.copy(REPO / "conf" / "base.yaml", root / "conf" / "base.yaml")  # base only: a local.yaml stays out
    proc = mailseg("run", "--json", cwd=root, timeout=1800)
    return root, proc


def test_readme_run_on_the_default_data_writes_every_output(default_run):
    root, proc = default_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = one_json_last_line(proc)
    out = root / "Resultados"
    assert summary == json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    for key in ("rows_in", "rows_kept", "rows_rejected", "rejects_path", "parquet_path", "timings", "k", "engine",
                "inertia", "silhouette", "outputs"):
        assert key in summary, key
    assert (root / "data" / "raw" / "clustering_mailing.xlsx").exists()
    assert summary["rows_in"] == 212_292 == summary["rows_kept"] + summary["rows_rejected"]
    assert summary["ingest_skipped"] is False and summary["rows_reconciled"] is True
    rejects = Path(summary["rejects_path"])
    assert rejects.is_relative_to(root) and len(read_users(rejects)) == summary["rows_rejected"]
    clean = Path(summary["parquet_path"])
    assert clean.is_relative_to(root / "data")

    for name in OUTPUT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (out / "figuras" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "</html>" in (out / "informe.html").read_text(encoding="utf-8")
    assert Path(summary["outputs"]["xlsx"]) == out / "resultados_clustering.xlsx"

    fcfg = load_config(root / "conf" / "base.yaml")["features"]
    users = assert_model_reproduces_clusters(out, fcfg)
    assert len(users) == summary["rows_kept"] and users["Id"].is_unique
    clean_ids = read_users(clean, ["Id"])["Id"]
    assert set(users["Id"]) == set(clean_ids)  # every kept user exactly once
    assert sorted(users["cluster"].unique()) == list(range(summary["k"]))
    sizes = users["cluster"].value_counts().sort_index()
    assert [s["users"] for s in summary["segments"]] == sizes.tolist()

    import openpyxl

    workbook = openpyxl.load_workbook(out / "resultados_clustering.xlsx", read_only=True)
    assert {"Clusters", "Recomendaciones", "Eleccion_k"} <= set(workbook.sheetnames)
    sheet = workbook["Clusters"]
    header = next(sheet.iter_rows(min_row=1, max_row=1, values_only=True))
    assert list(header[:14]) == ["Id", "send", "bounce", "open", "click", "Total", "Comprador", "hour",
                                 "day_of_week", "engagement_score", "cluster", "silhouette_score", "pca1", "pca2"]
    assert sheet.max_row == summary["rows_kept"] + 1  # every user (212,292 fit in one sheet) + header
    workbook.close()


def test_readme_run_again_skips_ingest_and_gives_the_same_clusters(default_run):
    root, first = default_run
    assert first.returncode == 0, first.stderr
    before = read_users(root / "Resultados" / "usuarios", ["Id", "cluster"]).set_index("Id").sort_index()
    centers = json.loads((root / "Resultados/modelo.json").read_text())["centers"]
    proc = mailseg("run", "--json", cwd=root, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    summary = one_json_last_line(proc)
    assert summary["ingest_skipped"] is True
    assert summary["input_sha256"] == one_json_last_line(first)["input_sha256"]
    after = read_users(root / "Resultados" / "usuarios", ["Id", "cluster"]).set_index("Id").sort_index()
    assert after.index.equals(before.index) and (after["cluster"] == before["cluster"]).all()
    assert summary["inertia"] == pytest.approx(one_json_last_line(first)["inertia"], rel=1e-12)
    assert np.array_equal(json.loads((root / "Resultados/modelo.json").read_text())["centers"], centers)
