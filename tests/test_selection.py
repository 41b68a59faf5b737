"""The documented rule for k: Kneedle knee of the inertia curve, then best silhouette within ±window."""

from __future__ import annotations

import math

import pytest

from mailseg_dist.model.selection import choose_k, knee
from mailseg_dist.segments.texts import k_reason_text

# SEED_FACTS: elbow inertia (all rows) and silhouette (MiniBatchKMeans on 2,000 rows) for k = 2..10.
SEED_INERTIA = [1.385e6, 1.19e6, 1.035e6, 0.915e6, 0.80e6, 0.728e6, 0.676e6, 0.607e6, 0.567e6]
SEED_SILHOUETTE = [0.53, 0.215, 0.255, 0.267, 0.275, 0.32, 0.338, 0.338, 0.336]


def worded(table, lang="en", **options):
    """(k, the reason worded in `lang`): choose_k returns the reason as data; the outputs word it."""
    k, why = choose_k(table, **options)
    return k, k_reason_text(why, lang)


def table(ks, inertia, silhouette):
    return [{"k": k, "inertia": i, "silhouette": s} for k, i, s in zip(ks, inertia, silhouette)]


def test_seed_table_knee_at_6_picks_7():
    k, reason = worded(table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE), knee_window=1)
    assert knee(list(range(2, 11)), SEED_INERTIA) == 6
    assert k == 7
    assert "knee (Kneedle) at k=6" in reason
    assert "k=5: 0.267, k=6: 0.275, k=7: 0.320" in reason and "picked k=7" in reason


def test_seed_table_with_window_zero_keeps_the_knee():
    assert choose_k(table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE), knee_window=0)[0] == 6


def test_obvious_knee_on_synthetic_curves():
    ks = list(range(2, 11))
    steep_then_flat = [1000, 600, 200, 180, 165, 150, 140, 130, 120]  # elbow at k=4
    assert knee(ks, steep_then_flat) == 4
    k, _ = choose_k(table(ks, steep_then_flat, [0.3, 0.4, 0.6, 0.5, 0.4, 0.4, 0.3, 0.3, 0.3]))
    assert k == 4
    # The best silhouette next door wins, even if a far k has a higher one.
    k, _ = choose_k(table(ks, steep_then_flat, [0.9, 0.4, 0.5, 0.55, 0.4, 0.4, 0.3, 0.3, 0.95]))
    assert k == 5
    assert knee(ks, [1.0 / k ** 2 for k in ks]) == 4  # distances below the chord: .45, .53, .50, ...
    assert knee(ks, [math.exp(-k / 2) for k in ks]) == 5  # .39, .42, .38, ...


def test_ties_go_to_the_smaller_k_and_order_does_not_matter():
    ks = [2, 3, 4, 5, 6]
    inertia = [100, 40, 30, 25, 22]
    rows = table(ks, inertia, [0.1, 0.5, 0.5, 0.2, 0.2])
    assert knee(ks, inertia) == 3
    assert choose_k(rows)[0] == 3
    assert choose_k(list(reversed(rows)))[0] == 3
    flat = table(ks, [5, 5, 5, 5, 5], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert knee(ks, [5] * 5) == 2 and choose_k(flat)[0] == 3  # flat curve: knee at the first k


def test_short_tables_and_missing_silhouettes():
    assert choose_k(table([3], [10.0], [0.2]))[0] == 3
    k, reason = worded(table([2, 3], [10.0, 5.0], [0.2, 0.4]))
    assert k == 3 and "no inertia knee" in reason
    k, reason = worded(table([2, 3, 4, 5], [100, 40, 30, 28], [0.5, math.nan, None, 0.1]))
    assert k == 2 and "k=3: n/a" in reason  # knee 3, window 2..4: NaN/None never beat a number


def test_bad_tables():
    with pytest.raises(ValueError, match="empty"):
        choose_k([])
    with pytest.raises(ValueError, match="repeated"):
        choose_k(table([2, 2, 3], [3, 2, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="finite"):
        choose_k(table([2, 3, 4], [3, math.nan, 1], [0.1, 0.2, 0.3]))


def test_tiny_segment_sets_a_k_aside():
    """The seed's own table picks k=7 on silhouette; if k=7's smallest segment is 0.2% of users it is set aside."""
    rows = table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE)
    for row in rows:
        row["sizes"] = {0: 1000, 1: 2 if row["k"] == 7 else 500}
    k, reason = worded(rows, knee_window=1, min_share=0.01)
    assert k == 6 and "set aside" in reason and "k=7 (0.20%)" in reason
    assert choose_k(rows, knee_window=1, min_share=0.0)[0] == 7


def test_all_tiny_keeps_the_window():
    rows = table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE)
    for row in rows:
        row["sizes"] = [1, 1000]
    k, why = choose_k(rows, knee_window=1, min_share=0.01)
    assert k == 7 and why["guard_kept"] is False and set(why["under_min_share"]) == {5, 6, 7}
    reason = k_reason_text(why, "en")
    assert "every k near the knee has a segment under 1% of users" in reason and "could not be kept" in reason
    assert "no se pudo respetar" in k_reason_text(why, "es")


def test_reason_is_data_that_survives_json():
    import json

    k, why = choose_k(table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE), knee_window=1)
    assert (k, why["rule"], why["knee"], why["k"]) == (7, "knee", 6, 7)
    assert k_reason_text(json.loads(json.dumps(why)), "en") == k_reason_text(why, "en")


