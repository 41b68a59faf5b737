"""What every config key may hold: one table, checked when the config loads.

In the style of scikit-learn's ``_parameter_constraints``: each dotted key of
conf/base.yaml maps to a list of constraints and a value is valid when one of
them accepts it (``None`` in the list: null is allowed). A bad value is then
refused at the door, in one line naming the key, instead of failing on a
worker after the fit. The names of engines, languages, formats... are declared
here once; the modules that act on them import these constants, never the
reverse (core is the lowest layer: this module imports nothing of mailseg).
Defaults are not repeated here: they live in conf/base.yaml only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from numbers import Real
from typing import Any

# Allowed names, declared once (engines/__init__, texts, generate and features import them).
ENGINES = ("lloyd", "minibatch", "daskml")
INITS = ("sample", "native")
LANGS = ("es", "en")
FORMATS = ("xlsx", "csv", "parquet")
XLSX_ENGINES = ("fastexcel", "calamine", "openpyxl")
SEPARATORS = ("auto", ",", ";", "\t")
DECIMAL_MARKS = ("auto", ".", ",")
DUPLICATE_IDS = ("keep_first",)
NULL_COUNTS = ("zero", "reject")
UPDATE_MODES = ("refit", "blend")
# Model inputs: any numeric clean-layer column but the Id (a test keeps this equal to inputs.schema).
# Columns only an events-built users table has (ingest-events; inputs.schema.EVENT_FEATURES).
EVENT_FEATURES = ("days_since_open", "days_since_click", "campaigns", "click_hour")
FEATURE_COLUMNS = ("send", "bounce", "open", "click", "Total", "Comprador", "hour", "day_of_week",
                   "engagement_score", *EVENT_FEATURES)
# What an event type code may stand for: the four counted kinds, and `other` (counted in Total only).
EVENT_KINDS = ("send", "open", "click", "bounce", "other")
EXCEL_DATA_ROWS = 1_048_575  # 1,048,576 sheet rows minus the header
SEED_MAX = 2**32 - 1         # sklearn's random_state bound
MONTH_PATTERN = r"(\d{4})-(0[1-9]|1[0-2])"


class Interval:
    """An int (bools excluded) or a finite real number within [low, high]; None: unbounded on that side."""

    def __init__(self, kind: type, low: Real | None, high: Real | None, closed: str = "both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else Real):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def __str__(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.high is None:
            return f"{noun} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.low is None:
            return f"{noun} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{noun} in {left}{self.low}, {self.high}{right}"


class Options:
    """One of a fixed set of values (compared with their type, so True is not 1)."""

    def __init__(self, *values: Any):
        self.values = values

    def is_satisfied_by(self, value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in self.values)

    def __str__(self) -> str:
        names = ", ".join(map(repr, self.values))
        return names if len(self.values) == 1 else f"one of {names}"


class Boolean:
    """true or false (YAML's yes/no/on/off too, which the YAML reader already turns into bools)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


class Text:
    """A non-empty string, e.g. a path or an address; `what` says which."""

    def __init__(self, what: str = "a non-empty text"):
        self.what = what

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def __str__(self) -> str:
        return self.what


class Pattern(Text):
    """A string matching a regular expression in full."""

    def __init__(self, pattern: str, what: str):
        super().__init__(what)
        self.regex = re.compile(pattern)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class ListOf:
    """A non-empty list of distinct items, each accepted by `item`."""

    def __init__(self, item: Options):
        self.item = item

    def is_satisfied_by(self, value: Any) -> bool:
        if not isinstance(value, list) or not value:
            return False
        hashable = all(isinstance(v, (str, int, float)) for v in value)
        return hashable and len(set(value)) == len(value) and all(map(self.item.is_satisfied_by, value))

    def __str__(self) -> str:
        return f"a non-empty list of distinct names among {', '.join(map(str, self.item.values))}"


class Texts:
    """A list of distinct non-empty strings (event type codes); empty allowed when `empty` is set."""

    def __init__(self, empty: bool = False):
        self.empty = empty

    def is_satisfied_by(self, value: Any) -> bool:
        if not isinstance(value, list) or (not value and not self.empty):
            return False
        return all(isinstance(v, str) and v.strip() for v in value) and len(set(value)) == len(value)

    def __str__(self) -> str:
        return "a list of distinct codes (text)"


class TimeZone(Text):
    """An IANA time zone name such as Europe/Madrid or UTC."""

    def __init__(self):
        super().__init__("an IANA time zone name (e.g. Europe/Madrid, UTC)")

    def is_satisfied_by(self, value: Any) -> bool:
        if not super().is_satisfied_by(value):
            return False
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False
        return True


class ByteSize:
    """A memory size as Dask's LocalCluster reads it: '4GiB', a number of bytes, or a fraction (0, 1]
    of the machine's memory. Parsed by dask.utils.parse_bytes, the parser distributed itself uses."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return value > 0
        if isinstance(value, float):
            return 0 < value <= 1
        if not isinstance(value, str):
            return False
        # Imported only here: reading the table does not load Dask.
        from dask.utils import parse_bytes

        try:
            return parse_bytes(value) > 0
        except (ValueError, TypeError):
            return False

    def __str__(self) -> str:
        return "a size like 4GiB or 512MB, a number of bytes, or a fraction in (0, 1] of the machine's memory"


class Bytes(ByteSize):
    """A size in bytes: '64MiB' or a whole number (not a fraction of the machine)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return not isinstance(value, float) and super().is_satisfied_by(value)

    def __str__(self) -> str:
        return "a size like 64MiB or a whole number of bytes"


def _count(low: int = 0) -> Interval:
    return Interval(int, low, None)


def _positive() -> Interval:
    return Interval(Real, 0, None, closed="neither")


def _share() -> Interval:
    return Interval(Real, 0, 1)


_SEED = Interval(int, 0, SEED_MAX)
_PATH = Text("a path (text)")

# Every key of conf/base.yaml, dotted (nested mappings too); a test keeps the two key sets equal.
CONSTRAINTS: dict[str, list] = {
    "paths.data_dir": [Text("a folder path or URL")],
    "paths.raw_subdir": [_PATH],
    "paths.users_subdir": [_PATH],
    "paths.rejects_subdir": [_PATH],
    "paths.manifests_subdir": [_PATH],
    "paths.out_dir": [Text("a folder path or URL")],
    "paths.default_input": [Text("a file path or URL")],
    "default_data.rows": [_count(1)],
    "default_data.seed": [_SEED],
    "default_data.format": [Options(*FORMATS)],
    "ingest.month": [Pattern(MONTH_PATTERN, "YYYY-MM (e.g. 2026-11)"), None],
    "ingest.chunk_rows": [_count(1)],
    "ingest.sheet": [Text("a sheet name"), None],
    "ingest.sep": [Options(*SEPARATORS)],
    "ingest.decimal": [Options(*DECIMAL_MARKS)],
    "ingest.xlsx_engine": [Options(*XLSX_ENGINES)],
    "cleaning.duplicate_ids": [Options(*DUPLICATE_IDS)],
    "cleaning.null_counts": [Options(*NULL_COUNTS)],
    "cleaning.max_count": [_count(1)],
    "cleaning.engagement_weights.open": [Interval(Real, 0, None)],
    "cleaning.engagement_weights.click": [Interval(Real, 0, None)],
    "cleaning.engagement_weights.Comprador": [Interval(Real, 0, None)],
    "features.columns": [ListOf(Options(*FEATURE_COLUMNS))],
    "features.log1p": [Boolean()],
    "features.rates": [Boolean()],
    "features.cyclical": [Boolean()],
    "model.engine": [Options(*ENGINES)],
    "model.k": [Options("auto"), _count(2)],
    "model.k_min": [_count(2)],
    "model.k_max": [_count(2)],
    "model.seed": [_SEED],
    "model.max_iter": [_count(1)],
    "model.tol": [Interval(Real, 0, None)],
    "model.init": [Options(*INITS)],
    "model.init_sample": [_count(2)],
    "model.refine_sample": [_count(0)],
    "model.n_init": [_count(1)],
    "model.minibatch_epochs": [_count(1)],
    "model.minibatch_batch_size": [_count(1)],
    "model.minibatch_reassignment_ratio": [Interval(Real, 0, None)],
    "model.daskml_init_max_iter": [_count(1), None],
    "model.cache_features": [Options("auto"), Boolean()],
    "selection.silhouette_sample": [_count(2)],
    "selection.silhouette_min_per_cluster": [_count(1)],
    "selection.knee_window": [_count(0)],
    "selection.knee_tolerance": [Interval(Real, 0, 1, closed="both")],
    "selection.min_segment_share": [Interval(Real, 0, 1, closed="left")],
    "selection.search_rows": [_count(1000)],
    "quality.bootstrap_rounds": [_count(1)],
    "quality.bootstrap_sample": [_count(2)],
    "quality.pca_components": [_count(2)],  # the PCA figure plots the first two
    "report.lang": [Options(*LANGS)],
    "report.excel_max_rows": [Interval(int, 2, EXCEL_DATA_ROWS)],  # one row is kept for the sampling note
    "report.scatter_points": [_count(1)],
    "recommend.high_engagement_ratio": [_positive()],
    "recommend.very_high_engagement_ratio": [_positive()],
    "recommend.bounce_rate_high": [_share()],
    "recommend.heavy_send_ratio": [_positive()],
    "recommend.low_open_rate": [_share()],
    "recommend.buyer_rate_high": [_share()],
    "recommend.user_sunset_min_sends": [_count(1)],
    "recommend.user_sunset_send_ratio": [Interval(Real, 1, None)],
    "versions.keep_months": [_count(0)],
    "update.mode": [Options(*UPDATE_MODES)],
    "update.half_life_months": [_positive()],
    "update.max_passes": [_count(1)],
    "drift.bins": [_count(2)],
    "drift.psi_watch": [_positive()],
    "drift.psi_act": [_positive()],
    "events.columns.event_id": [Text("a column name")],
    "events.columns.customer_id": [Text("a column name")],
    "events.columns.campaign_id": [Text("a column name")],
    "events.columns.delivery_id": [Text("a column name"), None],
    "events.columns.type": [Text("a column name")],
    "events.columns.timestamp": [Text("a column name")],
    **{f"events.types.{kind}": [Texts(empty=kind == "other")] for kind in EVENT_KINDS},
    "events.timezone": [TimeZone()],
    "events.sep": [Options(*SEPARATORS)],
    "events.part_rows": [_count(1000)],
    "events.users_parts": [Options("auto"), _count(1)],
    "events.recency_cap_days": [_positive()],
    "events.extra_features": [ListOf(Options(*EVENT_FEATURES)), None],
    "events.purchases.customer_id": [Text("a column name")],
    "events.purchases.date": [Text("a column name"), None],
    "cluster.scheduler": [Text("a scheduler address like tcp://HOST:PORT"), None],
    "cluster.n_workers": [_count(1)],
    "cluster.threads_per_worker": [_count(1)],
    "cluster.memory_limit": [Options("auto"), ByteSize(), None],
    "cluster.malloc_trim_threshold": [Bytes(), None],
    "cluster.malloc_mmap_threshold": [Bytes(), None],
    "cluster.connect_timeout": [_positive()],
    "cluster.dashboard": [Boolean()],
    "cluster.progress": [Boolean()],
    "cluster.tls_ca_file": [_PATH, None],
    "cluster.tls_cert": [_PATH, None],
    "cluster.tls_key": [_PATH, None],
}


def is_valid(dotted_key: str, value: Any) -> bool:
    """Whether `value` is allowed for `dotted_key` (KeyError: the key is not in the table)."""
    return any(value is None if c is None else c.is_satisfied_by(value) for c in CONSTRAINTS[dotted_key])


def describe(dotted_key: str) -> str:
    """What `dotted_key` accepts, in words, e.g. "'auto' or an integer >= 2" (for messages and --help)."""
    return " or ".join("null" if c is None else str(c) for c in CONSTRAINTS[dotted_key])


def choices(dotted_key: str) -> tuple:
    """The fixed names `dotted_key` accepts, e.g. for argparse ``choices=`` (empty when it takes no names)."""
    return tuple(v for c in CONSTRAINTS[dotted_key] if isinstance(c, Options) for v in c.values)


# Rules between keys: each takes the merged config and yields (keys involved, what was expected, found).
def _k_range(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    model = cfg["model"]
    if model["k_min"] > model["k_max"]:
        yield ("model.k_min", "model.k_max"), f"<= model.k_max ({model['k_max']})", model["k_min"]


def _seed_rows(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """k-means++ runs on the first init_sample rows of the sample: fewer rows than clusters cannot work."""
    model = cfg["model"]
    largest, key = (model["k_max"], "model.k_max") if model["k"] == "auto" else (model["k"], "model.k")
    if model["init_sample"] < largest:
        yield ("model.init_sample", key), f">= the largest k tried ({key} = {largest})", model["init_sample"]


def _engagement_levels(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    rec = cfg["recommend"]
    if rec["very_high_engagement_ratio"] < rec["high_engagement_ratio"]:
        yield (("recommend.very_high_engagement_ratio", "recommend.high_engagement_ratio"),
               f">= recommend.high_engagement_ratio ({rec['high_engagement_ratio']})", rec["very_high_engagement_ratio"])


def _psi_bands(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    drift = cfg["drift"]
    if drift["psi_act"] < drift["psi_watch"]:
        yield (("drift.psi_act", "drift.psi_watch"), f">= drift.psi_watch ({drift['psi_watch']})", drift["psi_act"])


def _event_codes(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """A code may stand for one kind of event only (compared as the reader compares them)."""
    seen: dict[str, str] = {}
    for kind in EVENT_KINDS:
        for code in cfg["events"]["types"][kind]:
            key = code.strip().lower()
            if key in seen and seen[key] != kind:
                yield (f"events.types.{kind}",), f"codes not already listed under events.types.{seen[key]}", code
            seen.setdefault(key, kind)


CROSS_KEY_RULES: tuple[Callable[[dict], Iterator], ...] = (_k_range, _seed_rows, _engagement_levels, _psi_bands,
                                                           _event_codes)


def cross_key_violations(cfg: dict) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(keys, expected, found) for each rule between keys that the merged, per-key valid `cfg` breaks."""
    for rule in CROSS_KEY_RULES:
        yield from rule(cfg)
