"""What to do with each segment and with each user, by documented rules.

Segment action (``segment_table``), first rule that holds, thresholds from cfg["recommend"]:
    1. bounce rate (Σbounce/Σsend) ≥ bounce_rate_high → list hygiene: validate addresses,
       suppress hard bounces, no promotions ("hygiene").
    2. buyer rate ≥ buyer_rate_high and open rate below the population's → other channels
       (SMS, push, web), lower email frequency ("other_channels").
    3. mean sends ≥ population × heavy_send_ratio and open rate below the population's →
       reduce frequency, re-engagement campaign, then sunset ("reduce_frequency").
    4. level Alta (mean engagement > population × high_engagement_ratio) → exclusive offers,
       loyalty programme, ask for feedback ("loyalty").
    5. otherwise → re-engage with an incentive, preference survey, segment further ("reactivate").
    The reason (``motivo``) quotes the numbers and the threshold that decided. A segment
    without users (possible only for a model applied to other data) gets "none".

Per-user advice (``user_recommendations``), from the user's own row; the first that holds:
    a. hygiene: bounce ≥ send (and bounce > 0) → verify/suppress the address; replaces the
       segment action, which is quoted by name.
    b. sunset: send ≥ user_sunset_min_sends, open + click == 0, and (bounce > 0 or
       send ≥ user_sunset_min_sends × user_sunset_send_ratio (conf/base.yaml)) →
       one last win-back email, then suppress; replaces the segment action.
    c. re-engagement: send ≥ user_sunset_min_sends and open + click == 0 otherwise →
       one win-back email with an incentive, sunset if no response; plus the best time.
    d. otherwise: the segment's short action plus the best time to send (no send time
       for a segment whose action is list hygiene: it should get no campaigns yet).
    Best time = the user's mean weekday and mean hour, rounded half up (the averages of
    all of the user's events: the input has no click-only times, so it also carries the
    opens that privacy proxies pre-fetch).
The advice goes to one text column, ``recomendacion``, in either language.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mailseg_dist.segments.profiles import (
    engagement_level,
    population,
    segment_names,
    segment_traits,
)
from mailseg_dist.segments.texts import (
    ACTIONS,
    REASONS,
    USER,
    WEEKDAYS,
    Number,
    check_lang,
)

RECOMMENDATION = "recomendacion"
THRESHOLD_KEY = {"none": "high_engagement_ratio", "hygiene": "bounce_rate_high", "other_channels": "buyer_rate_high",
                 "reduce_frequency": "heavy_send_ratio", "loyalty": "high_engagement_ratio",
                 "reactivate": "high_engagement_ratio"}


def _action_code(t: pd.Series) -> str:
    if t["empty"]:
        return "none"
    if t["high_bounce"]:
        return "hygiene"
    if t["loyal_low_open"]:
        return "other_channels"
    if t["heavy_send"] and t["below_pop_open"]:
        return "reduce_frequency"
    return "loyalty" if t["alta"] else "reactivate"


def _reason(code: str, row: pd.Series, t: pd.Series, pop: pd.Series, cfg: dict, lang: str) -> str:
    values = {"bounce_rate": row["bounce_rate"], "pop_bounce_rate": pop["bounce_rate"],
              "buyer_rate": row["buyer_rate"], "open_rate": row["open_rate"], "pop_open_rate": pop["open_rate"],
              "send": row["send_mean"], "send_ratio": t["send_ratio"], "engagement": row["engagement_score_mean"],
              "engagement_ratio": t["engagement_ratio"], "pop_engagement": pop["engagement_score_mean"],
              "threshold": cfg["recommend"][THRESHOLD_KEY[code]]}
    return REASONS[lang][code].format(**{key: Number(value, lang) for key, value in values.items()})


def segment_table(profiles: pd.DataFrame, cfg: dict, lang: str = "es") -> pd.DataFrame:
    """Profiles plus nombre, nivel, accion_codigo, accion_corta, accion and motivo per segment."""
    check_lang(lang)
    traits, pop = segment_traits(profiles, cfg), population(profiles)
    codes = pd.Series([_action_code(traits.loc[c]) for c in profiles.index], index=profiles.index)
    table = profiles.copy()
    table["nombre"] = segment_names(profiles, cfg, lang)
    table["nivel"] = engagement_level(profiles, cfg, lang)
    table["accion_codigo"] = codes
    table["accion_corta"] = codes.map(lambda c: ACTIONS[lang][c][0])
    table["accion"] = codes.map(lambda c: ACTIONS[lang][c][1])
    table["motivo"] = [_reason(codes[c], profiles.loc[c], traits.loc[c], pop, cfg, lang) for c in profiles.index]
    return table


def user_action_codes(df: pd.DataFrame, cfg: dict) -> pd.Series:
    """Per-user adjustment: "hygiene", "sunset", "reengage" or "segment" (rules a-d above)."""
    rc = cfg["recommend"]
    send, bounce = df["send"].to_numpy(), df["bounce"].to_numpy()
    min_sends = rc["user_sunset_min_sends"]
    hygiene = (bounce >= send) & (bounce > 0)
    inactive = (send >= min_sends) & ((df["open"] + df["click"]).to_numpy() == 0)
    very_high = send >= min_sends * rc["user_sunset_send_ratio"]
    sunset = inactive & ((bounce > 0) | very_high)
    codes = np.select([hygiene, sunset, inactive], ["hygiene", "sunset", "reengage"], "segment")
    return pd.Series(codes, index=df.index, name="accion_usuario")


def _best_time(df: pd.DataFrame, lang: str) -> pd.Series:
    hour = (np.floor(df["hour"].to_numpy(dtype="float64") + 0.5) % 24).astype("int64")
    day = np.clip(np.floor(df["day_of_week"].to_numpy(dtype="float64") + 0.5), 0, 6).astype("int64")
    key = pd.Series(day * 24 + hour, index=df.index)
    texts = {d * 24 + h: USER[lang]["timing"].format(weekday=WEEKDAYS[lang][d], hour=h)
             for d in range(7) for h in range(24)}
    return key.map(texts)


def _with_count(template: str, send: pd.Series) -> pd.Series:
    texts = {v: template.format(send=v) for v in pd.unique(send)}
    return send.map(texts)


def user_recommendations(df: pd.DataFrame, segment_table: pd.DataFrame, cfg: dict, lang: str = "es") -> pd.Series:
    """One advice text per user (column "recomendacion"); df holds the raw columns and "cluster"."""
    check_lang(lang)
    words = USER[lang]
    if len(df) == 0:
        return pd.Series([], index=df.index, dtype=object, name=RECOMMENDATION)
    clusters = df["cluster"].astype("int64")
    unknown = {int(c) for c in pd.unique(clusters)} - {int(c) for c in segment_table.index}
    if unknown:
        raise ValueError(f"cluster labels {sorted(unknown)[:5]} are not in the segment table")
    short = clusters.map(segment_table["accion_corta"])
    quoted = " (" + words["segment"] + ": " + clusters.map(segment_table["nombre"]) + ")."
    timing = _best_time(df, lang)
    send = df["send"].astype("int64")
    codes = user_action_codes(df, cfg)
    hygiene_segment = clusters.map(segment_table["accion_codigo"]).eq("hygiene").to_numpy()
    text = (short + "; " + timing + ".").mask(hygiene_segment, short + ".")
    text = text.mask(codes == "reengage", _with_count(words["reengage"], send) + "; " + timing + ".")
    text = text.mask(codes == "sunset", _with_count(words["sunset"], send) + quoted)
    text = text.mask(codes == "hygiene", words["hygiene"] + quoted)
    return text.astype(object).rename(RECOMMENDATION)
