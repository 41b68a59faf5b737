"""The Python API (mailseg_dist): segment / Segmentation, run, score, update, ingest, generate.

Checked against the CLI on the same data and seed (same centres, same labels), against pandas for the
segment shares, and with and without a client.
"""

from __future__ import annotations

import json

import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
import pytest
from cli_helpers import mailseg, one_json_last_line, read_users

import mailseg_dist as ms
from mailseg_dist.core.catalog import MODEL_PKL, SUMMARY_JSON, USERS_SUBDIR, XLSX_NAME

SMALL = {"selection": {"silhouette_sample": 1500}, "quality": {"bootstrap_rounds": 2, "bootstrap_sample": 1500}}


@pytest.fixture(scope="module")
def users_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api_input")
    summary = ms.generate(4000, folder / "users.csv", seed=11)
    assert summary["rows"] == 4000 and summary["format"] == "csv"
    return folder / "users.csv"


@pytest.fixture(scope="module")
def users_df(users_csv):
    return pd.read_csv(users_csv)


def _labels_by_id(out) -> pd.Series:
    users = read_users(out / USERS_SUBDIR, columns=["Id", "cluster"])
    return users.set_index("Id")["cluster"].sort_index()


@pytest.mark.slow
def test_segment_on_a_frame_a_parquet_path_and_a_dask_frame_equals_mailseg_run(tmp_path, users_csv, users_df,
                                                                               dask_client, monkeypatch):
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    proc = mailseg("run", users_csv, "--k", "4", "--seed", "7", "--json", cwd=cli_dir)
    assert proc.returncode == 0, proc.stderr
    cli = one_json_last_line(proc)
    cli_model = joblib.load(cli_dir / "Resultados" / MODEL_PKL)
    cli_labels = _labels_by_id(cli_dir / "Resultados")

    monkeypatch.chdir(tmp_path)
    from_frame = ms.segment(users_df, k=4, seed=7, client=dask_client, data_dir=str(tmp_path / "d1"))
    users_df.to_parquet(tmp_path / "users.parquet", index=False)
    from_parquet = ms.segment(tmp_path / "users.parquet", k=4, seed=7, data_dir=str(tmp_path / "d2"))  # own cluster
    lazy = dd.from_pandas(users_df, npartitions=3)
    from_dask = ms.segment(lazy, k=4, seed=7, client=dask_client, data_dir=str(tmp_path / "d3"))

    for seg in (from_frame, from_parquet, from_dask):
        assert seg.k == cli["k"] == 4
        np.testing.assert_array_equal(seg.model.cluster_centers_, cli_model.cluster_centers_)
        assert seg.metrics["inertia"] == pytest.approx(cli["inertia"], rel=1e-12)
        assert list(seg.segments["name"]) == [s["name"] for s in cli["segments"]]
        predicted = pd.Series(seg.predict(users_df), index=users_df["Id"]).sort_index()
        pd.testing.assert_series_equal(predicted, cli_labels, check_names=False, check_dtype=False)
    assert dask_client.status == "running"  # a client handed in is never closed


