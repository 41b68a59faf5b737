"""Drift report (issue 13, behaviour 4): PSI as a hand computation gives it, the bands and verdict,
transitions equal to a pandas merge of two months' labels, and the "what changed" outputs."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import time

import dask
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users, split_with_empty

from mailseg_dist.core.config import load_config
from mailseg_dist.inputs.generate import iter_generated
from mailseg_dist.inputs.sampling import hash_uniform
from mailseg_dist.model import drift
from mailseg_dist.model import pair_counts as pair_counts_module
from mailseg_dist.model.drift import (
    EPSILON,
    drift_block,
    drift_reference,
    feature_drift,
    share_psi,
    transitions,
    verdict,
)
from mailseg_dist.model.pair_counts import ABSENT, pair_counts

COLUMNS = ["send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week"]
BANDS = {"psi_watch": 0.1, "psi_act": 0.25}
IMG = '<img src="data:image/png;base64,'


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    """One generated month of 100,000 users (the seed's six behaviours)."""
    return pd.concat(list(iter_generated(100_000, seed=7, chunk_rows=100_000)), ignore_index=True)


@pytest.fixture(scope="module")
def halves(month):
    """The month cut in two by a hash of the Id: two samples of one population."""
    first = hash_uniform(month["Id"], 3) < 0.5
    return month[first].reset_index(drop=True), month[~first].reset_index(drop=True)


def hand_psi(ref_values, new_values, edges) -> float:
    """PSI over bins [-inf, e1), [e1, e2), ..., [e_last, inf) counted by pd.cut, empty bins floored at EPSILON."""
    bins = [-np.inf, *edges, np.inf]
    p_ref = pd.cut(ref_values, bins, right=False).value_counts(sort=False, normalize=True).to_numpy()
    p_new = pd.cut(new_values, bins, right=False).value_counts(sort=False, normalize=True).to_numpy()
    p_ref, p_new = np.maximum(p_ref, EPSILON), np.maximum(p_new, EPSILON)
    return float(np.sum((p_new - p_ref) * np.log(p_new / p_ref)))


# ---------------------------------------------------------------- reference and PSI
def test_reference_bins_are_quantiles_never_empty_and_json(halves):
    a, _ = halves
    ref = drift_reference(a, COLUMNS, 10)
    assert json.loads(json.dumps(ref, allow_nan=False)) == ref  # plain JSON, no Infinity
    for column, r in ref["columns"].items():
        values = a[column].to_numpy(float)
        counts = np.histogram(values, [values.min() - 1, *r["edges"], values.max() + 1])[0]
        assert np.allclose(counts / len(values), r["proportions"]) and (counts > 0).all(), column
        assert len(r["proportions"]) <= 10 and r["n"] == len(a)
        assert r["mean"] == pytest.approx(values.mean()) and r["std"] == pytest.approx(values.std(ddof=1))
    normal = drift_reference(a.assign(x=np.random.default_rng(0).normal(size=len(a))), ["x"], 10)
    assert np.allclose(normal["columns"]["x"]["proportions"], 0.1, atol=1e-4)  # continuous: ten tenths
    # clicks: most users never click, yet the few who do keep bins of their own (0 | 1 | 2 | ...)
    click = ref["columns"]["click"]
    assert click["edges"][:2] == [1.0, 2.0] and click["proportions"][0] > 0.9


def test_psi_equals_a_pandas_computation_of_the_same_bins(halves):
    a, b = halves
    shifted = b.assign(send=b["send"] + (b["Id"] % 3 == 0), hour=b["hour"] * 0.9)
    ref = drift_reference(a, COLUMNS, 10)
    rows = {r["feature"]: r for r in feature_drift(ref, shifted, **BANDS)}
    for column in COLUMNS:
        edges = ref["columns"][column]["edges"]
        assert rows[column]["psi"] == pytest.approx(hand_psi(a[column], shifted[column], edges), rel=1e-9, abs=1e-12)
        sd = a[column].std()
        assert rows[column]["mean_shift_sd"] == pytest.approx((shifted[column].mean() - a[column].mean()) / sd)
        assert rows[column]["spread_ratio"] == pytest.approx(shifted[column].std() / sd)


def test_psi_near_zero_on_two_halves_of_a_month_and_large_when_shifted(halves):
    a, b = halves
    ref = drift_reference(a, COLUMNS, 10)
    same = feature_drift(ref, b, **BANDS)
    assert max(r["psi"] for r in same) < 0.01 and {r["band"] for r in same} == {"stable"}
    assert max(abs(r["mean_shift_sd"]) for r in same) < 0.05
    # every user sends two more mails: far past the act threshold
    more = {r["feature"]: r for r in feature_drift(ref, b.assign(send=b["send"] + 2), **BANDS)}
    assert more["send"]["psi"] > 1.0 and more["send"]["band"] == "act" and more["hour"]["band"] == "stable"
    # every bouncing user (a bounce in a third of their mails or more) three times over: bounce leaves stable
    bouncers = b[b["bounce"] >= b["send"] / 3]
    grown = pd.concat([b, bouncers.assign(Id=bouncers["Id"] + 10**7), bouncers.assign(Id=bouncers["Id"] + 2 * 10**7)])
    rows = {r["feature"]: r for r in feature_drift(ref, grown, **BANDS)}
    assert 0.15 < rows["bounce"]["psi"] < 0.25 and rows["bounce"]["band"] == "watch"
    assert rows["bounce"]["mean_shift_sd"] > 0.3
    assert rows["hour"]["psi"] < 0.1  # what did not change stays stable
    # clickers clicking twice as much: invisible to the quantiles of clicks alone (90 % zeros), seen here
    clicks = feature_drift(ref, b.assign(click=b["click"] * 2), **BANDS)[COLUMNS.index("click")]
    assert clicks["psi"] > 0.1 and clicks["band"] == "watch"


def test_share_psi_and_segment_rows():
    then, now = {0: 0.5, 1: 0.3, 2: 0.2}, {"0": 0.4, "1": 0.2, "2": 0.4}  # keys as JSON gives them back
    expected = sum((n - t) * np.log(n / t) for t, n in [(0.5, 0.4), (0.3, 0.2), (0.2, 0.4)])
    assert share_psi(then, now) == pytest.approx(expected)
    assert share_psi(then, then) == 0.0
    # a segment gone: its share counts as EPSILON, never a division by zero
    assert share_psi({0: 0.5, 1: 0.5}, {0: 1.0}) == pytest.approx(
        (1 - 0.5) * np.log(2) + (EPSILON - 0.5) * np.log(EPSILON / 0.5))
    rows = drift.segment_rows(shares_then=then, shares_now=now, center_shift={0: 0.1}, names_then={0: "A", 2: "C"},
                              names_now={0: "A", 2: "D"}, silhouette_then={1: 0.4}, silhouette_now={1: 0.5})
    assert [r["cluster"] for r in rows] == [0, 1, 2]
    assert sum(r["psi_term"] for r in rows) == pytest.approx(expected)
    assert rows[2]["share_change"] == pytest.approx(0.2) and rows[2]["renamed"] and not rows[0]["renamed"]
    assert rows[0]["center_shift"] == 0.1 and rows[1]["center_shift"] is None and rows[1]["silhouette_now"] == 0.5


# ---------------------------------------------------------------- bands and verdict
def features_with(*psis):
    return [{"feature": f"f{i}", "psi": p, "band": drift.band(p, **BANDS)} for i, p in enumerate(psis)]


def test_bands_include_their_lower_threshold():
    assert [drift.band(p, **BANDS) for p in (0.0, 0.0999, 0.1, 0.25, 0.2501, 3.0)] == \
        ["stable", "stable", "watch", "watch", "act", "act"]


def test_verdict_names_the_numbers_that_decided():
    stable = verdict(features_with(0.01, 0.05), 0.02, BANDS)
    assert stable["status"] == "stable" and not stable["refit_advised"] and stable["rule"] == "stable"
    assert stable["because"] == [{"what": "feature", "name": "f1", "psi": 0.05, "band": "stable"}]
    watch = verdict(features_with(0.01, 0.12, 0.25), 0.05, BANDS)
    assert watch["status"] == "watch" and not watch["refit_advised"]
    assert [(b["name"], b["psi"]) for b in watch["because"]] == [("f2", 0.25), ("f1", 0.12)]
    assert watch["rule"] == "watch" and verdict(features_with(0.01), 0.12, BANDS)["status"] == "watch"
    # a feature and the segment split both in watch: the change shows in the segments, refit
    both = verdict(features_with(0.01, 0.12, 0.2), 0.11, BANDS)
    assert (both["status"], both["refit_advised"], both["rule"]) == ("act", True, "watch_features_and_shares")
    assert [(b["name"], b["band"]) for b in both["because"]] == [("f2", "watch"), ("f1", "watch"),
                                                                 ("segment_shares", "watch")]
    by_shares = verdict(features_with(0.01, 0.05), 0.3, BANDS)  # the split across segments alone can decide
    assert by_shares["status"] == "act" and by_shares["refit_advised"] and by_shares["rule"] == "any_act"
    assert by_shares["because"] == [{"what": "segment_shares", "name": "segment_shares", "psi": 0.3, "band": "act"}]
    act = verdict(features_with(0.4, 0.3, 0.2), 0.26, {"psi_watch": 0.1, "psi_act": 0.25, "bins": 10})
    assert [b["psi"] for b in act["because"]] == [0.4, 0.3, 0.26] and act["psi_act"] == 0.25
    assert verdict(features_with(0.3), 0.0, {"psi_watch": 0.1, "psi_act": 0.5})["status"] == "watch"  # config read


# ---------------------------------------------------------------- transitions
def labelled_month(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"Id": df["Id"].to_numpy(), "cluster": rng.integers(0, 4, len(df)).astype("int64"),
                         "silhouette_score": rng.random(len(df))})


