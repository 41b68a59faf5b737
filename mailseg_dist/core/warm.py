"""The client's heavy imports, made in a background thread while it waits for its cluster and its workers.

A job's client imports scikit-learn (with scipy), matplotlib and dask.dataframe only when a stage first
needs them, and then waits for nothing else: on a slow 2-core machine sklearn.cluster alone took 2-3 s
between the ingest and the fit of a 212,292-user run, with both workers idle. Started before the cluster,
the same imports run while the client waits for the worker processes and for the ingest's tasks.

Only third-party packages are imported here, never mailseg's own modules: two threads importing modules
that import each other could meet half-initialised modules; these packages do not import mailseg. For the
same reason the job imports distributed (which shares dask's modules with dask.dataframe) before it starts
this thread, and mailseg's modules that run before the cluster is up import dask.dataframe inside the
functions that use it: at module level it made the cluster start wait 1.2 s for it (workflows.run took
1.37 s to import with it, 0.60 s without), where this thread now imports it while the workers start.
"""

from __future__ import annotations

import importlib
import threading

# What the fit and publish stages import on the client, heaviest first (seconds on that machine).
JOB_MODULES = ("dask.dataframe",            # ~3 s with pandas and pyarrow
               "sklearn.cluster",           # ~2 s with scipy
               "sklearn.decomposition", "sklearn.preprocessing",
               "matplotlib.figure", "matplotlib.backends.backend_agg")  # ~1 s


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the stage that needs it imports it again and reports the failure in its place
            pass


def import_in_background(modules: tuple[str, ...] = JOB_MODULES) -> threading.Thread:
    """Start importing `modules` in a daemon thread and return it (a later `import` of one of them waits
    for this thread's import of it to finish rather than doing it twice)."""
    thread = threading.Thread(target=_import_all, args=(modules,), name="mailseg-imports", daemon=True)
    thread.start()
    return thread
