"""Synthetic mailing users shaped like the seed notebook's data (SEED_FACTS.md).

Each user belongs to one of the notebook's six segments (drawn with the seed's shares;
the segment is never an output column). Inside segment s, with its seed means m_*:

- send   = 1 + Poisson((m_send - 1) * G_send)            G_* ~ Gamma(k, 1/k), mean 1
- open   = Poisson(m_open * G_eng * w),  click = Poisson(m_click * G_eng * G_click * w)
  with w = 1 + OPEN_PER_MAIL * (send / m_send - 1): opens follow mails; the shared
  G_eng ties clicks to opens.
- bounce = Binomial(send, q), q ~ Beta(mean m_bounce / m_send): a bounce is a sent mail.
- Total  = send + bounce + open + click + Poisson(m_extra * send / m_send), m_extra the
  seed's Total - (send + bounce + open + click) of the segment ("other event types").
- Comprador ~ Bernoulli(p * exp(-decay * q) / E[exp(-decay * q)]): bouncers buy less
  inside a segment too, while the segment's rate stays p (Beta MGF = 1F1, exact).
- hour = mean of the user's Total integer event hours around a centre c = 23 * Beta
  (each event floor(c) or floor(c) + 1, mean c; 5% of users have a wide Beta); same for
  day_of_week on 0..6. Rounded to DECIMALS so xlsx (16 digits), csv (repr) and parquet
  all give back the identical float.
- About 2 in 100,000 users are "power" users (20..160 extra mails, proxy-like opens and
  clicks): the seed's far outliers. Their expected share is taken off everyone's base
  means, so segment means stay the seed's.

Every segment mean is the seed's in expectation. The gamma shapes, OPEN_PER_MAIL, the
bounce concentration and decay were fitted by least squares on the analytic mixture
moments to the seed's stds and four correlations, then checked by simulation.
Measured on 1,000,000 rows, seed 42 (seed value in brackets):

    std   send 3.80 (3.84)  bounce 0.68 (0.67)  open 1.59 (1.56)  click 0.63 (0.61)
          Total 4.95 (4.96)  hour 3.07 (3.08)  day_of_week 1.21 (1.21)
    max   send 141 (167)  bounce 47 (55)  open 131 (174)  click 66 (106)  Total 324 (390)
    quartiles  send 1/2/5 (1/2/5)  Total 2/3/6 (2/3/6)  hour 16.7/19.3/21 (17/19.6/20.67)
               day_of_week 1.5/2.31/3.4 (1.5/2.33/3.5)
    corr  send~Total 0.91 (0.89)  open~Total 0.65 (0.64)  open~click 0.45 (0.44)
          bounce~Comprador -0.31 (-0.32)

Randomness comes from fixed internal blocks of BLOCK_ROWS rows, each with its own
np.random.default_rng([seed, block]), so the rows depend only on (rows, seed), never on
chunk_rows, and memory stays bounded by one block plus one chunk. Ids are the bijection
i -> (a * i + b) mod M, M = 10 * rows, gcd(a, M) = 1, on the row positions shuffled
within each block: unique and spread over 0..M-1 like the seed's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from mailseg_dist.core.atomic import atomic_path
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.settings import FORMATS
from mailseg_dist.core.storage import as_location

BLOCK_ROWS = 100_000
EXCEL_MAX_ROWS = 1_048_575  # 1,048,576 sheet rows minus the header
MAX_ROWS = 300_000_000      # keeps a * i < M**2 inside int64
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

# Fitted to the seed (see docstring); smaller gamma shape = heavier tail, one per segment
# where it matters: the heavily mailed segments 2 and 4 are tight in send (else the light
# ones cannot reach the seed's send 75% = 5), the engaged core 2 is steady in opens.
SHAPE_SEND = np.array([2.0, 2.0, 16.0, 2.0, 7.0, 2.0])
SHAPE_ENGAGE = np.array([0.34, 0.34, 5.3, 0.34, 0.34, 0.34])
SHAPE_CLICK = 0.63
OPEN_PER_MAIL = 0.54         # how strongly opens/clicks follow the number of mails (0..1)
BOUNCE_CONCENTRATION = 3.3   # Beta concentration of each user's bounce probability
BUYER_BOUNCE_DECAY = 2.6     # buyer odds fall as exp(-decay * bounce probability)
CONCENTRATION_HOUR = 50.0
CONCENTRATION_DAY = 24.0
SCATTERED_SHARE = 0.05
SCATTERED_CONCENTRATION = 1.0
# A handful of "power" users (about 4 per seed-size file) get 20..160 extra mails: the
# seed's far outliers (send 167, Total 390) that no fitted gamma reaches.
POWER_SHARE = 2e-5
POWER_EXTRA_SENDS = (20.0, 160.0)
POWER_OPENS_PER_MAIL = (0.3, 1.1)   # they behave like privacy proxies or link scanners
POWER_CLICKS_PER_OPEN = (0.0, 0.6)
HOUR_MAX, DAY_MAX = 23, 6


def _gamma(rng: np.random.Generator, shape, n: int) -> np.ndarray:
    """Gamma multipliers with mean 1; variance 1/shape."""
    return rng.gamma(shape, 1.0 / shape, n)


def _segment_params() -> dict[str, np.ndarray]:
    seg = SEED_SEGMENTS
    extra = seg["Total"] - seg[["send", "bounce", "open", "click"]].sum(axis=1)
    return {
        "cum_share": np.cumsum(seg["share"].to_numpy()),
        "send": seg["send"].to_numpy(), "bounce_rate": (seg["bounce"] / seg["send"]).to_numpy(),
        "open": seg["open"].to_numpy(), "click": seg["click"].to_numpy(),
        "extra": extra.clip(lower=0).to_numpy(), "buyer": seg["Comprador"].to_numpy(),
        "hour": seg["hour"].to_numpy(), "day": seg["day_of_week"].to_numpy(),
    }


def _sends(rng: np.random.Generator, m_send: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mails per user (mean m_send) and which users are power users."""
    n = len(m_send)
    power_mean = POWER_SHARE * sum(POWER_EXTRA_SENDS) / 2  # taken off everyone's base mean
    base = (m_send - 1 - power_mean) * _gamma(rng, shape, n)
    power = rng.random(n) < POWER_SHARE
    return 1 + rng.poisson(base + np.where(power, rng.uniform(*POWER_EXTRA_SENDS, n), 0.0)), power


