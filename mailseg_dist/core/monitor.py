"""What happened on the cluster during a run: workers lost, dashboard, optional performance report.

Dask recomputes the work of a lost worker by itself; this only records that it
happened so the summary can say so. A worker counts as lost when the scheduler
removed it unexpectedly during the run (its "remove-worker" event: killed, out
of memory, network gone), or when it was there at the start and is gone at the
end. Events catch workers that joined and died mid-run; comparing the worker
sets catches a loss whose event the scheduler's bounded log already dropped.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from mailseg_dist.core.storage import as_location

log = logging.getLogger("mailseg")


def _check_profile_support(client) -> None:
    """A LocalCluster's scheduler runs in this process: without bokeh it cannot draw the report, so say it now."""
    import importlib.util

    from mailseg_dist.core.errors import UsageError

    if getattr(client, "cluster", None) is not None and importlib.util.find_spec("bokeh") is None:
        raise UsageError("--profile needs the bokeh package to draw the Dask performance report: "
                         "python -m pip install 'bokeh>=3.1'")


def _event_id(stamp, msg: dict) -> tuple:
    return stamp, msg.get("worker"), msg.get("stimulus_id")


class RunMonitor:
    """Context manager around a run on `client`; `report()` gives a small dict for the summary."""

    def __init__(self, client, profile_path: str | Path | None = None):
        self.client = client
        self.profile_path = as_location(profile_path) if profile_path else None
        self._stack = contextlib.ExitStack()
        self._start: set[str] = set()
        self._seen_events: set[tuple] = set()

    def _workers(self) -> set[str]:
        try:
            return set(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # a scheduler that went away is reported by the stage that needs it
            return set()

    def _removals(self) -> list[tuple[tuple, dict]]:
        """(id, message) of every remove-worker event the scheduler still holds, oldest first."""
        try:
            events = self.client.get_events("all")
        except Exception:
            return []
        return [(_event_id(stamp, msg), msg) for stamp, msg in events
                if isinstance(msg, dict) and msg.get("action") == "remove-worker"]

    def __enter__(self) -> "RunMonitor":
        self._start = self._workers()
        self._seen_events = {event_id for event_id, _ in self._removals()}
        if self.profile_path is not None:
            from distributed import performance_report

            from mailseg_dist.core.atomic import atomic_path

            _check_profile_support(self.client)
            # Dask writes the report when the block ends: into a temporary, renamed into place by atomic_path.
            tmp = self._stack.enter_context(atomic_path(self.profile_path, suffix=".html"))
            self._stack.enter_context(performance_report(filename=str(tmp)))
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._stack.__exit__(*exc)  # a failed run leaves no half-written report
        except Exception as error:
            if exc[0] is not None:
                raise
            # The results are complete; only the optional profile is missing (e.g. bokeh absent on a remote scheduler).
            log.warning("performance report not written: %s: %s", type(error).__name__, str(error).splitlines()[0][:200])

    def report(self) -> dict:
        now = self._workers()
        new = [msg for event_id, msg in self._removals() if event_id not in self._seen_events]
        unexpected = [msg for msg in new if not msg.get("expected")]
        lost = sorted({msg["worker"] for msg in unexpected if msg.get("worker")} | (self._start - now))
        recomputed = sum(len(msg.get("lost-computed-tasks") or ()) for msg in unexpected)
        if lost:
            log.warning("%d worker(s) lost during the run; Dask recomputed their work (%d finished task(s) "
                        "redone): %s", len(lost), recomputed, ", ".join(lost))
        return {"scheduler": self.client.scheduler.address, "dashboard": self.client.dashboard_link,
                "workers_start": len(self._start), "workers_end": len(now), "workers_lost": len(lost),
                "lost_workers": lost, "tasks_recomputed": recomputed,
                "performance_report": str(self.profile_path) if self.profile_path else None}