def test_reason_in_spanish():
    k, reason = worded(table(range(2, 11), SEED_INERTIA, SEED_SILHOUETTE), "es", knee_window=1)
    assert k == 7 and reason.startswith("codo de la inercia (Kneedle) en k=6") and "elegida k=7" in reason


# Measured k tables (mailseg run --k auto, seed 42 generated users, k = 2..10): the 10M users' search on the
# default 2M-row hashed sample, and the same search on all 10M rows (selection.search_rows: 1000000000).
# Their knees are a near tie (distances below the chord, k=5/6: 0.2784/0.2793 and 0.2797/0.2788).
TEN_M_SAMPLE = {"inertia": [12619621, 10467001, 8612710, 7392872, 6385782, 5678034, 5286653, 4918123, 4620308],
                "silhouette": [0.4308, 0.3308, 0.3483, 0.2792, 0.2919, 0.3164, 0.3135, 0.3177, 0.3099],
                "min_share": [0.13263, 0.01317, 0.0132, 0.01273, 0.00196, 0.00193, 0.00067, 0.00066, 0.00065]}
TEN_M_ALL_ROWS = {"inertia": [63107202, 52395228, 43119118, 37016182, 32069352, 28532354, 26581183, 24742945,
                              23256291],
                  "silhouette": [0.4485, 0.3281, 0.3473, 0.2813, 0.2848, 0.3189, 0.3108, 0.3202, 0.3021],
                  "min_share": [0.13248, 0.01309, 0.01311, 0.01269, 0.00195, 0.00191, 0.00071, 0.00071, 0.00068]}


def measured(run: dict) -> list[dict]:
    rows = table(range(2, 11), run["inertia"], run["silhouette"])
    for row, share in zip(rows, run["min_share"]):
        row["sizes"] = [round(share * 100_000), 100_000 - round(share * 100_000)]
    return rows


def test_a_near_tie_of_knees_picks_the_same_k_on_the_sample_and_on_all_rows():
    ks = list(range(2, 11))
    # without the tolerance the knee flips with the sample, and so does the chosen k
    assert (knee(ks, TEN_M_SAMPLE["inertia"]), knee(ks, TEN_M_ALL_ROWS["inertia"])) == (6, 5)
    assert choose_k(measured(TEN_M_SAMPLE), min_share=0.01, knee_tolerance=0.0)[0] == 5
    assert choose_k(measured(TEN_M_ALL_ROWS), min_share=0.01, knee_tolerance=0.0)[0] == 4
    sample, all_rows = (choose_k(measured(run), min_share=0.01) for run in (TEN_M_SAMPLE, TEN_M_ALL_ROWS))
    assert sample[0] == all_rows[0] == 4
    assert (sample[1]["knee"], sample[1]["tied"], all_rows[1]["knee"], all_rows[1]["tied"]) == (5, [6], 5, [6])
    assert "knee (Kneedle) at k=5 (tied with k=6 within 0.01: the smaller k is taken)" in k_reason_text(sample[1], "en")
    assert "en k=5 (empate con k=6, a menos de 0.01: se toma la k menor)" in k_reason_text(sample[1], "es")


def test_the_tolerance_only_merges_near_ties():
    ks = list(range(2, 11))
    # the seed's knee (0.2152 against 0.1996 at k=5) is farther apart than the default tolerance
    assert knee(ks, SEED_INERTIA, 0.01) == 6 and choose_k(table(ks, SEED_INERTIA, SEED_SILHOUETTE))[1]["tied"] == []
    assert knee(ks, SEED_INERTIA, 0.02) == 5
    # a tolerance as wide as the whole scale ties every k, so the knee is the first one
    assert knee(ks, SEED_INERTIA, 1.0) == 2
    assert knee([2, 3, 4], [5.0, 5.0, 5.0], 0.5) == 2  # flat curve: no knee, the first k