def _power_engagement(rng: np.random.Generator, power: np.ndarray, send: np.ndarray, m_send: np.ndarray):
    """Proxy-like opens and clicks of power users (0 for others), and their mean per segment user."""
    n = len(send)
    opens = rng.poisson(np.where(power, send * rng.uniform(*POWER_OPENS_PER_MAIL, n), 0.0))
    clicks = rng.poisson(opens * rng.uniform(*POWER_CLICKS_PER_OPEN, n))
    power_send = m_send + (1 - POWER_SHARE) * sum(POWER_EXTRA_SENDS) / 2  # E[send | power]
    mean_opens = POWER_SHARE * power_send * sum(POWER_OPENS_PER_MAIL) / 2
    return opens, clicks, mean_opens, mean_opens * sum(POWER_CLICKS_PER_OPEN) / 2


def _counts(rng: np.random.Generator, p: dict, segment: np.ndarray) -> tuple[dict, np.ndarray]:
    """Event counts per user, and each user's bounce probability (the buyer draw needs it)."""
    n = len(segment)
    m_send = p["send"][segment]
    send, power = _sends(rng, m_send, SHAPE_SEND[segment])
    power_opens, power_clicks, mean_opens, mean_clicks = _power_engagement(rng, power, send, m_send)
    per_mail = 1 + OPEN_PER_MAIL * (send / m_send - 1)  # mean 1 within the segment, > 0
    engage = _gamma(rng, SHAPE_ENGAGE[segment], n)
    opens = power_opens + rng.poisson((p["open"][segment] - mean_opens) * engage * per_mail)
    click_rate = (p["click"][segment] - mean_clicks) * _gamma(rng, SHAPE_CLICK, n)
    click = power_clicks + rng.poisson(click_rate * engage * per_mail)
    # A bounce is a sent mail that came back: Binomial(send, user's bounce probability),
    # which keeps hard bouncers tight (sub-Poisson) as the seed's segment 3 is.
    rate = p["bounce_rate"][segment]
    bounce_prob = rng.beta(rate * BOUNCE_CONCENTRATION, (1 - rate) * BOUNCE_CONCENTRATION)
    bounce = rng.binomial(send, bounce_prob)
    extra = rng.poisson(p["extra"][segment] * send / m_send)
    counts = {"send": send, "bounce": bounce, "open": opens, "click": click,
              "Total": send + bounce + opens + click + extra}
    return counts, bounce_prob


