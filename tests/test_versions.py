"""Model versions (issue 13): every run/update stored whole, a current pointer, rollback, idempotent updates.

Through the Python API on the in-process client (fast), and the CLI for `models` / `rollback` / exit codes.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from cli_helpers import assert_one_line_error, mailseg, one_json_last_line

import mailseg_dist as ms
from mailseg_dist.core.catalog import (
    CURRENT_JSON,
    MODEL_PKL,
    MONTHS_SUBDIR,
    SUMMARY_JSON,
    USERS_SUBDIR,
    VERSION_JSON,
    VERSIONS_SUBDIR,
)

pytestmark = pytest.mark.slow  # every test runs whole jobs (ms.run / ms.update, or the CLI), however small

SMALL = {"selection": {"silhouette_sample": 1000}, "quality": {"bootstrap_rounds": 2, "bootstrap_sample": 1000}}


def tree_hashes(folder, skip=()) -> dict:
    """SHA-256 of every file under `folder` (relative path → hash), leaving out top-level names in `skip`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] not in skip}


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    folder = tmp_path_factory.mktemp("months")
    return {m: ms.generate(2500, folder / f"{m}.csv", seed=s)["path"]
            for m, s in (("2026-01", 1), ("2026-02", 2), ("2026-02b", 3))}


@pytest.fixture
def history(tmp_path, months, dask_client, monkeypatch):
    """A run on 2026-01 then an update with 2026-02, in tmp_path (data/ and Resultados/ there)."""
    monkeypatch.chdir(tmp_path)
    first = ms.run(months["2026-01"], k=3, seed=4, config=SMALL, month="2026-01", client=dask_client)
    after_run = tree_hashes(tmp_path / "Resultados", skip=(VERSIONS_SUBDIR, MONTHS_SUBDIR))
    second = ms.update(months["2026-02"], month="2026-02", config=SMALL, client=dask_client)
    return tmp_path / "Resultados", first, second, after_run


def test_each_run_and_update_is_a_sealed_version_and_the_top_level_is_the_current_one(history):
    out, first, second, _ = history
    versions = ms.models(out)
    assert [v["id"] for v in versions] == [first["version"], second["version"]]
    assert [(v["kind"], v["month"], v["parent"], v["current"]) for v in versions] == [
        ("run", "2026-01", None, False), ("update", "2026-02", first["version"], True)]
    assert versions[1]["input_sha256"] == second["input_sha256"] and versions[1]["k"] == second["k"] == 3
    pointer = json.loads((out / VERSIONS_SUBDIR / CURRENT_JSON).read_text(encoding="utf-8"))
    assert pointer == {"version": second["version"]}
    current = out / VERSIONS_SUBDIR / second["version"]
    assert (out / MODEL_PKL).read_bytes() == (current / MODEL_PKL).read_bytes()
    for month, version in (("2026-01", first["version"]), ("2026-02", second["version"])):
        month_dir = out / MONTHS_SUBDIR / month
        assert json.loads((month_dir / VERSION_JSON).read_text(encoding="utf-8"))["version"] == version
        assert tree_hashes(month_dir / USERS_SUBDIR) == tree_hashes(out / VERSIONS_SUBDIR / version / USERS_SUBDIR)
    top = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert top["version"] == second["version"] and top["outputs"]["xlsx"] == str(out / "resultados_clustering.xlsx")


def test_the_same_month_and_content_again_changes_no_file(history, months, dask_client):
    out, _, second, _ = history
    before = tree_hashes(out)
    again = ms.update(months["2026-02"], month="2026-02", config=SMALL, client=dask_client)
    assert again["already_applied"] is True and again["version"] == second["version"]
    assert tree_hashes(out) == before
    assert len(ms.models(out)) == 2


def test_other_content_for_an_applied_month_needs_replace_which_rebuilds_it_from_its_parent(history, months,
                                                                                            dask_client):
    out, first, second, _ = history
    before = tree_hashes(out)
    with pytest.raises(ms.UsageError, match="2026-02 was already ingested from other content"):
        ms.update(months["2026-02b"], month="2026-02", config=SMALL, client=dask_client)
    assert tree_hashes(out) == before
    rebuilt = ms.update(months["2026-02b"], month="2026-02", config=SMALL, client=dask_client, replace=True)
    assert rebuilt["parent_version"] == first["version"] and rebuilt["version"] not in (first["version"],
                                                                                       second["version"])
    assert [v["id"] for v in ms.models(out) if v["current"]] == [rebuilt["version"]]
    assert rebuilt["update"]["previous_model"] == str(out / VERSIONS_SUBDIR / first["version"])


