"""Monthly update: refit from the previous model's centres, ids follow their segments (unit and CLI)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from cli_helpers import (
    assert_one_line_error,
    mailseg,
    one_json_last_line,
    read_users,
    write_config,
)
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.config import load_config
from mailseg_dist.model.features import feature_frame
from mailseg_dist.model.matching import matching
from mailseg_dist.model.modelling import fit_segments
from mailseg_dist.segments.profiles import segment_names, segment_profiles

SMALL = {"ingest": {"chunk_rows": 1000}, "quality": {"bootstrap_rounds": 2}}


@pytest.mark.parametrize("seed", range(5))
def test_matching_is_the_cheapest_one_to_one_assignment(seed):
    rng = np.random.default_rng(seed)
    old, new = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    order = matching(old, new)
    cost = lambda perm: sum(((old[i] - new[j]) ** 2).sum() for i, j in enumerate(perm))  # noqa: E731
    assert sorted(order) == list(range(5))
    assert cost(order) == pytest.approx(min(cost(p) for p in itertools.permutations(range(5))))
    assert np.array_equal(matching(old, old[[2, 0, 1, 4, 3]]), [1, 2, 0, 4, 3])


@pytest.fixture(scope="module")
def users_folder(tmp_path_factory):
    from conftest import make_clean_users

    folder = tmp_path_factory.mktemp("update") / "users" / "month=2026-01"
    folder.mkdir(parents=True)
    users = make_clean_users(3000, seed=3)
    bounds = [0, 700, 1500, 2300, 3000]
    for i in range(4):
        users.iloc[bounds[i]:bounds[i + 1]].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    (users.iloc[0:0]).to_parquet(folder / "part-00004.parquet", index=False)  # an empty partition
    return folder, users


def test_ids_follow_the_start_and_the_fit_equals_sklearn_from_it(users_folder):
    folder, users = users_folder
    cfg = load_config(overrides={"model.k": 4, "model.tol": 0.0, "model.max_iter": 300})
    cfg["quality"]["bootstrap_rounds"] = 0
    features = feature_frame(users, cfg["features"]).to_numpy(np.float64)
    first = fit_segments(folder, cfg)
    start = first.centers * first.scaler.scale_ + first.scaler.mean_  # feature units, as modelo.json gives
    shuffled = start[[3, 1, 0, 2]]  # last month's ids in another order
    again = fit_segments(folder, cfg, start=shuffled)
    assert again.k == 4 and not again.ids_reordered
    np.testing.assert_allclose(again.centers, first.centers[[3, 1, 0, 2]], rtol=1e-9, atol=1e-9)
    # Dask refit from the start == sklearn's Lloyd from the same start on the same data
    scaler = StandardScaler().fit(features)
    theirs = KMeans(4, init=scaler.transform(shuffled), n_init=1, tol=0.0, max_iter=300).fit(scaler.transform(features))
    np.testing.assert_allclose(again.centers, theirs.cluster_centers_, rtol=1e-7, atol=1e-9)


def test_swapped_centres_are_put_back_under_their_ids(users_folder, monkeypatch):
    """If the engine hands back the centres in another order, each id still follows its old segment."""
    from mailseg_dist.model import modelling
    from mailseg_dist.model.engines import lloyd

    folder, _ = users_folder
    cfg = load_config(overrides={"model.k": 3})
    cfg["quality"]["bootstrap_rounds"] = 0
    first = fit_segments(folder, cfg)
    start = first.centers * first.scaler.scale_ + first.scaler.mean_

    def swapping(X, k, mcfg, init_centers=None, sample=None):
        result = lloyd.fit(X, k, mcfg, init_centers=init_centers, sample=sample)
        return lloyd.EngineResult(result.centers[[2, 0, 1]], result.n_iter, result.history)

    monkeypatch.setattr(modelling, "get_engine", lambda name: swapping)
    again = fit_segments(folder, cfg, start=start)
    assert again.ids_reordered
    np.testing.assert_allclose(again.centers, first.centers, rtol=1e-9, atol=1e-9)
    assert [again.cluster_sizes[j] for j in range(3)] == [first.cluster_sizes[j] for j in range(3)]


# ---------------------------------------------------------------- through the CLI
@pytest.mark.slow
def test_update_keeps_k_and_ids_on_next_months_users(tmp_path):
    config = write_config(tmp_path / "small.yaml", SMALL)
    for name, seed in (("jan.csv", 5), ("feb.csv", 6)):
        assert mailseg("generate", "--rows", 4000, "--out", tmp_path / name, "--seed", seed, cwd=tmp_path).returncode == 0
    common = ["--data-dir", "d", "--config", config, "--json"]
    first = mailseg("run", tmp_path / "jan.csv", "--month", "2026-01", "--k", 4, "--out", "jan", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = json.loads((tmp_path / "jan" / "modelo.json").read_text())

    done = mailseg("update", tmp_path / "feb.csv", "--month", "2026-02", "--model-dir", "jan", "--out", "feb", *common,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = one_json_last_line(done)
    assert summary["k"] == 4 and summary["rows_kept"] == 4000 and summary["month"] == "2026-02"
    block = summary["update"]
    # read from the model folder's current version (whole and immutable), not its top-level copies
    assert block["previous_model"] == str(tmp_path / "jan" / "modelos" / one_json_last_line(first)["version"])
    assert len(block["segments"]) == 4
    after = json.loads((tmp_path / "feb" / "modelo.json").read_text())
    # in feature units, every new centre is nearest to the old centre with its own id
    old = np.asarray(before["centers"]) * before["scaler"]["scale"] + before["scaler"]["mean"]
    new = np.asarray(after["centers"]) * after["scaler"]["scale"] + after["scaler"]["mean"]
    scale = np.asarray(after["scaler"]["scale"])
    nearest_old = (((new[:, None, :] - old[None]) / scale) ** 2).sum(axis=2).argmin(axis=1)
    assert list(nearest_old) == [0, 1, 2, 3]
    users = read_users(tmp_path / "feb" / "usuarios", ["Id", "cluster"])
    assert len(users) == 4000 and set(users["cluster"]) <= {0, 1, 2, 3}

    # Each line of the block describes the segment that carries its id, recomputed here from what each month
    # wrote (per-user tables, modelo.json), not copied from the summaries: a block built before the ids were
    # put back, or from last month's table in its own order, fails one of these.
    first_names = {s["cluster"]: s["name"] for s in one_json_last_line(first)["segments"]}
    shift = np.sqrt((((old - np.asarray(after["scaler"]["mean"])) / scale - np.asarray(after["centers"])) ** 2)
                    .sum(axis=1))
    months = {}
    for month in ("jan", "feb"):
        profiles = segment_profiles(tmp_path / month / "usuarios", 4)
        shares = read_users(tmp_path / month / "usuarios", ["cluster"])["cluster"].value_counts(normalize=True)
        months[month] = (segment_names(profiles, load_config()), shares)
    for line in block["segments"]:
        j = line["cluster"]
        assert line["previous_name"] == months["jan"][0][j] == first_names[j], line
        assert line["name"] == months["feb"][0][j], line
        assert line["previous_share"] == pytest.approx(months["jan"][1].get(j, 0.0), abs=1e-4), line
        assert line["share"] == pytest.approx(months["feb"][1].get(j, 0.0), abs=1e-4), line
        assert line["center_shift"] == pytest.approx(shift[j], abs=1e-4), line


@pytest.mark.slow
def test_update_without_a_previous_model_is_refused_before_any_cluster(tmp_path):
    assert mailseg("generate", "--rows", 200, "--out", tmp_path / "u.csv", cwd=tmp_path).returncode == 0
    done = mailseg("update", tmp_path / "u.csv", "--model-dir", "nowhere", "--out", "o", "--data-dir", "d",
                   cwd=tmp_path)
    assert_one_line_error(done, 3, "no readable model metadata")
    assert "LocalCluster" not in done.stderr and not (tmp_path / "d").exists() and not (tmp_path / "o").exists()
