"""What happened on the cluster during a run: workers lost, dashboard, optional performance report.

Dask recomputes the work of a lost worker by itself; this only records that it
happened so the summary can say so.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger("mailseg")


class RunMonitor:
    """Context manager around a run on `client`; `report()` gives a small dict for the summary."""

    def __init__(self, client, profile_path: str | Path | None = None):
        self.client = client
        self.profile_path = Path(profile_path) if profile_path else None
        self._stack = contextlib.ExitStack()
        self._start: set[str] = set()

    def _workers(self) -> set[str]:
        try:
            return set(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # a scheduler that went away is reported by the stage that needs it
            return set()

    def __enter__(self) -> "RunMonitor":
        self._start = self._workers()
        if self.profile_path is not None:
            from distributed import performance_report

            self.profile_path.parent.mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(performance_report(filename=str(self.profile_path)))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def report(self) -> dict:
        """Workers present at the start that are gone now count as lost (a restarted one has a new address)."""
        now = self._workers()
        lost = sorted(self._start - now)
        if lost:
            log.warning("%d worker(s) lost during the run; Dask recomputed their work: %s", len(lost), ", ".join(lost))
        return {"scheduler": self.client.scheduler.address, "dashboard": self.client.dashboard_link,
                "workers_start": len(self._start), "workers_end": len(now), "workers_lost": len(lost),
                "lost_workers": lost, "performance_report": str(self.profile_path) if self.profile_path else None}