def test_rollback_restores_the_earlier_versions_exact_files(history, months, dask_client):
    out, first, second, after_run = history
    restored = ms.rollback(first["version"], out=out)
    assert restored["version"] == first["version"]
    assert tree_hashes(out, skip=(VERSIONS_SUBDIR, MONTHS_SUBDIR)) == after_run
    assert [v["id"] for v in ms.models(out) if v["current"]] == [first["version"]]
    # the same month, content and parent again: the version computed before is made current, no refit
    back = ms.update(months["2026-02"], month="2026-02", config=SMALL, client=dask_client)
    assert back["version"] == second["version"] and back["already_applied"] is True
    assert len(ms.models(out)) == 2


@pytest.mark.parametrize("where", ["publish", "promote"])
def test_a_failed_update_leaves_the_current_version_and_its_outputs(history, months, dask_client, monkeypatch,
                                                                    where):
    out, _, second, _ = history
    before = tree_hashes(out, skip=(VERSIONS_SUBDIR, MONTHS_SUBDIR))
    calls = {"n": 0}

    def fail(*args, **kwargs):
        raise RuntimeError(f"killed during {where}")

    def fail_on_third_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed during promote")
        return real_copy(*args, **kwargs)

    from mailseg_dist.outputs import publish
    from mailseg_dist.workflows import versions

    real_copy, real_figures = versions._copy_file, publish.make_all_figures
    if where == "publish":
        monkeypatch.setattr("mailseg_dist.outputs.publish.make_all_figures", fail)
    else:
        monkeypatch.setattr(versions, "_copy_file", fail_on_third_copy)
    nxt = ms.generate(2500, out.parent / "march.csv", seed=9)["path"]
    with pytest.raises(RuntimeError, match="killed"):
        ms.update(nxt, month="2026-03", config=SMALL, client=dask_client)
    assert [v["id"] for v in ms.models(out) if v["current"]] == [second["version"]]
    # publish failed: nothing sealed; promote failed: the new version is sealed, whole, but not current
    assert len(ms.models(out)) == (2 if where == "publish" else 3)
    assert json.loads((out / VERSIONS_SUBDIR / CURRENT_JSON).read_text())["version"] == second["version"]
    if where == "publish":
        assert tree_hashes(out, skip=(VERSIONS_SUBDIR, MONTHS_SUBDIR)) == before
    else:  # cut during the copy: no run_summary.json says the top level is being changed
        assert not (out / SUMMARY_JSON).exists()
    monkeypatch.setattr(versions, "_copy_file", real_copy)  # (undo() would also undo the fixture's chdir)
    monkeypatch.setattr(publish, "make_all_figures", real_figures)
    done = ms.update(nxt, month="2026-03", config=SMALL, client=dask_client)
    assert [v["id"] for v in ms.models(out) if v["current"]] == [done["version"]]
    assert (out / MODEL_PKL).read_bytes() == (out / VERSIONS_SUBDIR / done["version"] / MODEL_PKL).read_bytes()


