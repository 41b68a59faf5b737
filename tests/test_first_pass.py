"""The fit's one read of the users (model/first_pass.py, model/prepare.py) against the separate passes it
replaced and against pandas / scikit-learn on the same data."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core import parquet as core_parquet
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.core.stages import Stages
from mailseg_dist.inputs.sampling import U_COLUMN, draw_sample, hash_uniform
from mailseg_dist.inputs.schema import USER_COLUMNS
from mailseg_dist.model import first_pass as first_pass_module
from mailseg_dist.model.features import feature_frame
from mailseg_dist.model.first_pass import first_pass
from mailseg_dist.model.prepare import prepare
from mailseg_dist.model import scaler as scaler_module
from mailseg_dist.model.scaler import fit_scaler, nonempty_units, scaled_from_parquet, unit_groups

SEED8 = ["send", "bounce", "open", "click", "Total", "hour", "day_of_week", "engagement_score"]
FCFG = {"columns": list(SEED8), "log1p": False, "rates": False, "cyclical": False}


def _columns(df: pd.DataFrame) -> list[str]:
    return [c for c in USER_COLUMNS if c in df.columns]


def _reference_sample(df: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    u = hash_uniform(df["Id"], seed)
    return df.assign(**{U_COLUMN: u}).sort_values([U_COLUMN, "Id"]).head(size).reset_index(drop=True)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("scheduler", ["sync", "client"])
def test_one_read_equals_the_separate_passes_and_sklearn(users_parquet, clean_users, keep, scheduler, request):
    """Scaler, sample and scaled features as fit_scaler, draw_sample and scaled_from_parquet give them (four
    part files, one empty), on the sync scheduler and on a distributed client; the kept features scaled in
    place equal scikit-learn's transform of the same users."""
    client = request.getfixturevalue("dask_client") if scheduler == "client" else "sync"
    units, columns = nonempty_units(users_parquet), _columns(clean_users)
    with dask.config.set(scheduler=client):
        got = first_pass(users_parquet, units, FCFG, columns, 150, seed=7, keep=keep)
        ddf = dd.read_parquet(users_parquet, columns=columns)
        separate = fit_scaler(ddf, FCFG)
        drawn = draw_sample(ddf, 150, 7, columns=columns, total=len(clean_users))
        scaled = got.data.array.compute()
        lazy = scaled_from_parquet(users_parquet, got.scaler, FCFG).array.compute()
    for attr in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(got.scaler, attr), getattr(separate, attr))
    ref = StandardScaler().fit(clean_users[SEED8])
    np.testing.assert_allclose(got.scaler.scale_, ref.scale_, rtol=1e-9)
    assert got.n_rows == got.scaler.n_samples_seen_ == len(clean_users) == 600
    pd.testing.assert_frame_equal(got.drawn, drawn)
    pd.testing.assert_frame_equal(got.drawn, _reference_sample(clean_users, 150, 7)[[*columns, U_COLUMN]])
    np.testing.assert_array_equal(scaled, lazy)
    np.testing.assert_allclose(scaled, ref.transform(clean_users[SEED8]), rtol=1e-9, atol=1e-10)
    assert got.data.array.chunks[0] == (200, 200, 200)


@pytest.mark.parametrize("sizes", [[15] * 40, [15] * 30 + [400, 15, 15], [100_000] * 100, [7] * 3])
def test_unit_groups_are_consecutive_balanced_and_cover_every_unit(sizes):
    units = [("f", i, rows) for i, rows in enumerate(sizes)]
    groups = unit_groups(units, parts=16)
    assert [u for g in groups for u in g] == units and all(groups)
    assert len(groups) == min(16, len(units)) or max(sizes) > sum(sizes) / 16
    share = sum(sizes) / 16  # a group starts at a multiple of the share: it ends before the next one + a unit
    assert all(sum(u[2] for u in g) < share + max(u[2] for u in g) for g in groups)


def test_unit_groups_split_further_above_the_row_cap(monkeypatch):
    monkeypatch.setattr(scaler_module, "GROUP_ROWS", 100)
    groups = unit_groups([("f", i, 15) for i in range(40)], parts=2)  # 600 rows: 6 groups, not 2
    assert [len(g) for g in groups] == [7, 7, 6, 7, 7, 6]


