"""Say what happens: every stage logs its start and its duration on stderr, and records its seconds.

A run is minutes of silence otherwise (publishing alone was ~30 s without a
word). The seconds recorded here are the summary's `timings`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger("mailseg")


class Stages:
    """`with stages("name", "what it does"):` logs "what it does …" then "what it does: 1.2 s"; `timings[name]`
    holds the seconds."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, doing: str | None = None) -> Iterator[None]:
        label = f"{self.prefix}{name}"
        log.info("%s …", doing or label)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.1f s", doing or label, self.timings[name])