@pytest.mark.slow
def test_models_and_rollback_through_the_cli(tmp_path, months):
    assert mailseg("run", months["2026-01"], "--k", "3", "--month", "2026-01", cwd=tmp_path).returncode == 0
    proc = mailseg("update", months["2026-02"], "--month", "2026-02", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listing = mailseg("models", cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.count("\n") == 2
    assert listing.stdout.splitlines()[1].startswith("* v0002-2026-02  update month 2026-02")
    versions = one_json_last_line(mailseg("models", "--json", cwd=tmp_path))["versions"]
    assert [v["current"] for v in versions] == [False, True]
    rolled = one_json_last_line(mailseg("rollback", versions[0]["id"], "--json", cwd=tmp_path))
    assert rolled["month"] == "2026-01" and rolled["rolled_back"] is True
    assert_one_line_error(mailseg("rollback", "v0099-2026-01", cwd=tmp_path), 2, "no such version")
    assert_one_line_error(mailseg("rollback", "latest", cwd=tmp_path), 2, "version expected an id like")


def _each_id_follows_its_segment(out, summary) -> bool:
    """In feature units, every new centre of a segment holding >= 1% of users is nearest to the parent's centre
    with the same id (a segment of one or two extreme users is a different user each month)."""
    import numpy as np

    def centres(version):
        plain = json.loads((out / VERSIONS_SUBDIR / version / "modelo.json").read_text(encoding="utf-8"))
        return np.asarray(plain["centers"]) * plain["scaler"]["scale"] + plain["scaler"]["mean"]

    old, new = centres(summary["parent_version"]), centres(summary["version"])
    scale = np.asarray(json.loads((out / VERSIONS_SUBDIR / summary["version"] / "modelo.json").read_text(
        encoding="utf-8"))["scaler"]["scale"])
    distance = (((new[:, None, :] - old[None, :, :]) / scale) ** 2).sum(axis=2)
    sizable = [s["cluster"] for s in summary["segments"] if s["share"] >= 0.01]
    assert len(sizable) >= 3
    return bool((distance.argmin(axis=1)[sizable] == np.asarray(sizable)).all())


def _months_with_more_bouncers(folder, rows: int = 6000) -> dict:
    """Month 1; month 2 = 80% of month 1's users again (re-drawn behaviour) + new ones; month 3 = month 2 with
    the bouncing users (bounces ≥ 30% of sends) tripled under new Ids."""
    import pandas as pd

    one = pd.read_csv(ms.generate(rows, folder / "m1.csv", seed=21)["path"])
    two = pd.read_csv(ms.generate(rows, folder / "m2.csv", seed=22)["path"])
    returning = int(0.8 * rows)
    two.loc[: returning - 1, "Id"] = one["Id"].to_numpy()[:returning]
    two.loc[returning:, "Id"] = one["Id"].max() + 1 + pd.RangeIndex(rows - returning)
    bouncers = two[two["bounce"] >= 0.3 * two["send"]]
    extra = pd.concat([bouncers, bouncers], ignore_index=True)
    extra["Id"] = two["Id"].max() + 1 + pd.RangeIndex(len(extra))
    three = pd.concat([two, extra], ignore_index=True)
    paths = {}
    for name, frame in (("2026-01", one), ("2026-02", two), ("2026-03", three)):
        paths[name] = folder / f"month-{name}.csv"
        frame.to_csv(paths[name], index=False)
    return {"paths": paths, "bouncer_share": (len(bouncers) / len(two), 3 * len(bouncers) / len(three))}


@pytest.mark.slow
def test_three_months_drift_flags_the_grown_segment_and_transitions_equal_a_pandas_merge(tmp_path, dask_client,
                                                                                         monkeypatch):
    import pandas as pd
    from cli_helpers import read_users

    monkeypatch.chdir(tmp_path)
    data = _months_with_more_bouncers(tmp_path)
    small = {**SMALL, "selection": {"silhouette_sample": 2000}}
    ms.run(data["paths"]["2026-01"], k=5, seed=3, config=small, month="2026-01", client=dask_client)
    feb = ms.update(data["paths"]["2026-02"], month="2026-02", config=small, client=dask_client)
    drift = feb["update"]["drift"]
    assert not drift["verdict"]["refit_advised"] and drift["share_psi"] <= 0.1
    assert max(f["psi"] for f in drift["features"]) <= 0.1, drift["features"]
    assert _each_id_follows_its_segment(tmp_path / "Resultados", feb)

    mar = ms.update(data["paths"]["2026-03"], month="2026-03", config=small, client=dask_client)
    drift = mar["update"]["drift"]
    assert drift["verdict"]["refit_advised"] and drift["verdict"]["because"]
    bounce = next(f for f in drift["features"] if f["feature"] == "bounce")
    assert bounce["psi"] > 0.1
    grown = max(drift["segments"], key=lambda s: s["share_change"])
    assert grown["name_now"].startswith("Rebotes") and grown["share_now"] > 1.5 * grown["share_then"]

    out = tmp_path / "Resultados"
    before = read_users(out / MONTHS_SUBDIR / "2026-02" / USERS_SUBDIR, ["Id", "cluster"])
    after = read_users(out / MONTHS_SUBDIR / "2026-03" / USERS_SUBDIR, ["Id", "cluster"])
    merged = before.merge(after, on="Id", how="outer", suffixes=("_prev", "_now"))
    common = merged.dropna()
    expected = pd.crosstab(common["cluster_prev"].astype(int), common["cluster_now"].astype(int))
    moves = drift["transitions"]
    got = pd.DataFrame(moves["counts"], index=moves["clusters"], columns=moves["clusters"])
    pd.testing.assert_frame_equal(got.loc[expected.index, expected.columns], expected, check_names=False,
                                  check_dtype=False)
    assert got.to_numpy().sum() == len(common) == moves["common"]
    assert moves["new"] == int(merged["cluster_prev"].isna().sum()) and moves["gone"] == int(
        merged["cluster_now"].isna().sum())
    report = (out / "informe.html").read_text(encoding="utf-8")
    assert "Qué cambió" in report and f"{bounce['psi']:.2f}".replace(".", ",") in report


def test_blend_mode_is_wired_through_the_update_and_keeps_the_parent_scaler(history, months, dask_client):
    """update.mode: blend reaches the fit: the new version keeps the parent's scaler bit for bit."""
    import joblib

    out, _, second, _ = history
    nxt = ms.generate(2500, out.parent / "april.csv", seed=11)["path"]
    blended = ms.update(nxt, month="2026-04", config={**SMALL, "update": {"mode": "blend"}}, client=dask_client)
    assert blended["engine"] == "blend" and blended["parent_version"] == second["version"]
    parent = joblib.load(out / VERSIONS_SUBDIR / second["version"] / "escalador.pkl")
    scaler = joblib.load(out / VERSIONS_SUBDIR / blended["version"] / "escalador.pkl")
    assert (parent.mean_ == scaler.mean_).all() and (parent.scale_ == scaler.scale_).all()
    assert ms.models(out)[-1]["update_mode"] == "blend"
