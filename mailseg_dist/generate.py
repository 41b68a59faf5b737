"""Synthetic mailing users shaped like the seed notebook's data (SEED_FACTS.md).

Users are a mixture of the notebook's six segments. Within a segment:

- send   = 1 + Poisson((m_send - 1) * G_send)       G_* ~ Gamma(k, 1/k), mean 1
- open   = Poisson(m_open * G_eng * send / m_send)  opens scale with mails received
- click  = Poisson(m_click * G_eng * G_click * send / m_send)  shares G_eng with open
- bounce = Poisson(m_bounce * G_bounce)             negative binomial, independent
- Total  = send + bounce + open + click + Poisson(m_extra * send / m_send)
  where m_extra = seed Total - (send + bounce + open + click) per segment ("other events")
- Comprador ~ Bernoulli(p * exp(-BUYER_BOUNCE_DECAY * bounce) / E[exp(...)]): bouncers buy
  less inside each segment too, the segment's buyer rate stays p (closed-form NB moment).
- hour = S / Total with S ~ Binomial(23 * Total, c / 23), c = 23 * Beta(mean m_hour):
  the mean of the user's Total integer event hours; day_of_week the same on 0..6.
  Both are rounded to 10 decimals so every writer (xlsxwriter prints 16 significant
  digits, CSV prints repr, Parquet stores the double) gives back the identical value.

Every mean above is the segment's seed mean, so per-segment means and shares match the
seed in expectation; the gamma shapes were tuned so the overall spreads and tails
resemble the seed's. Measured on 1,000,000 rows (seed 42) against the seed:

    send std 3.84 (3.84), max 170 (167); bounce std 0.67 (0.67); open std 1.57 (1.56);
    click std 0.60 (0.61); Total std 4.97 (4.96); hour std 3.07 (3.08);
    day_of_week std 1.21 (1.21); quartiles of send 1/2/5 (1/2/5), Total 2/3/6 (2/3/6)
    corr send~Total 0.90 (0.89), open~Total 0.64 (0.64), open~click 0.45 (0.44),
    bounce~Comprador -0.32 (-0.32)

(the numbers are filled in from `python -m mailseg_dist.generate` output, see _report).

Randomness comes from fixed internal blocks of BLOCK_ROWS rows, each with its own
generator np.random.default_rng([seed, block]), so the rows depend only on (rows, seed),
never on chunk_rows, and memory stays bounded by one block plus one chunk.
Ids are a bijection i -> (a * i + b) mod M, M = 10 * rows, gcd(a, M) = 1, applied to
the row positions shuffled within each block: unique, spread over 0..M-1 like the seed's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import UsageError

BLOCK_ROWS = 100_000
EXCEL_MAX_ROWS = 1_048_575  # 1,048,576 sheet rows minus the header
MAX_ROWS = 300_000_000      # keeps a * i < M**2 inside int64
FORMATS = ("xlsx", "csv", "parquet")
COLUMNS = ["Id", "send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week"]
INT_COLUMNS = COLUMNS[:7]
DECIMALS = 10
_ID_STREAM = 2**32  # seed-sequence key of the Id map; block indices never reach it

# The notebook's six segments (SEED_FACTS.md), means in original units.
SEED_SEGMENTS = pd.DataFrame(
    [
        [33_939, 2.873, 0.016, 0.816, 0.084, 3.899, 0.582, 15.54, 3.45, 2.729],
        [56_272, 1.725, 0.295, 0.085, 0.005, 2.111, 0.593, 20.95, 3.58, 1.875],
        [3_319, 11.633, 0.066, 7.808, 2.362, 23.241, 0.721, 15.53, 2.51, 14.695],
        [23_282, 1.766, 1.552, 0.021, 0.001, 3.522, 0.152, 13.79, 1.60, 0.480],
        [42_957, 9.112, 0.021, 0.771, 0.070, 10.183, 0.671, 18.88, 2.05, 2.925],
        [52_523, 2.514, 0.033, 0.204, 0.025, 2.777, 0.819, 19.78, 1.36, 2.708],
    ],
    columns=["users", "send", "bounce", "open", "click", "Total", "Comprador", "hour",
             "day_of_week", "engagement_score"],
    index=pd.RangeIndex(6, name="segment"),
)
SEED_SEGMENTS.insert(1, "share", SEED_SEGMENTS["users"] / SEED_SEGMENTS["users"].sum())

# The seed's marginal statistics (describe() of clustering_mailing.xlsx, 212,292 rows).
SEED_MARGINALS = pd.DataFrame(
    {
        "send": [3.7578, 3.8388, 1, 1, 2, 5, 167],
        "bounce": [0.2643, 0.6653, 0, 0, 0, 0, 55],
        "open": [0.4838, 1.5647, 0, 0, 0, 0, 174],
        "click": [0.0721, 0.6078, 0, 0, 0, 0, 106],
        "Total": [4.6801, 4.9640, 1, 2, 3, 6, 390],
        "Comprador": [0.6165, 0.4862, 0, 0, 1, 1, 1],
        "hour": [18.506, 3.078, 0, 17, 19.6, 20.67, 23],
        "day_of_week": [2.467, 1.209, 0, 1.5, 2.33, 3.5, 6],
    },
    index=["mean", "std", "min", "25%", "50%", "75%", "max"],
)
SEED_CORRELATIONS = {("send", "Total"): 0.89, ("open", "Total"): 0.64,
                     ("open", "click"): 0.44, ("bounce", "Comprador"): -0.32}

# Gamma shapes (smaller = heavier tail) and Beta concentrations, tuned against the seed.
SHAPE_SEND = 1.6
SHAPE_ENGAGE = 0.35
SHAPE_CLICK = 0.6
SHAPE_BOUNCE = 0.5
BUYER_BOUNCE_DECAY = 0.7
CONCENTRATION_HOUR = 30.0
CONCENTRATION_DAY = 6.0
HOUR_MAX, DAY_MAX = 23, 6


def _gamma(rng: np.random.Generator, shape: float, n: int) -> np.ndarray:
    """Gamma multipliers with mean 1; variance 1/shape."""
    return rng.gamma(shape, 1.0 / shape, n)


def _segment_params() -> dict[str, np.ndarray]:
    seg = SEED_SEGMENTS
    extra = seg["Total"] - seg[["send", "bounce", "open", "click"]].sum(axis=1)
    return {
        "cum_share": np.cumsum(seg["share"].to_numpy()),
        "send": seg["send"].to_numpy(), "bounce": seg["bounce"].to_numpy(),
        "open": seg["open"].to_numpy(), "click": seg["click"].to_numpy(),
        "extra": extra.clip(lower=0).to_numpy(), "buyer": seg["Comprador"].to_numpy(),
        "hour": seg["hour"].to_numpy(), "day": seg["day_of_week"].to_numpy(),
    }


def _counts(rng: np.random.Generator, p: dict, segment: np.ndarray) -> dict[str, np.ndarray]:
    n = len(segment)
    m_send = p["send"][segment]
    send = 1 + rng.poisson((m_send - 1) * _gamma(rng, SHAPE_SEND, n))
    per_mail = send / m_send  # mean 1 given the segment
    engage = _gamma(rng, SHAPE_ENGAGE, n)
    opens = rng.poisson(p["open"][segment] * engage * per_mail)
    click = rng.poisson(p["click"][segment] * engage * _gamma(rng, SHAPE_CLICK, n) * per_mail)
    bounce = rng.poisson(p["bounce"][segment] * _gamma(rng, SHAPE_BOUNCE, n))
    extra = rng.poisson(p["extra"][segment] * per_mail)
    return {"send": send, "bounce": bounce, "open": opens, "click": click,
            "Total": send + bounce + opens + click + extra}


def _buyer(rng: np.random.Generator, p: dict, segment: np.ndarray, bounce: np.ndarray) -> np.ndarray:
    """Buyers rarer among bouncers, segment buyer rate kept (E[exp(-d*NB)] in closed form)."""
    m_bounce = p["bounce"][segment]
    decay = BUYER_BOUNCE_DECAY
    mean_factor = (1 + m_bounce * (1 - math.exp(-decay)) / SHAPE_BOUNCE) ** -SHAPE_BOUNCE
    prob = np.minimum(p["buyer"][segment] * np.exp(-decay * bounce) / mean_factor, 1.0)
    return (rng.random(len(segment)) < prob).astype(np.int64)


def _event_average(rng: np.random.Generator, means: np.ndarray, top: int, concentration: float,
                   events: np.ndarray) -> np.ndarray:
    """Mean of `events` integer values in 0..top around a per-user centre with mean `means`."""
    share = means / top
    centre = rng.beta(share * concentration, (1 - share) * concentration)
    total = rng.binomial(top * events, centre)
    return np.round(total / events, DECIMALS)


def _id_map(rows: int, seed: int) -> tuple[int, int, int]:
    """(a, b, M) of the Id bijection i -> (a*i + b) mod M."""
    modulus = 10 * rows
    rng = np.random.default_rng([seed, _ID_STREAM])
    a = int(rng.integers(modulus // 4, 3 * modulus // 4 + 1))
    while math.gcd(a, modulus) != 1:
        a += 1
    return a, int(rng.integers(0, modulus)), modulus


def _generate_block(rows: int, seed: int, block: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows [block*BLOCK_ROWS, ...) of the (rows, seed) table, and their true segments."""
    start = block * BLOCK_ROWS
    n = min(BLOCK_ROWS, rows - start)
    rng = np.random.default_rng([seed, block])
    p = _segment_params()
    segment = np.searchsorted(p["cum_share"], rng.random(n) * p["cum_share"][-1], side="right")
    counts = _counts(rng, p, segment)
    buyer = _buyer(rng, p, segment, counts["bounce"])
    hour = _event_average(rng, p["hour"][segment], HOUR_MAX, CONCENTRATION_HOUR, counts["Total"])
    day = _event_average(rng, p["day"][segment], DAY_MAX, CONCENTRATION_DAY, counts["Total"])
    a, b, modulus = _id_map(rows, seed)
    position = start + rng.permutation(n).astype(np.int64)
    frame = pd.DataFrame({"Id": (a * position + b) % modulus, **counts, "Comprador": buyer,
                          "hour": hour, "day_of_week": day})
    frame[INT_COLUMNS] = frame[INT_COLUMNS].astype(np.int64)
    frame[["hour", "day_of_week"]] = frame[["hour", "day_of_week"]].astype(np.float64)
    return frame[COLUMNS], segment.astype(np.int64)


def _check_args(rows: int, seed: int, chunk_rows: int) -> None:
    for name, value, low in (("rows", rows, 1), ("seed", seed, 0), ("chunk_rows", chunk_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UsageError(f"generate: {name} must be an integer >= {low}, got {value!r}")
    if rows > MAX_ROWS:
        raise UsageError(f"generate: rows must be <= {MAX_ROWS:,}, got {rows:,}")


def iter_generated(rows: int, seed: int = 42, chunk_rows: int = 200_000) -> Iterator[pd.DataFrame]:
    """Chunks of at most `chunk_rows` generated users; the rows depend only on (rows, seed)."""
    _check_args(rows, seed, chunk_rows)
    pending: list[pd.DataFrame] = []
    held = 0
    for block in range(math.ceil(rows / BLOCK_ROWS)):
        frame, _ = _generate_block(rows, seed, block)
        pending.append(frame)
        held += len(frame)
        while held >= chunk_rows:
            joined = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            yield joined.iloc[:chunk_rows].reset_index(drop=True)
            pending, held = [joined.iloc[chunk_rows:]], held - chunk_rows
    if held:
        yield pd.concat(pending, ignore_index=True)
