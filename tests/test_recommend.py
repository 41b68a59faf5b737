"""Segment actions and per-user advice follow the documented rules (hand-built profiles and rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_clean_users, split_with_empty
from test_profiles import SEED, SEED_POPULATION, profiles_from_means, seed_profiles

from mailseg_dist.core.config import load_config
from mailseg_dist.segments.recommend import (
    RECOMMENDATION,
    segment_table,
    user_action_codes,
    user_recommendations,
)

SEED_ACTIONS = ["loyalty", "reactivate", "loyalty", "hygiene", "reduce_frequency", "other_channels"]


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def seed_table(cfg):
    return segment_table(seed_profiles(), cfg)


def _user(cluster=0, send=3, bounce=0, open_=1, click=0, hour=18.6, day=1.4):
    return {"cluster": cluster, "send": send, "bounce": bounce, "open": open_, "click": click, "hour": hour,
            "day_of_week": day}


# ---------------------------------------------------------------- segments
def test_seed_segments_get_the_documented_actions(seed_table):
    assert seed_table["accion_codigo"].tolist() == SEED_ACTIONS
    assert seed_table["nivel"].tolist() == ["Alta", "Baja", "Alta", "Baja", "Alta", "Alta"]
    bouncers = seed_table.loc[3]
    assert bouncers["nombre"] == "Rebotes: limpiar lista"
    assert "suprimir los rebotes" in bouncers["accion"] and "promociones" in bouncers["accion"]
    assert bouncers["motivo"] == "Tasa de rebote 88% (umbral 30%; población 7%)."
    core = seed_table.loc[2]
    assert "ofertas exclusivas" in core["accion"] and "fidelización" in core["accion"] and "opinión" in core["accion"]
    assert core["motivo"].startswith("Compromiso medio 14,70, 5,9× la media")


def test_actions_in_english(cfg):
    table = segment_table(seed_profiles(), cfg, "en")
    assert table["accion_codigo"].tolist() == SEED_ACTIONS
    assert table.loc[3, "accion_corta"] == "List hygiene"
    assert table.loc[5, "accion"].startswith("They buy but barely read email")
    assert table.loc[2, "motivo"].startswith("Mean engagement 14.70, 5.9× the population mean")


def test_actions_follow_profiles_when_clusters_are_permuted(cfg):
    order = [3, 5, 1, 0, 4, 2]
    table = segment_table(profiles_from_means(SEED.iloc[order].reset_index(drop=True), SEED_POPULATION), cfg)
    assert table["accion_codigo"].tolist() == [SEED_ACTIONS[i] for i in order]


def test_action_thresholds_come_from_config(cfg):
    cfg["recommend"].update(bounce_rate_high=0.95, buyer_rate_high=0.9, heavy_send_ratio=4.0)
    codes = segment_table(seed_profiles(), cfg)["accion_codigo"].tolist()
    # No hygiene, no "other channels", no "reduce frequency": level decides (Alta → loyalty).
    assert codes == ["loyalty", "reactivate", "loyalty", "reactivate", "loyalty", "loyalty"]


def test_highly_engaged_segment_is_alta_with_loyalty_offers(cfg):
    rows = SEED.iloc[[1, 2]].reset_index(drop=True)
    table = segment_table(profiles_from_means(rows, SEED_POPULATION), cfg)
    core = table.loc[1, ["nombre", "nivel", "accion_codigo"]].tolist()
    assert core == ["Núcleo muy comprometido", "Alta", "loyalty"]


# ---------------------------------------------------------------- users
def test_user_rules_on_hand_built_rows(cfg, seed_table):
    rows = pd.DataFrame([
        _user(cluster=0, send=3, bounce=3, open_=0),            # bounce >= send: hygiene
        _user(cluster=0, send=6, bounce=1, open_=0),            # inactive with a bounce: sunset
        _user(cluster=0, send=10, bounce=0, open_=0),           # inactive, send >= 5 * 2: sunset
        _user(cluster=0, send=6, bounce=0, open_=0),            # inactive otherwise: re-engagement
        _user(cluster=0, send=4, bounce=0, open_=0),            # fewer than 5 sends: segment advice
        _user(cluster=0, send=6, bounce=0, open_=0, click=1),   # clicked: segment advice
    ])
    assert user_action_codes(rows, cfg).tolist() == ["hygiene", "sunset", "sunset", "reengage", "segment", "segment"]
    texts = user_recommendations(rows, seed_table, cfg)
    assert texts.name == RECOMMENDATION
    assert texts[0] == ("Higiene: rebotes ≥ envíos, verificar la dirección y suprimirla hasta confirmarla "
                        "(segmento: Lectores de tarde).")
    assert texts[1].startswith("Sunset: 6 envíos sin aperturas ni clics") and "Lectores de tarde" in texts[1]
    assert texts[3].startswith("Reactivación: 6 envíos") and texts[3].endswith("martes hacia las 19:00.")
    assert texts[4] == "Fidelizar con ofertas exclusivas; mejor momento: martes hacia las 19:00."


def test_user_thresholds_from_config(cfg, seed_table):
    rows = pd.DataFrame([_user(send=6, bounce=0, open_=0)])
    cfg["recommend"]["user_sunset_min_sends"] = 7
    assert user_action_codes(rows, cfg).tolist() == ["segment"]
    cfg["recommend"]["user_sunset_min_sends"] = 3
    assert user_action_codes(rows, cfg).tolist() == ["sunset"]  # 6 >= 3 * 2


@pytest.mark.parametrize("hour, day, expected", [
    (18.5, 0.49, "lunes hacia las 19:00"), (18.49, 0.5, "martes hacia las 18:00"),
    (0.2, 6.0, "domingo hacia las 0:00"), (23.0, 3.5, "viernes hacia las 23:00")])
def test_best_time_rounds_half_up(cfg, seed_table, hour, day, expected):
    text = user_recommendations(pd.DataFrame([_user(hour=hour, day=day)]), seed_table, cfg)[0]
    assert text.endswith(expected + ".")


def test_user_advice_in_english(cfg):
    table = segment_table(seed_profiles(), cfg, "en")
    rows = pd.DataFrame([_user(cluster=5), _user(cluster=5, send=12, open_=0)])
    texts = user_recommendations(rows, table, cfg, "en")
    assert texts[0] == "Other channels, less email; best time: Tuesday around 19:00."
    assert texts[1].startswith("Sunset: 12 emails without opens or clicks")
    assert "Loyal buyers who rarely open" in texts[1]


def test_hygiene_segment_gets_no_send_time(cfg, seed_table):
    text = user_recommendations(pd.DataFrame([_user(cluster=3, send=2, bounce=1, open_=0)]), seed_table, cfg)[0]
    assert text == "Higiene de lista."


def test_unknown_cluster_is_an_error(cfg, seed_table):
    with pytest.raises(ValueError, match=r"cluster labels \[9\]"):
        user_recommendations(pd.DataFrame([_user(cluster=9)]), seed_table, cfg)


def test_per_partition_equals_whole_table(cfg, seed_table):
    df = make_clean_users(500, seed=5)
    df["cluster"] = np.random.default_rng(0).integers(0, 6, len(df))
    whole = user_recommendations(df, seed_table, cfg)
    parts = split_with_empty(df).map_partitions(user_recommendations, seed_table, cfg,
                                                meta=(RECOMMENDATION, "object")).compute()
    assert parts.tolist() == whole.tolist()
    assert whole.notna().all() and len(set(whole)) > 10


def test_segment_without_users_needs_no_action(cfg):
    profiles = seed_profiles()
    profiles.loc[1, "size"] = 0
    profiles.loc[1, [c for c in profiles.columns if c not in ("size", "share")]] = np.nan
    table = segment_table(profiles, cfg)
    assert table.loc[1, ["nombre", "accion_codigo"]].tolist() == ["Sin usuarios", "none"]
    assert "nan" not in table.loc[1, "motivo"]
    assert table.drop(index=1)["accion_codigo"].tolist() == [SEED_ACTIONS[i] for i in (0, 2, 3, 4, 5)]