def _buyer(rng: np.random.Generator, p: dict, segment: np.ndarray, bounce_prob: np.ndarray) -> np.ndarray:
    """Bouncers buy less inside each segment; the segment's buyer rate is kept.

    P(buy) = rate * exp(-decay * q) / E[exp(-decay * q)], q ~ Beta(a, b): the
    denominator is the Beta moment generating function 1F1(a; a + b; -decay).
    """
    from scipy.special import hyp1f1

    rate = p["bounce_rate"]
    norm = hyp1f1(rate * BOUNCE_CONCENTRATION, BOUNCE_CONCENTRATION, -BUYER_BOUNCE_DECAY)
    prob = p["buyer"][segment] * np.exp(-BUYER_BOUNCE_DECAY * bounce_prob) / norm[segment]
    return (rng.random(len(segment)) < np.minimum(prob, 1.0)).astype(np.int64)


def _event_average(rng: np.random.Generator, means: np.ndarray, top: int, concentration: float,
                   events: np.ndarray) -> np.ndarray:
    """Mean of `events` integer values in 0..top around a per-user centre with mean `means`.

    The centre c is top * Beta; each event is floor(c) or floor(c) + 1 with mean c, so
    the user's average is floor(c) + Binomial(events, frac(c)) / events.
    """
    share = means / top
    # A few users act at scattered times (wide Beta): the seed's tails with a tight middle.
    scattered = rng.random(len(means)) < SCATTERED_SHARE
    spread = np.where(scattered, SCATTERED_CONCENTRATION, concentration)
    centre = top * rng.beta(share * spread, (1 - share) * spread)
    low = np.minimum(np.floor(centre), top - 1)
    above = rng.binomial(events, centre - low)
    return np.round(low + above / events, DECIMALS)


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
    counts, bounce_prob = _counts(rng, p, segment)
    buyer = _buyer(rng, p, segment, bounce_prob)
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


def write_generated(path: str | Path, rows: int, fmt: str, seed: int = 42,
                    chunk_rows: int = 200_000) -> Path:
    """Write `rows` generated users to `path` as xlsx, csv or parquet; atomically."""
    _check_args(rows, seed, chunk_rows)
    if fmt not in FORMATS:
        raise UsageError(f"generate: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "xlsx" and rows > EXCEL_MAX_ROWS:
        raise UsageError(f"generate: {rows:,} rows do not fit in an Excel sheet (at most "
                         f"{EXCEL_MAX_ROWS:,} data rows + header); use csv or parquet")
    path = as_location(path)
    writer = {"xlsx": _write_xlsx, "csv": _write_csv, "parquet": _write_parquet}[fmt]
    with atomic_path(path, suffix=path.suffix) as tmp:
        writer(tmp, iter_generated(rows, seed, chunk_rows))
    return path


def _write_xlsx(tmp: Path, chunks: Iterator[pd.DataFrame]) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    sheet = book.add_worksheet("Sheet1")
    sheet.write_row(0, 0, COLUMNS)
    row = 1
    for chunk in chunks:
        # Python ints/floats: xlsxwriter prints 16 significant digits, enough for
        # values rounded to DECIMALS places, so they read back identical.
        for values in zip(*(chunk[c].tolist() for c in COLUMNS)):
            for col, value in enumerate(values):
                sheet.write_number(row, col, value)
            row += 1
    book.close()


def _write_csv(tmp: Path, chunks: Iterator[pd.DataFrame]) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        for i, chunk in enumerate(chunks):
            chunk.to_csv(handle, index=False, header=i == 0, lineterminator="\n")


def _write_parquet(tmp: Path, chunks: Iterator[pd.DataFrame]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
