"""Where the job runs: a loopback LocalCluster by default, or an existing scheduler by address.

The job opens the client with `open_client` and closes it; library stages only
receive it. An address comes from --scheduler, then cluster.scheduler in the
config, then Dask's own `scheduler-address` setting (DASK_SCHEDULER_ADDRESS).

Everything that can be checked before any work is checked at the door, with a
one-line message: the address, the TLS files (exit 2); reaching the scheduler,
the workers' package versions (exit 4). A worker that dies during the run is
Dask's business (it recomputes the lost work); a task that keeps killing its
workers, or a scheduler that goes away, ends the job with exit 4.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Iterator

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from mailseg_dist.core import progress
from mailseg_dist.core.errors import ClusterError, UsageError

log = logging.getLogger("mailseg")

PROTOCOLS = ("tcp", "tls")
# Must be identical on the client and every worker: tasks and fitted objects travel pickled,
# and the same data + seed must give the same result wherever it runs. Python: major.minor.
MATCHING_PACKAGES = ("dask", "distributed", "pandas", "numpy", "scikit-learn", "pyarrow", "mailseg")
# What a version difference or a worker without mailseg is told to do (README: how to build and install the wheel).
SAME_EVERYWHERE = ("install the same mailseg wheel (and the same Python, "
                   + ", ".join(name for name in MATCHING_PACKAGES if name != "mailseg")
                   + ") on the client and every worker; see README \"Deploying on a cluster\"")


def scheduler_address(ccfg: dict, flag: str | None = None) -> str | None:
    return flag or ccfg["scheduler"] or dask.config.get("scheduler-address", None)


def _check_address(address: str) -> None:
    protocol = address.split("://", 1)[0] if "://" in address else "tcp"
    if protocol not in PROTOCOLS:
        raise UsageError(f"{address}: scheduler address expected tcp://HOST:PORT or tls://HOST:PORT")


def _security(ccfg: dict, address: str):
    """TLS credentials for a tls:// address; configured TLS files with a plain address is a contradiction."""
    names = ("tls_ca_file", "tls_cert", "tls_key")
    files = [ccfg[name] for name in names]
    if not address.startswith("tls://"):
        if any(files):
            raise UsageError(f"{address}: cluster.tls_* files are configured, so the scheduler address must "
                             "start with tls:// (a plain tcp:// connection would not be encrypted)")
        return None
    if not all(files):
        raise UsageError(f"{address}: a tls:// scheduler needs cluster.tls_ca_file, tls_cert and tls_key in the config")
    for name, path in zip(names, files):
        if not Path(path).is_file():
            raise UsageError(f"cluster.{name}: {path} is not a readable file")
    from distributed.security import Security

    return Security(tls_ca_file=files[0], tls_client_cert=files[1], tls_client_key=files[2], require_encryption=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _connect_error(address: str, timeout: float, exc: BaseException) -> ClusterError:
    """Say what most likely went wrong: nobody listening, TLS refused, or a handshake cut short."""
    from distributed.comm.core import CommClosedError

    if isinstance(exc, ssl.SSLError) or (address.startswith("tls://") and isinstance(exc, CommClosedError)):
        why = "the TLS handshake failed: check cluster.tls_ca_file, tls_cert and tls_key against the scheduler's CA"
    elif isinstance(exc, CommClosedError) and not address.startswith("tls://"):
        why = ("the scheduler closed the connection during the handshake: if it requires TLS, use a tls:// "
               "address with cluster.tls_ca_file, tls_cert and tls_key")
    else:
        why = f"cannot reach the Dask scheduler within {timeout:g} s"
    return ClusterError(f"{address}: {why} ({_first_line(exc)})")


def package_versions() -> dict[str, str | None]:
    """Versions that must match between client and workers (None: not installed). Runs on workers too."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": "%d.%d" % sys.version_info[:2]}
    for name in MATCHING_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _shown(version: str | None) -> str:
    return "not installed" if version is None else version


def version_mismatches(ours: dict, workers: dict[str, dict]) -> list[str]:
    """'worker W: package <client's> here, <worker's> on the worker' for every difference, sorted."""
    return sorted(f"worker {worker}: {name} {_shown(ours[name])} here, {_shown(theirs.get(name))} on the worker"
                  for worker, theirs in workers.items() for name in ours if theirs.get(name) != ours[name])


def _check_worker_versions(client) -> None:
    try:
        workers = client.run(package_versions)
    except (ImportError, AttributeError) as exc:  # the worker cannot unpickle a mailseg function
        raise ClusterError(f"the workers cannot import mailseg ({_first_line(exc)}): {SAME_EVERYWHERE}") from None
    except Exception as exc:  # a worker that cannot even run this cannot run the job
        raise ClusterError(f"cannot ask the workers for their package versions ({_first_line(exc)})") from None
    problems = version_mismatches(package_versions(), workers)
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ClusterError(f"{'; '.join(problems[:3])}{more}: {SAME_EVERYWHERE}")


class ArrowSystemPool(WorkerPlugin):
    """Worker plugin: Arrow buffers from the system allocator, so freed memory goes back to the OS.

    pyarrow's default pool (mimalloc) keeps freed pages; Dask counts them as unmanaged
    memory, pauses a worker at 80% of its limit, and when every worker is paused the
    job waits forever. Seen with 2 x 600 MiB workers on 1M users (both paused, no progress);
    with this plugin that run finished. It lowers unmanaged memory, it does not remove it:
    workers still need ~500 MiB beyond their data (2 x 600 MiB hung again on 16M users).
    """

    name = "mailseg-arrow-system-pool"
    idempotent = True

    def setup(self, worker) -> None:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


class QuickProcessExit(WorkerPlugin):
    """Worker plugin: a worker process that is closing exits without collecting its heap first.

    A spawned worker process ends like any Python program: a last garbage collection over every object its
    imports left (scikit-learn, scipy, pandas, Dask), ~1 s on a slow 2-core machine, and the nanny and
    the job wait for it (closing a 2-worker LocalCluster: 1.0-1.3 s with it, 0.12-0.16 s without).
    Only a worker run by a nanny is frozen, and only when it closes: its process ends next; a worker in the
    caller's own process (a threads-only cluster) or a plugin merely removed leaves the heap alone."""

    name = "mailseg-quick-process-exit"
    idempotent = True

    def teardown(self, worker) -> None:
        from distributed.core import Status

        if worker.nanny and worker.status in (Status.closing, Status.closing_gracefully):
            gc.freeze()


def _prepare_client(client, ccfg: dict, remote: bool) -> None:
    if remote:
        _check_worker_versions(client)
    client.register_plugin(ArrowSystemPool())
    client.register_plugin(QuickProcessExit())
    progress.configure(ccfg["progress"])


@contextlib.contextmanager
def _cluster_failures(address: str) -> Iterator[None]:
    """A task that killed its workers, or a lost scheduler, ends the job as a cluster error (exit 4)."""
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    try:
        yield
    except KilledWorker as exc:
        raise ClusterError(f"{address}: a task killed every worker that ran it (out of memory?): "
                           f"{_first_line(exc)}") from None
    except CommClosedError as exc:
        raise ClusterError(f"{address}: lost the connection to the Dask scheduler ({_first_line(exc)})") from None


def worker_environ(ccfg: dict) -> dict:
    """Environment of the LocalCluster's worker processes: Dask's own (one BLAS thread each, malloc
    trimmed at once) with cluster.malloc_trim_threshold / malloc_mmap_threshold in place of Dask's malloc
    setting when they are set (see conf/base.yaml: the kernel's page faults were 29% of a 10M run's CPU)."""
    from dask.utils import parse_bytes

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    for key, name in (("malloc_trim_threshold", "MALLOC_TRIM_THRESHOLD_"),
                      ("malloc_mmap_threshold", "MALLOC_MMAP_THRESHOLD_")):
        if ccfg.get(key) is not None:
            env[name] = parse_bytes(ccfg[key])
    return env


@contextlib.contextmanager
def _environ_kept(names) -> Iterator[None]:
    """This process's environment as it was: a Nanny writes its workers' variables into its own process's
    os.environ before spawning them, and they would leak into the next cluster this process starts."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def open_client(ccfg: dict, address: str | None = None) -> Iterator:
    """Yield a distributed Client; raise UsageError (exit 2) or ClusterError (exit 4) when it cannot be used."""
    from distributed import Client, LocalCluster

    address = scheduler_address(ccfg, address)
    if address:
        _check_address(address)
        security = _security(ccfg, address)
        try:
            client = Client(address, timeout=ccfg["connect_timeout"], security=security)
        except (OSError, TimeoutError) as exc:
            raise _connect_error(address, ccfg["connect_timeout"], exc) from None
        with client, _cluster_failures(address):
            _prepare_client(client, ccfg, remote=True)
            log.info("connected to %s: %d workers (dashboard %s)", address,
                     len(client.scheduler_info(n_workers=-1)["workers"]), client.dashboard_link or "off")
            yield client
        return
    environ = worker_environ(ccfg)
    with _environ_kept([*environ, "PYTHONHASHSEED"]):
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=ccfg["n_workers"], threads_per_worker=ccfg["threads_per_worker"],
                                   memory_limit=ccfg["memory_limit"], host="127.0.0.1",
                                   # The HTTP server (health, metrics) runs even without the dashboard: loopback.
                                   dashboard_address="127.0.0.1:0",
                                   scheduler_kwargs={"dashboard": bool(ccfg["dashboard"])},
                                   silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client, _cluster_failures(cluster.scheduler_address):
            _prepare_client(client, ccfg, remote=False)
            log.info("LocalCluster of %d workers (dashboard %s)", ccfg["n_workers"],
                     client.dashboard_link if ccfg["dashboard"] else "off")
            yield client