@pytest.mark.parametrize("scheduler", ["sync", "client"])
def test_kept_features_in_groups_of_units_equal_the_unit_blocks_and_sklearn(tmp_path, clean_users, scheduler,
                                                                            request):
    """40 row groups of 15 users (and an empty file): the kept features come as 16 blocks of 3 or 2 units, the
    same rows, scaler and sample as reading unit by unit, and scikit-learn's transform of the same users."""
    folder = tmp_path / "users"
    folder.mkdir()
    clean_users.to_parquet(folder / "part-00000.parquet", index=False, row_group_size=15)
    clean_users.iloc[0:0].to_parquet(folder / "part-00001.parquet", index=False)
    client = request.getfixturevalue("dask_client") if scheduler == "client" else "sync"
    units, columns = nonempty_units(folder), _columns(clean_users)
    with dask.config.set(scheduler=client):
        kept = first_pass(folder, units, FCFG, columns, 150, seed=7, keep=True)
        unit_by_unit = first_pass(folder, units, FCFG, columns, 150, seed=7, keep=False)
        got, lazy = kept.data.array.compute(), unit_by_unit.data.array.compute()
    assert len(units) == 40 and kept.data.array.chunks[0] == (45, 30) * 8
    assert unit_by_unit.data.array.chunks[0] == (15,) * 40
    for attr in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(kept.scaler, attr), getattr(unit_by_unit.scaler, attr))
    pd.testing.assert_frame_equal(kept.drawn, unit_by_unit.drawn)
    np.testing.assert_array_equal(got, lazy)
    np.testing.assert_allclose(got, StandardScaler().fit_transform(clean_users[SEED8]), rtol=1e-9, atol=1e-10)


def test_prepare_reads_each_unit_once_and_the_passes_read_none(users_parquet, clean_users, monkeypatch):
    """With the features kept, the fit's only Parquet reads are the first pass's: one per non-empty unit."""
    reads = []
    real = core_parquet.read_unit_table
    monkeypatch.setattr(core_parquet, "read_unit_table", lambda unit, cols: reads.append(unit) or real(unit, cols))
    monkeypatch.setattr("mailseg_dist.model.scaler.read_group_table", lambda *a: pytest.fail("a pass read Parquet"))
    cfg = load_config(overrides={"model.k": 3, "model.cache_features": True, "features.columns": SEED8})
    with dask.config.set(scheduler="sync"):
        prep = prepare(users_parquet, cfg, None, Stages(), 3)
        prep.data.array.sum().compute()
    assert sorted(reads) == sorted(nonempty_units(users_parquet)) and len(reads) == 3
    assert prep.cached and prep.n_rows == 600


def test_too_few_users_under_the_cut_off_falls_back_to_the_widening_draw(users_parquet, clean_users,
                                                                           monkeypatch):
    """The ~1e-9 case: the one read keeps fewer users than the sample needs; the draw widens its cut-off and
    the sample is still the smallest hashes."""
    monkeypatch.setattr(first_pass_module, "sample_threshold", lambda size, total, factor: 0.01)
    cfg = load_config(overrides={"model.k": 3, "features.columns": SEED8})
    clock = Stages()
    with dask.config.set(scheduler="sync"):
        prep = prepare(users_parquet, cfg, None, clock, 3)
    mcfg, size = cfg["model"], len(prep.sample)
    assert "sample" in clock.timings
    assert size == min(600, max(mcfg["init_sample"], cfg["quality"]["bootstrap_sample"],
                                cfg["selection"]["silhouette_sample"]))
    want = _reference_sample(clean_users, size, int(cfg["model"]["seed"]))
    pd.testing.assert_frame_equal(prep.sample, want[[*_columns(clean_users), U_COLUMN]])
    np.testing.assert_allclose(prep.xs, prep.scaler.transform(feature_frame(want, FCFG)), rtol=1e-12)


def test_a_folder_of_empty_parts_is_refused(tmp_path, clean_users):
    folder = tmp_path / "users"
    folder.mkdir()
    clean_users.iloc[0:0].to_parquet(folder / "part-00000.parquet", index=False)
    cfg = load_config(overrides={"model.k": 3})
    with pytest.raises(InputDataError, match=r"users.*no rows"):
        prepare(folder, cfg, None, Stages(), 3)


def test_a_kept_scaler_draws_the_sample_once_per_file_of_several_row_groups(tmp_path, clean_users):
    """The blend update's path (scaler given, no first pass): a file of three row groups is three units
    but is read once for the sample (no user twice), and the kept features are scaled with that scaler."""
    folder = tmp_path / "users"
    folder.mkdir()
    clean_users.to_parquet(folder / "part-00000.parquet", index=False, row_group_size=200)
    assert len(nonempty_units(folder)) == 3
    given = StandardScaler().fit(clean_users[SEED8])
    cfg = load_config(overrides={"model.k": 3, "model.cache_features": True, "features.columns": SEED8})
    clock = Stages()
    with dask.config.set(scheduler="sync"):
        prep = prepare(folder, cfg, None, clock, 3, scaler=given)
        scaled = prep.data.array.compute()
    assert "read" not in clock.timings and {"sample", "cache"} <= set(clock.timings)
    assert prep.sample["Id"].is_unique
    want = _reference_sample(clean_users, len(prep.sample), int(cfg["model"]["seed"]))
    pd.testing.assert_frame_equal(prep.sample, want[[*_columns(clean_users), U_COLUMN]])
    np.testing.assert_allclose(scaled, given.transform(clean_users[SEED8]), rtol=1e-12, atol=1e-12)
