"""Segment profiles (Dask) against pandas, and the naming rules on hand-built profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users, split_with_empty

import mailseg_dist.segments.profiles as profiles_module
from mailseg_dist.core.config import load_config
from mailseg_dist.segments.profiles import (
    RAW_COLUMNS,
    _median_from_counts,
    engagement_level,
    population,
    segment_names,
    segment_profiles,
    segment_traits,
)

INT_COLUMNS = ["send", "bounce", "open", "click", "Total", "Comprador", "engagement_score"]

# The notebook's six segments (SEED_FACTS.md): size and means in original units.
SEED = pd.DataFrame(
    [[33939, 2.873, 0.016, 0.816, 0.084, 3.899, 0.582, 15.54, 3.45, 2.729, 0.130],
     [56272, 1.725, 0.295, 0.085, 0.005, 2.111, 0.593, 20.95, 3.58, 1.875, 0.324],
     [3319, 11.633, 0.066, 7.808, 2.362, 23.241, 0.721, 15.53, 2.51, 14.695, 0.045],
     [23282, 1.766, 1.552, 0.021, 0.001, 3.522, 0.152, 13.79, 1.60, 0.480, 0.360],
     [42957, 9.112, 0.021, 0.771, 0.070, 10.183, 0.671, 18.88, 2.05, 2.925, 0.139],
     [52523, 2.514, 0.033, 0.204, 0.025, 2.777, 0.819, 19.78, 1.36, 2.708, 0.439]],
    columns=["size", *RAW_COLUMNS, "silhouette"])
SEED_POPULATION = {"send": 3.757801, "bounce": 0.264273, "open": 0.483819, "click": 0.072108, "Total": 4.680077,
                   "Comprador": 0.6165, "hour": 18.506052, "day_of_week": 2.467164, "engagement_score": 2.477663}
SEED_NAMES_ES = ["Lectores de tarde", "Poco enviados de noche que apenas abren", "Núcleo muy comprometido",
                 "Rebotes: limpiar lista", "Muy enviados, compromiso moderado", "Compradores fieles poco lectores"]
SEED_NAMES_EN = ["Afternoon openers", "Lightly mailed evening users who barely open", "Highly engaged core",
                 "Bouncers: clean the list", "Heavily mailed, moderately engaged", "Loyal buyers who rarely open"]


def _profile_row(size: int, means: dict, silhouette: float = np.nan) -> dict:
    row = {"size": size, "silhouette_mean": silhouette}
    for col in RAW_COLUMNS:
        row[f"{col}_mean"] = means[col]
        row[f"{col}_median"] = means[col]
        row[f"{col}_std"] = 1.0
    row.update(buyer_rate=means["Comprador"], open_rate=means["open"] / means["send"],
               click_rate=means["click"] / means["open"] if means["open"] else np.nan,
               bounce_rate=means["bounce"] / means["send"], typical_hour=float(np.floor(means["hour"] + 0.5)),
               typical_day=float(np.floor(means["day_of_week"] + 0.5)))
    return row


def profiles_from_means(table: pd.DataFrame, pop_means: dict) -> pd.DataFrame:
    """A profile table as segment_profiles returns it, from per-segment means (ratios of means = of sums)."""
    rows = [_profile_row(int(r["size"]), r, r.get("silhouette", np.nan)) for _, r in table.iterrows()]
    profiles = pd.DataFrame(rows, index=pd.Index(table.index, name="cluster"))
    profiles.insert(1, "share", profiles["size"] / profiles["size"].sum())
    profiles.attrs["population"] = {**_profile_row(int(table["size"].sum()), pop_means), "share": 1.0}
    return profiles


def seed_profiles() -> pd.DataFrame:
    return profiles_from_means(SEED, SEED_POPULATION)


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def labelled():
    df = make_clean_users(900, seed=3)
    rng = np.random.default_rng(1)
    df["cluster"] = rng.integers(0, 4, len(df))
    df["silhouette_score"] = rng.uniform(-0.2, 0.9, len(df))
    return df


# ---------------------------------------------------------------- statistics vs pandas
@pytest.mark.parametrize("combine_every", [8, 2])  # one combine of all partitions; a tree of three levels
@pytest.mark.parametrize("as_parts", [False, True])  # a Dask frame; its partitions as delayed frames
def test_profiles_match_pandas(labelled, monkeypatch, combine_every, as_parts):
    monkeypatch.setattr(profiles_module, "COMBINE_EVERY", combine_every)
    frame = split_with_empty(labelled, 5)
    got = segment_profiles(frame.to_delayed() if as_parts else frame, k=4)
    g = labelled.groupby("cluster")
    sums = g[RAW_COLUMNS].sum()
    assert got["size"].to_dict() == g.size().to_dict()  # by cluster id: the row labelled j holds cluster j's users
    np.testing.assert_allclose(got["share"], g.size() / len(labelled))
    for col in RAW_COLUMNS:
        np.testing.assert_allclose(got[f"{col}_mean"], g[col].mean(), rtol=1e-12)
        np.testing.assert_allclose(got[f"{col}_std"], g[col].std(), rtol=1e-9)
        tol = 0 if col in INT_COLUMNS else 0.005 + 1e-12  # documented: medians of values rounded to 2 decimals
        np.testing.assert_allclose(got[f"{col}_median"], g[col].median(), atol=tol, rtol=0)
    np.testing.assert_allclose(got["open_rate"], sums["open"] / sums["send"])
    np.testing.assert_allclose(got["click_rate"], sums["click"] / sums["open"])
    np.testing.assert_allclose(got["bounce_rate"], sums["bounce"] / sums["send"])
    np.testing.assert_allclose(got["buyer_rate"], g["Comprador"].mean())
    np.testing.assert_allclose(got["silhouette_mean"], g["silhouette_score"].mean())
    whole_hour = np.floor(labelled["hour"] + 0.5) % 24
    mode = lambda s: s.value_counts().sort_index().idxmax()  # noqa: E731  (first = smallest of ties)
    assert got["typical_hour"].tolist() == whole_hour.groupby(labelled["cluster"]).agg(mode).tolist()
    whole_day = np.floor(labelled["day_of_week"] + 0.5)
    assert got["typical_day"].tolist() == whole_day.groupby(labelled["cluster"]).agg(mode).tolist()


def test_population_matches_pandas(labelled):
    pop = population(segment_profiles(split_with_empty(labelled), k=4))
    assert pop["size"] == len(labelled) and pop["share"] == 1.0
    for col in RAW_COLUMNS:
        assert pop[f"{col}_mean"] == pytest.approx(labelled[col].mean(), rel=1e-12)
        assert pop[f"{col}_std"] == pytest.approx(labelled[col].std(), rel=1e-9)
        assert pop[f"{col}_median"] == pytest.approx(labelled[col].median(), abs=0.005 + 1e-12)
    assert pop["open_rate"] == pytest.approx(labelled["open"].sum() / labelled["send"].sum())
    assert pop["silhouette_mean"] == pytest.approx(labelled["silhouette_score"].mean())


def test_profiles_from_parquet_folder_equal_ddf(labelled, tmp_path):
    folder = tmp_path / "usuarios"
    folder.mkdir()
    for i, part in enumerate([labelled.iloc[:300], labelled.iloc[0:0], labelled.iloc[300:]]):
        part.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    from_path = segment_profiles(folder, k=4)
    from_ddf = segment_profiles(split_with_empty(labelled), k=4)
    pd.testing.assert_frame_equal(from_path, from_ddf)


def test_empty_cluster_kept_and_unknown_label_rejected(labelled):
    got = segment_profiles(split_with_empty(labelled), k=6)
    assert got.loc[[4, 5], "size"].tolist() == [0, 0]
    assert got.loc[[4, 5], "send_mean"].isna().all()
    with pytest.raises(ValueError, match=r"cluster labels expected in 0..2"):
        segment_profiles(split_with_empty(labelled), k=3)
    negative = labelled.assign(cluster=labelled["cluster"].where(labelled.index != 7, -1))
    with pytest.raises(ValueError, match=r"cluster labels expected >= 0, found -1"):
        segment_profiles(split_with_empty(negative), k=4)


@pytest.mark.parametrize("values", [[3], [1, 2], [5, 1, 4, 4], [0, 0, 7, 9, 9], [2.25, 1.5, 8.0, 0.75]])
def test_median_from_counts_is_the_median(values):
    counts = pd.Series(values).value_counts()
    assert _median_from_counts(counts) == pytest.approx(float(np.median(values)))


# ---------------------------------------------------------------- names and levels on hand-built profiles
def test_seed_segments_get_the_documented_names_and_levels(cfg):
    profiles = seed_profiles()
    assert segment_names(profiles, cfg).tolist() == SEED_NAMES_ES
    assert segment_names(profiles, cfg, "en").tolist() == SEED_NAMES_EN
    # The notebook's own reading: 0, 2, 4, 5 Alta; 1 and 3 Baja.
    assert engagement_level(profiles, cfg).tolist() == ["Alta", "Baja", "Alta", "Baja", "Alta", "Alta"]
    assert engagement_level(profiles, cfg, "en").tolist() == ["High", "Low", "High", "Low", "High", "High"]


def test_names_follow_profiles_not_cluster_numbers(cfg):
    order = [4, 2, 5, 0, 3, 1]
    shuffled = profiles_from_means(SEED.iloc[order].reset_index(drop=True), SEED_POPULATION)
    assert segment_names(shuffled, cfg).tolist() == [SEED_NAMES_ES[i] for i in order]
    assert all(str(c) not in name for c, name in segment_names(shuffled, cfg).items())


def test_level_threshold_is_strictly_above_population_times_ratio(cfg):
    rows = SEED.iloc[[0, 1]].copy()
    rows["engagement_score"] = [SEED_POPULATION["engagement_score"] * 1.2, SEED_POPULATION["engagement_score"]]
    profiles = profiles_from_means(rows, SEED_POPULATION)
    assert engagement_level(profiles, cfg).tolist() == ["Alta", "Baja"]
    cfg["recommend"]["high_engagement_ratio"] = 1.25
    assert engagement_level(profiles, cfg).tolist() == ["Baja", "Baja"]


def test_colliding_names_are_told_apart_by_time_of_day(cfg):
    two = SEED.iloc[[3, 3]].reset_index(drop=True)
    two.loc[1, "hour"] = 21.2
    names = segment_names(profiles_from_means(two, SEED_POPULATION), cfg)
    assert names.tolist() == ["Rebotes: limpiar lista (tarde)", "Rebotes: limpiar lista (noche)"]


def test_colliding_names_without_time_difference_ranked_by_engagement(cfg):
    three = SEED.iloc[[3, 3, 3]].reset_index(drop=True)
    three["engagement_score"] = [0.5, 0.9, 0.2]
    names = segment_names(profiles_from_means(three, SEED_POPULATION), cfg)
    assert names.tolist() == ["Rebotes: limpiar lista (compromiso n.º 2)", "Rebotes: limpiar lista (compromiso n.º 1)",
                              "Rebotes: limpiar lista (compromiso n.º 3)"]
    two = profiles_from_means(three.iloc[[2, 1]].reset_index(drop=True), SEED_POPULATION)
    assert segment_names(two, cfg, "en").tolist() == ["Bouncers: clean the list (less engaged)",
                                                      "Bouncers: clean the list (more engaged)"]


def test_identical_profiles_still_get_unique_names(cfg):
    names = segment_names(profiles_from_means(SEED.iloc[[5, 5]].reset_index(drop=True), SEED_POPULATION), cfg)
    assert names.is_unique


def test_traits_use_configured_thresholds(cfg):
    profiles = seed_profiles()
    assert segment_traits(profiles, cfg)["high_bounce"].tolist() == [False, False, False, True, False, False]
    cfg["recommend"]["bounce_rate_high"] = 0.9  # segment 3 bounces 0.88 per send
    assert not segment_traits(profiles, cfg)["high_bounce"].any()
    assert segment_names(profiles, cfg)[3] != "Rebotes: limpiar lista"


def test_segment_without_users_is_named_as_such(cfg, labelled):
    profiles = segment_profiles(split_with_empty(labelled), k=5)
    names = segment_names(profiles, cfg)
    assert names[4] == "Sin usuarios" and names.is_unique
    assert segment_names(profiles, cfg, "en")[4] == "No users"