def write_parts(df: pd.DataFrame, folder) -> None:
    """Four Parquet parts of uneven size, the second one empty."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(df), 4, dtype=int)
    for i, piece in enumerate([df.iloc[:bounds[1]], df.iloc[0:0], df.iloc[bounds[1]:bounds[2]], df.iloc[bounds[2]:]]):
        piece.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


@pytest.fixture
def two_months(tmp_path):
    users = make_clean_users(900, seed=4)
    before = labelled_month(users.iloc[:700], 1)                         # 700 users
    now = labelled_month(users.iloc[200:], 2)                            # 200 gone, 200 new, 500 in both
    now.loc[now["Id"].isin(before["Id"].iloc[250:400]), "cluster"] = 3  # some move to segment 3 ...
    now.loc[now["cluster"] == 0, "cluster"] = 1                          # ... and segment 0 is gone now
    write_parts(before, tmp_path / "m1" / "usuarios")
    write_parts(now.sample(frac=1.0, random_state=0), tmp_path / "m2" / "usuarios")  # another order
    return before, now, tmp_path / "m1" / "usuarios", tmp_path / "m2" / "usuarios"


def merged_counts(before: pd.DataFrame, now: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    both = before[["Id", "cluster"]].merge(now[["Id", "cluster"]], on="Id", how="outer", suffixes=("_prev", "_now"),
                                           indicator=True)
    common = both[both["_merge"] == "both"]
    return (pd.crosstab(common["cluster_prev"].astype(int), common["cluster_now"].astype(int)),
            int((both["_merge"] == "right_only").sum()), int((both["_merge"] == "left_only").sum()))


def test_transitions_equal_a_pandas_merge_of_the_two_months(two_months, dask_client, monkeypatch):
    before, now, first, second = two_months
    computed = []
    real = pair_counts_module.compute

    def spy(*collections):
        values = real(*collections)
        computed.append(values)
        return values

    monkeypatch.setattr(pair_counts_module, "compute", spy)
    result = transitions(first, second)
    # one compute, of the pair counts per bucket: never the months themselves
    assert len(computed) == 1 and len(computed[0]) == 2 * sum(dask_client.nthreads().values())  # 2 per thread
    assert all(isinstance(counts, dict) and len(counts) <= 5 * 5 for counts in computed[0])
    table, new, gone = merged_counts(before, now)
    table = table.reindex(index=result["clusters"], columns=result["clusters"], fill_value=0)
    assert result["counts"] == table.to_numpy().tolist()
    assert (result["new"], result["gone"], result["common"]) == (new, gone, int(table.to_numpy().sum()))
    assert (result["new"], result["gone"], result["common"]) == (200, 200, 500)
    assert result["stayers"] == int(np.trace(table.to_numpy())) and result["movers"] == 500 - result["stayers"]
    assert result["clusters"] == [0, 1, 2, 3] and result["counts"][0][0] == 0  # id 0 emptied: a full row, no column
    shares = np.array(result["shares"])
    assert np.allclose(shares.sum(axis=1), 1.0) and np.allclose(shares * table.to_numpy().sum(axis=1, keepdims=True),
                                                                table.to_numpy())
    gone_by = before[~before["Id"].isin(now["Id"])]["cluster"].value_counts()
    assert result["gone_by_cluster"] == [int(gone_by.get(c, 0)) for c in result["clusters"]]
    new_by = now[~now["Id"].isin(before["Id"])]["cluster"].value_counts()
    assert result["new_by_cluster"] == [int(new_by.get(c, 0)) for c in result["clusters"]]
    assert json.loads(json.dumps(result)) == result


def test_transitions_from_dask_frames_and_ids_read_as_text(two_months, dask_client):
    before, now, first, _ = two_months
    frames = transitions(split_with_empty(before), split_with_empty(now))
    assert frames == transitions(first, split_with_empty(now.assign(Id=now["Id"].astype(str))))
    table, new, gone = merged_counts(before, now)
    assert frames["counts"] == table.reindex(index=frames["clusters"], columns=frames["clusters"],
                                             fill_value=0).to_numpy().tolist()
    assert (frames["new"], frames["gone"]) == (new, gone)


@pytest.mark.parametrize("buckets", [1, 3, 16])
def test_pair_counts_equal_a_pandas_outer_merge_for_any_bucket_count(two_months, buckets):
    before, now, _, _ = two_months
    both = before[["Id", "cluster"]].merge(now[["Id", "cluster"]], on="Id", how="outer", suffixes=("_prev", "_now"))
    expected = both.fillna(ABSENT).astype("int64").groupby(["cluster_prev", "cluster_now"]).size()
    expected = {(int(a), int(b)): int(n) for (a, b), n in expected.items()}
    with dask.config.set(scheduler="sync"):
        counted = pair_counts(split_with_empty(before[["Id", "cluster"]]), split_with_empty(now[["Id", "cluster"]], 7),
                              buckets)
        as_text = pair_counts(split_with_empty(before[["Id", "cluster"]].astype({"Id": str})),
                              split_with_empty(now[["Id", "cluster"]]), buckets)
    assert counted == expected == as_text
    assert sum(counted.values()) == len(both) and (ABSENT, ABSENT) not in counted


def test_an_id_repeated_within_a_month_is_an_input_error_naming_the_month(two_months):
    from mailseg_dist.core.errors import InputDataError

    before, now, _, _ = two_months
    repeated = pd.concat([now[["Id", "cluster"]], now[["Id", "cluster"]].iloc[[5]]])
    with dask.config.set(scheduler="sync"), pytest.raises(InputDataError) as error:
        pair_counts(split_with_empty(before[["Id", "cluster"]]), split_with_empty(repeated), 3)
    assert str(error.value) == (f"the new month: Id {now['Id'].iloc[5]!r} appears more than once; months are "
                                "matched on Id, which must be unique within a month")
    assert error.value.exit_code == 3


def test_bucket_count_follows_the_threads_and_the_size_of_the_months(dask_client):
    from mailseg_dist.model.pair_counts import BUCKET_ROWS, default_buckets

    threads = sum(dask_client.nthreads().values())
    assert default_buckets() == 2 * threads  # small months: two buckets per thread
    assert default_buckets(40 * BUCKET_ROWS) == 40  # large ones: no bucket over BUCKET_ROWS users a month
    assert default_buckets(40 * BUCKET_ROWS + 1) == 41


# ---------------------------------------------------------------- the block and the outputs
def make_changes(month1: pd.DataFrame, month2: pd.DataFrame, lang: str = "es", with_transitions=None) -> dict:
    """A drift block + months as an update would hand it to publish (hand-made segment states)."""
    ref = drift_reference(month1, COLUMNS, 10)
    names = {"es": ["Compradores fieles", "Rebotes altos", "Ocasionales"],
             "en": ["Loyal buyers", "High bounces", "Occasional"]}[lang]
    block = drift_block(ref, month2, {**BANDS, "bins": 10}, shares_then={0: 0.5, 1: 0.1, 2: 0.4},
                        shares_now={0: 0.42, 1: 0.3, 2: 0.28}, center_shift={0: 0.05, 1: 0.61, 2: 0.12},
                        silhouette_then={0: 0.41, 1: 0.55, 2: 0.38}, silhouette_now={0: 0.4, 1: 0.47, 2: 0.39},
                        names_then=dict(enumerate(names)), names_now={0: names[0], 1: names[1], 2: names[1] + " 2"},
                        transitions=with_transitions, month_then="2026-02", month_now="2026-03")
    block["months"] = [{"month": m, "version": f"v000{i + 1}-{m}", "shares": s, "names": dict(enumerate(names))}
                       for i, (m, s) in enumerate([("2026-01", {0: 0.52, 1: 0.09, 2: 0.39}),
                                                   ("2026-02", {0: 0.5, 1: 0.1, 2: 0.4}),
                                                   ("2026-03", {"0": 0.42, "1": 0.3, "2": 0.28})])]
    block["months"][-1]["version"] = None  # the month being written has no version id yet
    return block


TRANSITIONS = {"clusters": [0, 1, 2], "counts": [[900, 60, 40], [5, 180, 15], [30, 200, 500]],
               "shares": [[0.9, 0.06, 0.04], [0.025, 0.9, 0.075], [30 / 730, 200 / 730, 500 / 730]],
               "stayers": 1580, "movers": 350, "common": 1930, "new": 700, "gone": 120,
               "new_by_cluster": [100, 500, 100], "gone_by_cluster": [50, 20, 50]}


def test_drift_block_is_json_and_advises_a_refit_when_shares_move(halves):
    a, b = halves
    block = make_changes(a, b, with_transitions=TRANSITIONS)
    assert json.loads(json.dumps(block, allow_nan=False)) == json.loads(json.dumps(block))
    assert block["share_psi"] == pytest.approx(share_psi({0: 0.5, 1: 0.1, 2: 0.4}, {0: 0.42, 1: 0.3, 2: 0.28}))
    assert block["share_psi"] > 0.25 and block["share_band"] == "act"
    assert block["verdict"]["refit_advised"] and block["verdict"]["because"][0]["what"] == "segment_shares"
    assert max(f["psi"] for f in block["features"]) < 0.01  # the features themselves did not move
    assert set(block) >= {"features", "segments", "share_psi", "transitions", "verdict"}


@pytest.mark.parametrize("lang, heading, advice", [("es", "Qué cambió desde 2026-02", "mailseg run"),
                                                   ("en", "What changed since 2026-02", "mailseg run")])
def test_report_shows_what_changed_with_every_figure(tmp_path, halves, lang, heading, advice):
    from test_export import fake_result

    from mailseg_dist.outputs.changes import change_figures, verdict_text
    from mailseg_dist.outputs.export import scored_parts
    from mailseg_dist.outputs.report import report_context, write_report
    from mailseg_dist.segments.profiles import segment_profiles
    from mailseg_dist.segments.recommend import segment_table

    a, b = halves
    cfg = {**load_config(), "report": {**load_config()["report"], "lang": lang}}
    users = make_clean_users()
    result = fake_result(users, cfg, k=3)
    table = segment_table(segment_profiles(scored_parts(split_with_empty(users), result, cfg), 3), cfg, lang)
    changes = make_changes(a, b, lang, with_transitions=TRANSITIONS)
    figures = change_figures(tmp_path, changes, lang)  # the run's own figures are test_figures_report's
    assert set(figures) == {"drift_psi", "transitions", "share_history"}
    assert {p.name for p in (tmp_path / "figuras").iterdir()} == {
        "cambios_psi.png", "cambios_transiciones.png", "cambios_proporciones.png"}  # no temporaries left
    for path in figures.values():
        height, width, _ = mpimg.imread(path).shape
        assert 500 < width < 1600 and 250 < height < 1200
    page = write_report(tmp_path / "informe.html", report_context(
        {"month": "2026-03"}, result, table, figures, cfg, lang, changes=changes)).read_text(encoding="utf-8")
    section = page[page.index(f"<h2>{heading}</h2>"):page.index("<h2>", page.index(f"<h2>{heading}</h2>") + 4)]
    sentence = verdict_text(changes, lang)
    assert f"{changes['share_psi']:.3f}" == "0.276"  # the share PSI decided
    assert sentence.startswith({"es": "Actuar: PSI por encima de 0,25 en el reparto de usuarios entre segmentos "
                                      "(0,276).", "en": "Act: PSI above 0.25 for the split of users across "
                                                        "segments (0.276)."}[lang]) and advice in sentence
    assert sentence.replace("«", "&laquo;") in section or sentence in section.replace("&#x27;", "'")
    for f in changes["features"]:  # every feature's PSI in the table, as the report writes numbers
        text = f"{f['psi']:,.3f}"
        assert (text.translate(str.maketrans(",.", ".,")) if lang == "es" else text) in section
    embedded = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', section)
    assert sorted(embedded) == sorted(base64.b64encode(figures[n].read_bytes()).decode()
                                      for n in ("drift_psi", "transitions", "share_history"))
    assert page.count(IMG) == 3  # and nothing embedded twice
    assert "None" not in section and "v0002\u20112026\u201102" in section
    assert ("1.580" if lang == "es" else "1,580") in section  # stayers in the moves sentence


def test_report_without_changes_has_no_section(tmp_path):
    from test_export import fake_result

    from mailseg_dist.outputs.changes import change_figures
    from mailseg_dist.outputs.export import scored_parts
    from mailseg_dist.outputs.report import report_context, write_report
    from mailseg_dist.segments.profiles import segment_profiles
    from mailseg_dist.segments.recommend import segment_table

    cfg = load_config()
    users = make_clean_users()
    result = fake_result(users, cfg, k=3)
    table = segment_table(segment_profiles(scored_parts(split_with_empty(users), result, cfg), 3), cfg)
    assert change_figures(tmp_path, None) == {}
    page = write_report(tmp_path / "informe.html", report_context({}, result, table, {}, cfg)).read_text("utf-8")
    assert "Qué cambió" not in page and "verdict" not in page


def test_workbook_sheet_changes_holds_the_same_tables(tmp_path, halves, users_parquet, dask_client):
    import openpyxl
    from test_export import fake_result

    from mailseg_dist.outputs.changes import add_changes_sheet, verdict_text
    from mailseg_dist.outputs.export import scored_parts, write_user_results
    from mailseg_dist.outputs.workbook import write_results_xlsx
    from mailseg_dist.segments.profiles import segment_profiles
    from mailseg_dist.segments.recommend import segment_table

    a, b = halves
    changes = make_changes(a, b, "en", with_transitions=TRANSITIONS)
    sheets, options = [], {}
    add_changes_sheet(sheets, options, None, "en")  # nothing to add without changes
    assert (sheets, options) == ([], {})
    base = load_config()
    cfg = {**base, "report": {**base["report"], "lang": "en", "excel_max_rows": 100}}  # Clusters sampled too
    users = make_clean_users()
    result = fake_result(users, cfg, k=3)
    table = segment_table(segment_profiles(scored_parts(users_parquet, result, cfg), 3), cfg, "en")
    out = write_user_results(users_parquet, tmp_path, result, table, cfg, "en")
    wb = openpyxl.load_workbook(write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg, "en",
                                                   changes=changes))
    assert wb.sheetnames == ["Clusters", "Recomendaciones", "Eleccion_k", "Changes"]
    assert wb["Clusters"]["A1"].value.startswith("SAMPLE") and wb["Clusters"].max_row == 101  # note, header, 99
    rows = list(wb["Changes"].iter_rows(values_only=True))
    assert rows[0][0] == verdict_text(changes, "en") and rows[1][0].startswith("Of the 1,930 users")
    assert rows[2][:3] == ("Feature", "PSI", "Reading")
    labels = ["Sends", "Bounces", "Opens", "Clicks", "Total", "Buyer", "Hour", "Weekday"]
    assert {r[0]: r[1] for r in rows[3:3 + len(COLUMNS)]} == {
        f"{label} ({f['feature']})" if label != f["feature"] else label: pytest.approx(f["psi"])
        for f, label in zip(changes["features"], labels)}
    flat = [r[0] for r in rows]
    segments = flat.index("Segments: before and now")
    assert rows[segments + 1][:3] == ("Id", "Name before", "Name now")
    assert [r[4] for r in rows[segments + 2:segments + 5]] == [0.42, 0.3, 0.28]  # share now, as fractions
    moves = flat.index("Moves between segments")
    assert list(rows[moves + 2][1:5]) == [900, 60, 40, 50]  # counts, then gone
    assert rows[moves + 5][0] == "new" and list(rows[moves + 5][1:4]) == [100, 500, 100]
    assert rows[moves + 8][1:4] == pytest.approx((0.9, 0.06, 0.04))  # the same rows as shares
    months = flat.index("Share of each segment by month")
    assert [r[0] for r in rows[months + 2:months + 5]] == ["2026-01", "2026-02", "2026-03"]
    assert rows[months + 4][2:5] == (0.42, 0.3, 0.28)


def _workbook_inputs(tmp_path, users_parquet):
    from test_export import fake_result

    from mailseg_dist.outputs.export import scored_parts, write_user_results
    from mailseg_dist.segments.profiles import segment_profiles
    from mailseg_dist.segments.recommend import segment_table

    base = load_config()
    cfg = {**base, "report": {**base["report"], "lang": "en", "excel_max_rows": 100}}
    result = fake_result(make_clean_users(), cfg, k=3)
    table = segment_table(segment_profiles(scored_parts(users_parquet, result, cfg), 3), cfg, "en")
    return write_user_results(users_parquet, tmp_path, result, table, cfg, "en"), table, result.k_table, cfg


def _sheets(path) -> dict:
    import openpyxl

    wb = openpyxl.load_workbook(path)
    return {name: list(wb[name].iter_rows(values_only=True)) for name in wb.sheetnames}


def test_the_workbook_task_streams_clusters_then_waits_for_the_changes(tmp_path, halves, users_parquet,
                                                                       dask_client):
    """An update starts its workbook before the drift exists: the task writes sheet Clusters, then takes the
    changes the client sends through a ChangesChannel; the workbook equals one written with them up front."""
    import zipfile

    from mailseg_dist.outputs.later_changes import ChangesChannel
    from mailseg_dist.outputs.workbook import write_results_xlsx, write_workbook_task

    out, table, k_table, cfg = _workbook_inputs(tmp_path, users_parquet)
    changes = make_changes(*halves, "en", with_transitions=TRANSITIONS)
    direct = write_results_xlsx(out, tmp_path / "direct.xlsx", table, k_table, cfg, "en", changes=changes)
    channel = ChangesChannel(dask_client)
    task = dask_client.submit(write_workbook_task, out, tmp_path / "later.xlsx", table, k_table, cfg, "en",
                              changes=channel.later, pure=False)
    assert _eventually(lambda: list(tmp_path.glob(".later.xlsx*")))  # the task started writing the workbook
    time.sleep(0.5)
    assert not task.done()  # and waits: nothing was sent yet
    channel.send(changes)
    later = task.result(timeout=60)
    channel.close(task)
    assert channel.variable.name not in _variable_names(dask_client)  # done with: deleted
    assert _sheets(later) == _sheets(direct) and "Changes" in _sheets(later)
    with zipfile.ZipFile(later) as package:
        assert package.namelist()[0] == "xl/worksheets/sheet1.xml"  # Clusters first, the rest after the drift
    if shutil.which("soffice"):  # .ci/run installs it: LibreOffice reads the reordered package's last sheet
        subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{tmp_path}/lo",
                        "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,4",
                        "--outdir", str(tmp_path), str(later)], check=True, capture_output=True, timeout=300)
        rows = list(csv.reader(open(tmp_path / "later-Changes.csv", encoding="utf-8", newline="")))
        assert rows[0][0] == _sheets(later)["Changes"][0][0]


def test_a_workbook_task_whose_drift_never_comes_stops(tmp_path, users_parquet, dask_client):
    from mailseg_dist.outputs.later_changes import ChangesChannel, DriftFailed
    from mailseg_dist.outputs.workbook import write_workbook_task

    out, table, k_table, cfg = _workbook_inputs(tmp_path, users_parquet)
    channel = ChangesChannel(dask_client)
    task = dask_client.submit(write_workbook_task, out, tmp_path / "r.xlsx", table, k_table, cfg, "en",
                              changes=channel.later, pure=False)
    channel.close(task)  # publish failed before its drift: the task is told, not left waiting
    with pytest.raises(DriftFailed, match="stopped before its drift was measured"):
        task.result(timeout=60)
    assert not (tmp_path / "r.xlsx").exists() and not list(tmp_path.glob(".r.xlsx*"))


def test_a_cancelled_workbook_task_still_learns_that_the_drift_failed(tmp_path, users_parquet, dask_client):
    """publish cancels the workbook when the drift fails, but a seceded task keeps running: the Variable it
    will read must stay (a get() on a deleted one waits an hour) and hold the failure, so the task ends."""
    from mailseg_dist.outputs.later_changes import ChangesChannel
    from mailseg_dist.outputs.workbook import write_workbook_task

    out, table, k_table, cfg = _workbook_inputs(tmp_path, users_parquet)
    channel = ChangesChannel(dask_client)
    task = dask_client.submit(write_workbook_task, out, tmp_path / "r.xlsx", table, k_table, cfg, "en",
                              changes=channel.later, pure=False)
    assert _eventually(lambda: list(tmp_path.glob(".r.xlsx*")))  # running
    task.cancel()
    channel.close(task)
    assert channel.variable.name in _variable_names(dask_client)  # kept for the running task
    assert _eventually(lambda: not list(tmp_path.glob(".r.xlsx*")))  # which stopped and removed its file
    assert not (tmp_path / "r.xlsx").exists()


def _eventually(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _variable_names(client) -> set:
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.extensions["variables"].variables)))


def test_splice_rows_first_refuses_a_final_frame_whose_big_part_changed(tmp_path):
    import io
    import zipfile

    from mailseg_dist.outputs.xlsx_package import splice_rows_first

    def frame(sheet: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as package:
            package.writestr("sheet.xml", sheet)
            package.writestr("other.xml", b"<other/>")
        return buffer.getvalue()

    sheet = b'<worksheet><dimension ref="A1"/><sheetData></sheetData></worksheet>'
    splice_rows_first(frame(sheet), tmp_path / "ok.zip", "sheet.xml", [b"<row/>"], "A1:B2", lambda: frame(sheet))
    with zipfile.ZipFile(tmp_path / "ok.zip") as package:
        assert package.namelist() == ["sheet.xml", "other.xml"]
        assert package.read("sheet.xml") == b'<worksheet><dimension ref="A1:B2"/><sheetData><row/></sheetData></worksheet>'
    with pytest.raises(ValueError, match="part sheet.xml differs once the other sheets are added"):
        splice_rows_first(frame(sheet), tmp_path / "bad.zip", "sheet.xml", [], "A1",
                          lambda: frame(sheet.replace(b"A1", b"B9")))
