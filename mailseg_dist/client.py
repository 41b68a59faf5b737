"""Where the job runs: a loopback LocalCluster by default, or an existing scheduler by address.

The job opens the client with `open_client` and closes it; library stages only
receive it. An address comes from --scheduler, then cluster.scheduler in the
config, then Dask's own `scheduler-address` setting (DASK_SCHEDULER_ADDRESS).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import dask

from .errors import ClusterError, UsageError

log = logging.getLogger("mailseg")


def scheduler_address(ccfg: dict, flag: str | None = None) -> str | None:
    return flag or ccfg["scheduler"] or dask.config.get("scheduler-address", None)


def _security(ccfg: dict, address: str):
    files = [ccfg["tls_ca_file"], ccfg["tls_cert"], ccfg["tls_key"]]
    if not address.startswith("tls://"):
        return None
    if not all(files):
        raise UsageError(f"{address}: a tls:// scheduler needs cluster.tls_ca_file, tls_cert and tls_key in the config")
    from distributed.security import Security

    return Security(tls_ca_file=files[0], tls_client_cert=files[1], tls_client_key=files[2], require_encryption=True)


@contextlib.contextmanager
def open_client(ccfg: dict, address: str | None = None) -> Iterator:
    """Yield a distributed Client; raise ClusterError (exit 4) when it cannot connect."""
    from distributed import Client, LocalCluster

    address = scheduler_address(ccfg, address)
    if address:
        try:
            client = Client(address, timeout=ccfg["connect_timeout"], security=_security(ccfg, address))
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"{address}: cannot reach the Dask scheduler within "
                               f"{ccfg['connect_timeout']} s ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        with client:
            log.info("connected to %s (dashboard %s)", address, client.dashboard_link)
            yield client
        return
    cluster = LocalCluster(n_workers=ccfg["n_workers"], threads_per_worker=ccfg["threads_per_worker"],
                           memory_limit=ccfg["memory_limit"], host="127.0.0.1",
                           dashboard_address="127.0.0.1:0" if ccfg["dashboard"] else None,
                           silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        log.info("LocalCluster of %d workers (dashboard %s)", ccfg["n_workers"], client.dashboard_link)
        yield client
