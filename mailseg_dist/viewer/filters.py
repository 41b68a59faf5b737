"""Which users a viewer page, a count or an export is about: one filter, stated as a pyarrow expression
(for dataset scans) and as SQL (for DuckDB); the tests hold both to a pandas filter of the same users."""

from __future__ import annotations

from dataclasses import dataclass

from mailseg_dist.core.errors import UsageError


@dataclass(frozen=True)
class Filters:
    """Which users: every field None (or empty) means no condition on it.

    clusters: segment ids; levels: "Alta"/"Baja" (the file's words); recommendations: exact advice texts;
    silhouette: (low, high) inclusive; buyer: True/False; days: weekdays 0=Monday of the best send time
    (the user's mean weekday rounded, as the advice uses it); hours: (first, last) hour of it, inclusive.
    """

    clusters: tuple[int, ...] | None = None
    levels: tuple[str, ...] | None = None
    recommendations: tuple[str, ...] | None = None
    silhouette: tuple[float, float] | None = None
    buyer: bool | None = None
    days: tuple[int, ...] | None = None
    hours: tuple[int, int] | None = None

    def expression(self):
        """The filter as one pyarrow expression (None: all users), evaluated inside the scan."""
        import pyarrow.compute as pc

        parts = []
        if self.clusters:
            parts.append(pc.field("cluster").isin([int(c) for c in self.clusters]))
        if self.levels:
            parts.append(pc.field("nivel").isin(list(self.levels)))
        if self.recommendations:
            parts.append(pc.field("recomendacion").isin(list(self.recommendations)))
        if self.silhouette is not None:
            low, high = self.silhouette
            parts.append((pc.field("silhouette_score") >= float(low)) & (pc.field("silhouette_score") <= float(high)))
        if self.buyer is not None:
            parts.append(pc.field("Comprador") == (1 if self.buyer else 0))
        if self.days:
            parts.append(_any([_day_is(int(d)) for d in sorted(set(self.days))]))
        if self.hours is not None:
            parts.append(_hours_between(*self.hours))
        expr = None
        for part in parts:
            expr = part if expr is None else expr & part
        return expr

    def sql(self) -> tuple[str, list]:
        """The same filter as a SQL WHERE condition with its parameters ("TRUE", [] for all users)."""
        parts, params = [], []

        def among(column: str, values) -> None:
            parts.append(f'"{column}" IN ({", ".join("?" * len(values))})')
            params.extend(values)

        if self.clusters:
            among("cluster", [int(c) for c in self.clusters])
        if self.levels:
            among("nivel", list(self.levels))
        if self.recommendations:
            among("recomendacion", list(self.recommendations))
        if self.silhouette is not None:
            parts.append('"silhouette_score" BETWEEN ? AND ?')
            params += [float(self.silhouette[0]), float(self.silhouette[1])]
        if self.buyer is not None:
            parts.append('"Comprador" = ?')
            params.append(1 if self.buyer else 0)
        if self.days:
            days = []
            for day in sorted({int(d) for d in self.days}):
                low = None if day == 0 else f'"day_of_week" >= {day - 0.5!r}'
                high = None if day == 6 else f'"day_of_week" < {day + 0.5!r}'
                days.append(" AND ".join(c for c in (low, high) if c) or "TRUE")
            parts.append("(" + " OR ".join(f"({d})" for d in days) + ")")
        if self.hours is not None:
            first, last = int(self.hours[0]), int(self.hours[1])
            if not (0 <= first <= last <= 23):
                raise UsageError(f"hours expected 0 <= first <= last <= 23, found {first}-{last}")
            inside = f'("hour" >= {first - 0.5!r} AND "hour" < {last + 0.5!r})'
            parts.append(f'({inside} OR "hour" >= 23.5)' if first == 0 else inside)
        return (" AND ".join(parts) or "TRUE"), params


def _any(exprs):
    out = exprs[0]
    for e in exprs[1:]:
        out = out | e
    return out


def _day_is(day: int):
    """Rounded mean weekday == day, clipped to 0..6 (recommend._time_keys), as bounds on the float column."""
    import pyarrow.compute as pc

    col = pc.field("day_of_week")
    low = None if day == 0 else col >= day - 0.5
    high = None if day == 6 else col < day + 0.5
    return low if high is None else high if low is None else low & high


def _hours_between(first: int, last: int):
    """Rounded mean hour (23.5 and later round to 0) within [first, last], as bounds on the float column."""
    import pyarrow.compute as pc

    col = pc.field("hour")
    first, last = int(first), int(last)
    if not (0 <= first <= last <= 23):
        raise UsageError(f"hours expected 0 <= first <= last <= 23, found {first}-{last}")
    inside = (col >= first - 0.5) & (col < last + 0.5)
    return inside | (col >= 23.5) if first == 0 else inside
