"""`mailseg score`: new users labelled by a saved model, every kept user written, a changed model refused.

All through the installed `mailseg` command; the commands join an in-process
Dask cluster with --scheduler so no LocalCluster is started per command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml
from cli_helpers import mailseg, one_json_last_line, sha256
from cli_helpers import read_users as read_parquet

from mailseg_dist.core.config import load_config
from mailseg_dist.model.features import feature_frame

pytestmark = pytest.mark.slow  # `mailseg run` then `mailseg score` in subprocesses

MODEL_FILES = ["modelo_clustering.pkl", "escalador.pkl", "modelo_metadata.json", "modelo.json", "segmentos.json"]
BAD_ROWS = [  # (Id, send, bounce, open, click, Total, Comprador, hour, day_of_week) as CSV text
    ["", "3", "0", "1", "0", "4", "1", "18.5", "2"],          # no Id
    ["990000001", "abc", "0", "1", "0", "4", "1", "18.5", "2"],  # send is not a number
    ["990000002", "3", "0", "1", "0", "4", "1", "25", "2"],      # hour out of range
]


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scheduler):
    """A finished small run (k=4) and a new file of 2,000 users plus rows the cleaning rejects."""
    root = tmp_path_factory.mktemp("score")
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"chunk_rows": 700}, "quality": {"bootstrap_rounds": 2}}))
    assert mailseg("generate", "--rows", 3000, "--out", root / "train.csv", "--seed", 5, cwd=root).returncode == 0
    assert mailseg("generate", "--rows", 2000, "--out", root / "gen.csv", "--seed", 9, cwd=root).returncode == 0
    fresh = pd.read_csv(root / "gen.csv", dtype=str)
    bad = pd.DataFrame(BAD_ROWS + [list(fresh.iloc[0])], columns=fresh.columns)  # + a duplicate of the first Id
    pd.concat([fresh.iloc[:1000], bad, fresh.iloc[1000:]]).to_csv(root / "new.csv", index=False)
    run = mailseg("run", root / "train.csv", "--data-dir", "d", "--out", "model", "--k", 4, "--config", config,
                  "--scheduler", scheduler, "--month", "2026-04", cwd=root)
    assert run.returncode == 0, run.stderr
    return root


def copy_model(trained: Path, into: Path) -> Path:
    into.mkdir()
    for name in MODEL_FILES:
        shutil.copy(trained / "model" / name, into / name)
    return into


def score(root: Path, model_dir: Path, out: str, scheduler: str, *extra) -> subprocess.CompletedProcess:
    return mailseg("score", root / "new.csv", "--model-dir", model_dir, "--out", out, "--data-dir", "d",
                   "--scheduler", scheduler, "--json", *extra, cwd=root)


@pytest.fixture(scope="module")
def scored(trained, scheduler):
    before = {name: sha256(trained / "model" / name) for name in MODEL_FILES}
    proc = score(trained, trained / "model", "scored", scheduler)
    assert proc.returncode == 0, proc.stderr
    assert {name: sha256(trained / "model" / name) for name in MODEL_FILES} == before  # the model is only read
    return proc


def test_score_writes_every_kept_user_and_reconciles_rejects(trained, scored):
    summary = one_json_last_line(scored)
    out = trained / "scored"
    assert summary == json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["rows_in"] == 2000 + len(BAD_ROWS) + 1
    assert summary["rows_kept"] + summary["rows_rejected"] == summary["rows_in"]
    assert summary["rows_kept"] == 2000 and summary["rows_rejected"] == len(BAD_ROWS) + 1
    ledger = read_parquet(Path(summary["rejects_path"]))
    assert len(ledger) == summary["rows_rejected"]
    assert sorted(ledger["source_row"]) == [1002, 1003, 1004, 1005]  # header is row 1; the bad rows follow 1,000
    assert any("duplicate Id" in reason for reason in ledger["reason"])
    # scoring has its own layers: the month the model was fitted on is untouched
    assert Path(summary["parquet_path"]).is_relative_to(trained / "d" / "scoring")
    assert [p.name for p in (trained / "d" / "manifests").iterdir()] == ["month=2026-04.json"]

    users = read_parquet(out / "usuarios")
    assert len(users) == summary["rows_kept"] and users["Id"].is_unique
    assert set(users["Id"]) == set(pd.read_csv(trained / "gen.csv")["Id"])

    import openpyxl

    sheet = openpyxl.load_workbook(out / "resultados_clustering.xlsx", read_only=True)["Clusters"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    in_sheet = pd.DataFrame(rows[1:], columns=header)[["Id", "cluster"]].astype("int64")
    assert len(in_sheet) == len(users)
    merged = users[["Id", "cluster"]].merge(in_sheet, on="Id", suffixes=("", "_xlsx"), validate="1:1")
    assert len(merged) == len(users) and (merged["cluster"] == merged["cluster_xlsx"]).all()


def test_scored_clusters_equal_the_saved_model_prediction(trained, scored):
    model_dir = trained / "model"
    recorded = json.loads((model_dir / "modelo_metadata.json").read_text(encoding="utf-8"))["files"]
    for name in ("modelo_clustering.pkl", "escalador.pkl"):
        assert sha256(model_dir / name) == recorded[name]["sha256"]  # checked before unpickling
    model, scaler = joblib.load(model_dir / "modelo_clustering.pkl"), joblib.load(model_dir / "escalador.pkl")
    users = read_parquet(trained / "scored" / "usuarios")
    fcfg = load_config()["features"]
    predicted = model.predict(scaler.transform(feature_frame(users, fcfg)))
    assert (predicted == users["cluster"].to_numpy()).all()
    assert set(users["cluster"]) <= set(range(4)) and users["cluster"].nunique() > 1
    names = {s["cluster"]: s["nombre"] for s in
             json.loads((model_dir / "segmentos.json").read_text(encoding="utf-8"))["segments"]}
    assert (users["segmento"] == users["cluster"].map(names)).all()


@pytest.mark.parametrize("name", ["modelo_clustering.pkl", "escalador.pkl", "modelo.json"])
def test_a_changed_model_file_is_refused_before_any_work(trained, tmp_path, scheduler, name):
    model_dir = copy_model(trained, tmp_path / "model")
    with open(model_dir / name, "ab") as handle:
        handle.write(b" ")  # one byte: still a valid JSON for modelo.json, but not the recorded one
    proc = score(trained, model_dir, tmp_path / "out", scheduler)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailseg: error:")]
    assert len(errors) == 1 and str(model_dir / name) in errors[0] and "SHA-256" in errors[0]
    assert "connected to" not in proc.stderr  # refused before joining the cluster
    assert not (tmp_path / "out").exists() and proc.stdout == ""


def test_missing_metadata_is_refused(trained, tmp_path, scheduler):
    model_dir = copy_model(trained, tmp_path / "model")
    (model_dir / "modelo_metadata.json").unlink()
    proc = score(trained, model_dir, tmp_path / "out", scheduler)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailseg: error:")]
    assert len(errors) == 1 and str(model_dir / "modelo_metadata.json") in errors[0]
    assert "--trust-unverified" in errors[0] and not (tmp_path / "out").exists()


def test_segments_of_another_run_are_refused(trained, tmp_path, scheduler):
    model_dir = copy_model(trained, tmp_path / "model")
    table = json.loads((model_dir / "segmentos.json").read_text(encoding="utf-8"))
    table["segments"] = table["segments"][:3]  # as left by a run with k=3 killed before it rewrote the model
    (model_dir / "segmentos.json").write_text(json.dumps(table), encoding="utf-8")
    proc = score(trained, model_dir, tmp_path / "out", scheduler)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert str(model_dir / "segmentos.json") in proc.stderr and "k=4" in proc.stderr


@pytest.mark.parametrize("damage", ["no_metadata", "changed_pickle"])
def test_trust_unverified_proceeds_with_a_warning(trained, scored, tmp_path, scheduler, damage):
    model_dir = copy_model(trained, tmp_path / "model")
    if damage == "no_metadata":
        (model_dir / "modelo_metadata.json").unlink()
        named = model_dir / "modelo_metadata.json"
    else:
        with open(model_dir / "modelo_clustering.pkl", "ab") as handle:
            handle.write(b"x")
        named = model_dir / "modelo_clustering.pkl"
    proc = score(trained, model_dir, tmp_path / "out", scheduler, "--trust-unverified")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("mailseg: warning:")]
    assert any(str(named) in line for line in warnings), proc.stderr
    assert "Traceback" not in proc.stderr
    assert one_json_last_line(proc)["rows_kept"] == 2000
    verified = read_parquet(trained / "scored" / "usuarios", ["Id", "cluster"]).set_index("Id").sort_index()
    trusted = read_parquet(tmp_path / "out" / "usuarios", ["Id", "cluster"]).set_index("Id").sort_index()
    assert trusted.equals(verified)  # the clusters come from modelo.json, never from the pickles
