"""The user table's schema and the alias table that maps input headers onto it.

Headers are matched after trimming, lower-casing, stripping accents and
treating spaces, dashes and dots as underscores, so `ID`, ` Open `,
`Día de la semana` and `dia_semana` all find their column.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

ID = "Id"
COUNTS = ["send", "bounce", "open", "click", "Total"]
BUYER = "Comprador"
AVERAGES = ["hour", "day_of_week"]
REQUIRED = [ID, *COUNTS, BUYER, *AVERAGES]
# A blank in these is allowed and follows cleaning.null_counts; the rest are required values.
OPTIONAL_COUNTS = ["bounce", "open", "click"]
ENGAGEMENT = "engagement_score"
SOURCE_ROW = "source_row"
DISTINCT_COLUMNS = (ID, SOURCE_ROW)  # one value a row: written without a dictionary (storage.write_parquet)
CLEAN_COLUMNS = [ID, *COUNTS, BUYER, *AVERAGES, ENGAGEMENT]
# Extra per-user columns of a table built from an event log (ingest-events), after the clean columns;
# selectable in features.columns like any clean column (a users table from a file lacks them).
EVENT_FEATURES = ["days_since_open", "days_since_click", "campaigns", "click_hour"]
USER_COLUMNS = [*CLEAN_COLUMNS, *EVENT_FEATURES]

# Documented alias table (README "Input columns"): normalized header -> schema column.
ALIASES: dict[str, str] = {
    "id": ID, "user_id": ID, "userid": ID, "id_usuario": ID, "usuario": ID, "customer_id": ID, "cliente": ID,
    "send": "send", "sends": "send", "sent": "send", "enviados": "send", "envios": "send",
    "bounce": "bounce", "bounces": "bounce", "bounced": "bounce", "rebotes": "bounce", "rebote": "bounce",
    "open": "open", "opens": "open", "opened": "open", "aperturas": "open", "abiertos": "open",
    "click": "click", "clicks": "click", "clics": "click", "clicks_email": "click",
    "total": "Total", "interacciones": "Total", "total_interacciones": "Total",
    "comprador": BUYER, "buyer": BUYER, "purchaser": BUYER, "compra": BUYER, "is_buyer": BUYER,
    "hour": "hour", "hora": "hour", "hora_media": "hour", "mean_hour": "hour", "avg_hour": "hour",
    "day_of_week": "day_of_week", "weekday": "day_of_week", "dia_de_la_semana": "day_of_week",
    "dia_semana": "day_of_week", "dayofweek": "day_of_week", "day": "day_of_week", "dia": "day_of_week",
}

# Weekday names accepted in day_of_week (0 = Monday, as pandas' dayofweek).
WEEKDAYS: dict[str, int] = {}
for _i, _names in enumerate([
    ("monday", "mon", "lunes", "lun"), ("tuesday", "tue", "martes", "mar"),
    ("wednesday", "wed", "miercoles", "mie"), ("thursday", "thu", "jueves", "jue"),
    ("friday", "fri", "viernes", "vie"), ("saturday", "sat", "sabado", "sab"),
    ("sunday", "sun", "domingo", "dom"),
]):
    for _name in _names:
        WEEKDAYS[_name] = _i


def normalize(text: object) -> str:
    """Header or word → lower-case ASCII with single underscores."""
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[\s\-\.]+", "_", folded.strip().lower()).strip("_")


def map_columns(headers: list[object]) -> dict[int, str]:
    """Position of each input header → schema column (unmapped headers keep a cleaned name).

    The first header that maps to a schema column wins; a later one mapping to
    the same column is kept as an extra column, never silently merged.
    """
    mapping: dict[int, str] = {}
    taken: set[str] = set()
    for pos, header in enumerate(headers):
        target = ALIASES.get(normalize(header))
        if target and target not in taken:
            mapping[pos] = target
            taken.add(target)
        else:
            name = normalize(header) or f"column_{pos + 1}"
            while name in taken or name in REQUIRED or name == SOURCE_ROW:  # source_row is ours
                name = f"extra_{name}"
            mapping[pos] = name
            taken.add(name)
    return mapping


def missing_required(columns: list[str]) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def id_is_integer(values: pd.Series) -> bool:
    """Every present Id is a whole number that int64 holds exactly (text beyond 2**53 stays text)."""
    if pd.api.types.is_integer_dtype(values):
        return True
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        return bool(((present == present.round()) & (present.abs() < 2**53)).all())
    text = present.astype(str).str.strip()
    nums = pd.to_numeric(text[text != ""], errors="coerce")  # blanks are missing Ids, not text Ids
    return bool(nums.notna().all() and ((nums == nums.round()) & (nums.abs() < 2**53)).all())
