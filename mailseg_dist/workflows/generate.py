"""`mailseg generate`: synthetic seed-like users to a file, with the format checked before anything is written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mailseg_dist.core.errors import UsageError
from mailseg_dist.inputs.generate import FORMATS, write_generated

log = logging.getLogger("mailseg")


def generate_file(rows: int, out, fmt: str | None, seed: int) -> dict:
    """Write `rows` users to `out` (format from `fmt` or the file name); returns a small summary."""
    started = time.perf_counter()
    fmt = fmt or Path(str(out)).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"{out}: cannot tell the format from the name; pass --format {'|'.join(FORMATS)}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise UsageError(f"--rows expected a positive number of users, found {rows}")
    path = write_generated(out, rows, fmt, seed=seed)
    seconds = round(time.perf_counter() - started, 3)
    log.info("wrote %d users to %s in %.1f s", rows, path, seconds)
    return {"rows": rows, "path": str(path), "format": fmt, "seed": seed, "timings": {"generate": seconds}}


def generate_events(rows: int, out, fmt: str | None, seed: int, months: int, start: str, tz: str,
                    purchases: bool = True, sep: str = ",") -> dict:
    """Write an event log of `rows` users a month for `months` months into the folder `out` (Parquet or gzip CSV)."""
    from mailseg_dist.core.catalog import check_month
    from mailseg_dist.inputs.event_generate import write_event_log

    started = time.perf_counter()
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise UsageError(f"--rows expected a positive number of users, found {rows}")
    if sep not in (",", ";"):
        raise UsageError(f"--sep expected ',' or ';', found {sep!r}")
    summary = write_event_log(out, rows, months, fmt or "parquet", seed, check_month(start), tz, purchases, sep)
    seconds = round(time.perf_counter() - started, 3)
    log.info("wrote %d events (%d users a month, %d months) to %s in %.1f s", summary["events"], rows, months,
             summary["path"], seconds)
    return {**summary, "rows": rows, "format": fmt or "parquet", "seed": seed, "timings": {"generate": seconds}}
