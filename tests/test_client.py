"""open_client and RunMonitor: where the job runs, what is refused at the door, what the summary says."""

from __future__ import annotations

import importlib.util
import os
import signal
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import dask
import pytest
from cluster_helpers import free_port, make_tls_files

from mailseg_dist.core import client as client_mod
from mailseg_dist.core.client import (
    open_client,
    package_versions,
    scheduler_address,
    version_mismatches,
)
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import ClusterError, UsageError
from mailseg_dist.core.monitor import RunMonitor


def ccfg(**overrides) -> dict:
    """The committed cluster section (so a new key cannot be missed here), small, with overrides."""
    base = {**load_config()["cluster"], "scheduler": None, "n_workers": 1, "threads_per_worker": 1,
            "memory_limit": "1GiB", "connect_timeout": 10, "dashboard": True}
    return {**base, **overrides}


# --------------------------------------------------------------------------- the address
def test_address_precedence_flag_then_config_then_dask_setting():
    with dask.config.set({"scheduler-address": "tcp://from-dask:1"}):
        assert scheduler_address(ccfg(scheduler="tcp://from-config:2"), "tcp://from-flag:3") == "tcp://from-flag:3"
        assert scheduler_address(ccfg(scheduler="tcp://from-config:2"), None) == "tcp://from-config:2"
        assert scheduler_address(ccfg(), None) == "tcp://from-dask:1"
    with dask.config.set({"scheduler-address": None}):
        assert scheduler_address(ccfg(), None) is None


def test_dask_scheduler_address_env_maps_to_the_dask_setting():
    collected = dask.config.collect(paths=[], env={"DASK_SCHEDULER_ADDRESS": "tcp://from-env:4"})
    with dask.config.set(collected):
        assert scheduler_address(ccfg(), None) == "tcp://from-env:4"


