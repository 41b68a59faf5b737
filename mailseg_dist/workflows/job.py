"""What wraps every job, for the CLI and the Python API alike: the output lock, the Dask client, the monitor.

The lock comes before the cluster: a second job on the same folder is refused
at once, without starting anything. A client handed in by the caller is used
and never closed; without one, a LocalCluster (or the configured scheduler) is
started and closed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mailseg_dist.core.atomic import folder_lock
from mailseg_dist.core.catalog import PROFILE_HTML
from mailseg_dist.core.storage import as_location, is_remote


@contextlib.contextmanager
def client_scope(cfg: dict, client=None) -> Iterator:
    """`client` itself when given (left open), else a new one from `cfg["cluster"]`, closed on exit."""
    if client is not None:
        yield client
        return
    from mailseg_dist.core.client import open_client

    with open_client(cfg["cluster"], cfg["cluster"]["scheduler"]) as opened:
        yield opened


@contextlib.contextmanager
def locked_folder(out_dir, holder: str) -> Iterator:
    """The output folder's lock; a folder made only to hold it is removed again if the job failed before writing."""
    out_dir = as_location(out_dir)
    new_folder = not is_remote(out_dir) and not out_dir.exists()
    try:
        with folder_lock(out_dir, holder) as lock:
            yield lock
    finally:
        if new_folder:
            with contextlib.suppress(OSError):
                out_dir.rmdir()


@contextlib.contextmanager
def job(cfg: dict, out_dir, holder: str, client=None, profile: bool = False) -> Iterator[tuple]:
    """(client, monitor) for one job writing into `out_dir`: lock → client → monitor (optional profile).

    The stages' heavy imports start in the background once the lock is held (core/warm.py)."""
    from mailseg_dist.core.monitor import RunMonitor
    from mailseg_dist.core.warm import import_in_background

    profile_path = as_location(out_dir) / PROFILE_HTML if profile else None
    with locked_folder(out_dir, holder):
        import mailseg_dist.core.client  # noqa: F401 (distributed) before the background thread: see core/warm.py
        warming = import_in_background()
        try:
            with client_scope(cfg, client) as active, RunMonitor(active, profile_path) as monitor:
                yield active, monitor
        finally:
            # A job refused within seconds (an unreachable scheduler) could exit while this thread was still inside
            # an extension's import: the C++ runtime then aborted the process ("terminate called without an active
            # exception", exit -6 instead of 4; seen once in CI). Waiting costs nothing once the imports are done.
            warming.join()
