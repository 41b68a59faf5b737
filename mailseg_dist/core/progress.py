"""Every Dask compute of the library goes through `compute`, so a person at a terminal sees progress.

On a terminal (the job's stdout is a TTY and `cluster.progress` is true) each compute
runs as futures on the distributed client under Dask's own text progress bar, which
erases itself when done. Otherwise (pipes, --json, CI, logs) it is a plain
`dask.compute` and the stages' log lines are the progress. The results are the same
either way: the same graph runs on the same scheduler.
"""

from __future__ import annotations

import sys

import dask

_show_bar = False


def configure(enabled: bool, stream=None) -> bool:
    """Turn the bar on when `enabled` and `stream` (stdout by default) is a terminal; returns the decision."""
    global _show_bar
    stream = sys.stdout if stream is None else stream
    _show_bar = bool(enabled) and bool(getattr(stream, "isatty", lambda: False)())
    return _show_bar


def _bar_client():
    """The default distributed client, when the bar is on and nothing overrides the scheduler."""
    if not _show_bar or dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no client: the local scheduler has no distributed bar
        return None
    return None if client.asynchronous else client


def compute(*collections):
    """dask.compute(*collections), under Dask's progress bar when one is wanted."""
    if len({type(c) for c in collections}) > 1:
        # dask 2026.8 returns mixed kinds (a DataFrame Scalar and a Delayed, say) grouped by kind, not in the
        # order given: compute each on its own so results can never be swapped.
        return tuple(compute(c)[0] for c in collections)
    client = _bar_client()
    if client is None:
        return dask.compute(*collections)
    from distributed import progress

    futures = client.compute(list(collections))
    progress(futures, multi=False)
    return tuple(client.gather(futures))