def _cli(args, env_address=None, tmp_path=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    if env_address:
        env["DASK_SCHEDULER_ADDRESS"] = env_address
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_cli_uses_env_address_unless_the_flag_gives_one(tmp_path):
    """End to end: each run fails to connect, and its one-line error names the address it tried."""
    (tmp_path / "c.yaml").write_text("cluster: {connect_timeout: 1}\n")
    (tmp_path / "u.csv").write_text("Id,send\n1,1\n")
    env_address, flag_address = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    common = ["run", "u.csv", "--config", "c.yaml", "--out", "out", "--data-dir", "data"]
    from_env = _cli(common, env_address, tmp_path)
    from_flag = _cli([*common, "--scheduler", flag_address], env_address, tmp_path)
    assert from_env.returncode == 4 and env_address in from_env.stderr, from_env.stderr
    assert from_flag.returncode == 4 and flag_address in from_flag.stderr and env_address not in from_flag.stderr


@pytest.mark.parametrize("address", ["http://127.0.0.1:8786", "udp://127.0.0.1:1"])
def test_unknown_protocol_is_a_usage_error(address):
    with pytest.raises(UsageError, match="tcp://HOST:PORT or tls://HOST:PORT"):
        with open_client(ccfg(), address):
            pass


def test_unreachable_scheduler_is_a_cluster_error():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler within 1 s") as info:
        with open_client(ccfg(connect_timeout=1), address):
            pass
    assert address in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- TLS settings
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_cfg(files: dict, **overrides) -> dict:
    return ccfg(tls_ca_file=files["ca"], tls_cert=files["cert"], tls_key=files["key"], **overrides)


def test_tls_security_from_config(tls_files):
    security = client_mod._security(tls_cfg(tls_files), "tls://127.0.0.1:8786")
    assert security.require_encryption is True
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == \
        (tls_files["ca"], tls_files["cert"], tls_files["key"])
    assert client_mod._security(ccfg(), "tcp://127.0.0.1:8786") is None


@pytest.mark.parametrize("missing", ["tls_ca_file", "tls_cert", "tls_key"])
def test_tls_address_needs_all_three_files(tls_files, missing):
    cfg = {**tls_cfg(tls_files), missing: None}
    with pytest.raises(UsageError, match="needs cluster.tls_ca_file, tls_cert and tls_key"):
        client_mod._security(cfg, "tls://127.0.0.1:8786")


def test_tls_file_that_does_not_exist_is_named(tls_files, tmp_path):
    cfg = {**tls_cfg(tls_files), "tls_key": str(tmp_path / "nope.pem")}
    with pytest.raises(UsageError, match=r"cluster.tls_key: .*nope.pem is not a readable file"):
        client_mod._security(cfg, "tls://127.0.0.1:8786")


def test_tls_files_with_a_plain_address_are_refused(tls_files):
    with pytest.raises(UsageError, match="must start with tls://"):
        client_mod._security(tls_cfg(tls_files), "tcp://127.0.0.1:8786")


def test_connect_errors_say_what_went_wrong():
    from distributed.comm.core import CommClosedError

    reset = client_mod._connect_error("tcp://h:1", 3, CommClosedError("in <TCP>: ConnectionResetError"))
    handshake = client_mod._connect_error("tls://h:1", 3, ssl.SSLError(1, "[SSL] certificate verify failed"))
    timeout = client_mod._connect_error("tcp://h:1", 3, OSError("Timed out trying to connect to tcp://h:1"))
    assert "closed the connection during the handshake" in str(reset) and "tls://" in str(reset)
    assert "TLS handshake failed" in str(handshake)
    assert "cannot reach the Dask scheduler within 3 s" in str(timeout)
    assert all(isinstance(e, ClusterError) and e.exit_code == 4 for e in (reset, handshake, timeout))


# --------------------------------------------------------------------------- versions
def test_version_mismatches_lists_each_difference():
    ours = {"python": "3.11", "pandas": "3.1.1", "pyarrow": "26.0.1"}
    workers = {"tcp://a:1": dict(ours), "tcp://b:2": {**ours, "pandas": "3.0.0", "pyarrow": None}}
    assert version_mismatches(ours, workers) == ["worker tcp://b:2: pandas 3.1.1 here, 3.0.0 on the worker",
                                                 "worker tcp://b:2: pyarrow 26.0.1 here, not installed on the worker"]
    assert version_mismatches(ours, {"tcp://a:1": dict(ours)}) == []


def test_package_versions_cover_what_must_match():
    versions = package_versions()
    assert versions["python"] == "%d.%d" % sys.version_info[:2]
    for name in ("dask", "distributed", "pandas", "numpy", "scikit-learn", "pyarrow", "mailseg"):
        assert versions[name], name


# --------------------------------------------------------------------------- the LocalCluster
def _host(url: str) -> str:
    return urlparse(url).hostname


def _listening(pids) -> set[str]:
    """IP addresses that these processes accept connections on."""
    import psutil

    return {c.laddr.ip for pid in pids for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


@pytest.mark.cluster
@pytest.mark.parametrize("dashboard", [True, False])
def test_local_cluster_listens_on_loopback_only(dashboard):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_client(ccfg(n_workers=2, dashboard=dashboard)) as client:
            _check_loopback(client, dashboard)
    assert not [w for w in caught if "already in use" in str(w.message)]  # no fixed port (8787) tried


def _check_loopback(client, dashboard: bool) -> None:
    info = client.scheduler_info(n_workers=-1)
    assert _host(client.scheduler.address) == "127.0.0.1"
    if dashboard:
        assert _host(client.dashboard_link) == "127.0.0.1"
    assert len(info["workers"]) == 2
    for address, worker in info["workers"].items():
        assert _host(address) == "127.0.0.1" and _host(worker["nanny"]) == "127.0.0.1"
    worker_pids = list(client.run(os.getpid).values())
    # scheduler (this process), workers: every server socket, HTTP ones included, is on loopback
    assert _listening([os.getpid(), *worker_pids]) == {"127.0.0.1"}
    # every worker got the plugin that hands Arrow memory back to the OS
    import pyarrow as pa

    backends = client.run(lambda: pa.default_memory_pool().backend_name)
    assert set(backends.values()) == {"system"}
    plugins = client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert all(client_mod.QuickProcessExit.name in names for names in plugins.values())
    assert client.submit(sum, [1, 2, 3]).result() == 6


@pytest.mark.cluster
@pytest.mark.parametrize("trim, mmap", [("64MiB", 2**25), (None, None)], ids=["configured", "dask-default"])
def test_local_cluster_workers_get_the_malloc_thresholds_of_the_config(trim, mmap):
    with open_client(ccfg(n_workers=2, malloc_trim_threshold=trim, malloc_mmap_threshold=mmap)) as client:
        env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")))
    dask_trim = str(dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"])
    assert set(env.values()) == ({(str(2**26), str(2**25))} if trim else {(dask_trim, None)})
    assert len(env) == 2 and "MALLOC_MMAP_THRESHOLD_" not in os.environ  # only the workers' environment


@pytest.mark.parametrize("nanny, status, frozen", [
    ("tcp://127.0.0.1:1", "closing", True), ("tcp://127.0.0.1:1", "closing_gracefully", True),
    ("tcp://127.0.0.1:1", "running", False),  # the plugin removed from a worker that goes on
    (None, "closing", False),  # a worker in the caller's own process: its heap is the caller's
], ids=["closing", "closing-gracefully", "removed-while-running", "in-process"])
def test_quick_process_exit_freezes_the_heap_only_of_a_worker_process_that_is_closing(monkeypatch, nanny, status,
                                                                                       frozen):
    from types import SimpleNamespace

    from distributed.core import Status

    calls = []
    monkeypatch.setattr(client_mod.gc, "freeze", lambda: calls.append(1))
    client_mod.QuickProcessExit().teardown(SimpleNamespace(nanny=nanny, status=Status[status]))
    assert calls == ([1] if frozen else [])


def test_background_imports_load_the_modules_and_ignore_one_that_fails():
    code = ("import sys; from mailseg_dist.core.warm import import_in_background; "
            "import_in_background(('json.tool', 'no_such_module_here', 'xml.dom.minidom')).join(30); "
            "print(sorted(m for m in ('json.tool', 'xml.dom.minidom', 'no_such_module_here') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['json.tool',", "'xml.dom.minidom']"] and not done.stderr


def test_what_runs_before_the_cluster_starts_leaves_the_heavy_imports_to_the_background_thread():
    """The CLI and the API modules a job imports before its cluster starts must not import what
    core/warm.py imports in the background (the cluster start would wait for it), and the job's
    own start imports distributed before that thread (both touch dask's modules)."""
    heavy = ("dask.dataframe", "sklearn", "matplotlib")
    code = ("import sys; import jobs.cli, jobs.commands, mailseg_dist.api, mailseg_dist.workflows.run, "
            "mailseg_dist.workflows.job, mailseg_dist.inputs.readers, mailseg_dist.inputs.ingest; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    from mailseg_dist.core import warm

    assert set(heavy) <= {name.split(".")[0] if name.startswith(("sklearn", "matplotlib")) else name
                          for name in warm.JOB_MODULES}
    source = (Path(__file__).parents[1] / "mailseg_dist" / "workflows" / "job.py").read_text()
    assert source.index("import mailseg_dist.core.client") < source.index("import_in_background()")


# --------------------------------------------------------------------------- RunMonitor
@pytest.mark.cluster
def test_monitor_counts_a_worker_that_died_even_when_the_nanny_replaced_it():
    with open_client(ccfg(n_workers=2)) as client:
        with RunMonitor(client) as monitor:
            victim = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the nanny starts a new worker, at a new address
                workers = set(client.scheduler_info(n_workers=-1)["workers"])
                if victim not in workers and len(workers) == 2:
                    break
                time.sleep(0.1)
            report = monitor.report()
    assert report["workers_lost"] == 1 and report["lost_workers"] == [victim]
    assert report["workers_start"] == 2 and report["workers_end"] == 2


@pytest.mark.cluster
def test_monitor_of_a_quiet_run_reports_no_loss():
    with open_client(ccfg()) as client, RunMonitor(client) as monitor:
        assert client.submit(abs, -2).result() == 2
        report = monitor.report()
    assert report["workers_lost"] == 0 and report["lost_workers"] == [] and report["performance_report"] is None
    assert _host(report["scheduler"]) == "127.0.0.1"


def test_profile_without_bokeh_is_refused_before_the_run(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bokeh" else real(name, *a))

    class LocalClient:  # a client whose scheduler runs in this process (a LocalCluster's)
        cluster = object()

    with pytest.raises(UsageError, match="--profile needs the bokeh package"):
        with RunMonitor(LocalClient(), tmp_path / "p.html"):
            pass
    assert not (tmp_path / "p.html").exists()