def test_segmentation_holds_what_a_notebook_needs_and_writes_the_run_outputs(tmp_path, users_df, dask_client,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    seg = ms.segment(users_df, k=3, seed=3, config=SMALL, client=dask_client)
    assert (tmp_path / "data" / "parquet" / "users").is_dir()  # data/ relative to the current folder
    assert seg.k == 3 and seg.k_reason == {"rule": "fixed", "k": 3}
    assert "k=3" in seg.k_reason_text("en") and "fijada" in seg.k_reason_text("es")
    assert list(seg.k_table["k"]) == [3] and seg.k_table["inertia"].iloc[0] == pytest.approx(seg.metrics["inertia"])
    labels = seg.predict(users_df)
    shares = np.bincount(labels, minlength=3) / len(users_df)
    np.testing.assert_allclose(seg.segments["share"].to_numpy(), shares, atol=1e-12)
    sizes = seg.segments["size"].to_numpy()
    np.testing.assert_array_equal(sizes, np.bincount(labels, minlength=3))
    assert list(seg.segments.columns[:5]) == ["id", "name", "level", "share", "action"]
    assert set(seg.segments["level"]) <= {"Alta", "Baja"}
    np.testing.assert_allclose(seg.segments["send_mean"].to_numpy(),
                               users_df.groupby(labels)["send"].mean().to_numpy(), rtol=1e-9)
    assert seg.manifest["rows_in"] == seg.manifest["rows_kept"] + seg.manifest["rows_rejected"] == len(users_df)
    np.testing.assert_array_equal(seg.model.predict(seg.scaler.transform(
        users_df.assign(engagement_score=users_df["open"] + 2 * users_df["click"] + 3 * users_df["Comprador"])
        [seg.scaler.feature_names_in_])), labels)

    summary = seg.write(tmp_path / "out", client=dask_client)
    out = tmp_path / "out"
    for name in (XLSX_NAME, MODEL_PKL, "escalador.pkl", "informe.html", SUMMARY_JSON):
        assert (out / name).is_file(), name
    assert json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8")) == json.loads(json.dumps(summary))
    assert summary["rows_reconciled"] and summary["k"] == 3
    pd.testing.assert_series_equal(_labels_by_id(out), pd.Series(labels, index=users_df["Id"]).sort_index(),
                                   check_names=False, check_dtype=False)
    assert dask_client.status == "running"


def test_predict_refuses_a_row_the_ingest_would_reject(tmp_path, users_df, dask_client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seg = ms.segment(users_df.head(600), k=2, seed=1, config=SMALL, client=dask_client)
    renamed = users_df.head(5).drop(columns=["Id"]).rename(columns={"send": "Enviados", "open": "Aperturas"})
    np.testing.assert_array_equal(seg.predict(renamed), seg.predict(users_df.head(5)))  # aliases, Id optional
    bad = users_df.head(5).copy()
    bad.loc[3, "send"] = -2
    with pytest.raises(ms.InputDataError, match=r"row 3 column send"):
        seg.predict(bad)
    with pytest.raises(ms.InputDataError, match="missing required column.*hour"):
        seg.predict(users_df.head(5).drop(columns=["hour"]))


def test_auto_k_reason_is_data_worded_in_either_language(tmp_path, users_df, dask_client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {**SMALL, "model": {"k_min": 2, "k_max": 5}}
    seg = ms.segment(users_df, config=config, seed=5, client=dask_client)
    why = seg.k_reason
    assert why["rule"] == "knee" and why["k"] == seg.k and 2 <= why["knee"] <= 5
    assert set(why["silhouettes"]) == {k for k in range(2, 6) if abs(k - why["knee"]) <= why["window"]}
    best = max((s, -k) for k, s in why["silhouettes"].items() if k not in why["under_min_share"])
    assert -best[1] == seg.k
    assert f"picked k={seg.k}" in seg.k_reason_text("en") and f"elegida k={seg.k}" in seg.k_reason_text("es")


def test_a_bad_config_value_is_refused_before_any_work(tmp_path, users_df, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ms.ConfigError, match="model.engine"):
        ms.segment(users_df, config={"model": {"engine": "kmeans"}})
    with pytest.raises(ms.UsageError, match="month"):
        ms.segment(users_df, month="2026-13")
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_run_score_and_update_through_the_api(tmp_path, users_csv, users_df, dask_client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = ms.run(users_csv, k=3, seed=2, config=SMALL, client=dask_client, month="2026-10")
    out = tmp_path / "Resultados"
    assert summary["k"] == 3 and (out / SUMMARY_JSON).is_file()
    scored = ms.score(users_df.head(500), model_dir=out, out=tmp_path / "scored", client=dask_client)
    assert scored["rows_kept"] == 500
    scored_labels = _labels_by_id(tmp_path / "scored")
    run_labels = _labels_by_id(out)
    pd.testing.assert_series_equal(scored_labels, run_labels.loc[scored_labels.index])
    nxt = ms.generate(3000, tmp_path / "next.csv", seed=12)
    updated = ms.update(nxt["path"], month="2026-11", config=SMALL, client=dask_client)
    assert updated["k"] == 3 and updated["update"]["previous_model"] == str(out / "modelos" / summary["version"])
    assert updated["month"] == "2026-11" and updated["rows_reconciled"]


def test_every_command_and_api_function_is_documented():
    """As sqlite-utils does: a command or API function missing from the README or without a docstring fails."""
    import argparse
    from pathlib import Path

    from jobs.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) >= {"run", "update", "score", "ingest", "generate"}
    undocumented = [c for c in commands if f"mailseg {c}" not in readme]
    assert not undocumented, f"commands missing from README.md: {undocumented}"
    for name in ms.__all__:
        value = getattr(ms, name)
        if callable(value) and not isinstance(value, type(ms.MailsegError)):
            assert (value.__doc__ or "").strip(), f"mailseg_dist.{name} has no docstring"
            assert f"ms.{name}(" in readme, f"mailseg_dist.{name} is missing from README.md's Python API section"
    assert "Parameters\n    ----------" in ms.segment.__doc__ and "Returns\n    -------" in ms.segment.__doc__
