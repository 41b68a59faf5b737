"""Real Dask processes for the cluster tests: a scheduler and workers on 127.0.0.1, and TLS material.

Every process is started in its own session (its own process group), so that
one worker — the nanny and the worker process it spawned — can be killed at once
with os.killpg, and so that teardown reaches every child even after a failure.
Nothing listens beyond loopback: the HTTP servers that dask starts even with
--no-dashboard (health, metrics) are bound to 127.0.0.1 too. This file is also
loaded into the scheduler and each nanny (`dask_setup`): if the test process dies
without tearing down (SIGKILL, a timeout), they kill their own group instead of
living on as orphans.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
GUARD = ["--preload", str(Path(__file__).resolve())]
START_TIMEOUT = 60  # seconds for the scheduler file / workers to appear; generous for a loaded 2-core machine


def free_port() -> int:
    """A port that nothing listens on right now (bound then released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def dask_cli() -> list[str]:
    """The `dask` command of this interpreter (the one the tests and `mailseg` run with)."""
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


def tls_args(tls: dict | None) -> list[str]:
    if not tls:
        return []
    return ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]


class DaskProcesses:
    """A scheduler and `n_workers` worker processes; `close()` always stops all of them.

    Logs go to files in `folder` (scheduler.log, worker-<i>.log) so that a test can
    check them and a failure can be diagnosed. `dask` is the command that starts them
    (default: this interpreter's); tests/test_wheel.py passes another environment's.
    """

    def __init__(self, folder: Path, n_workers: int = 2, memory_limit: str = "1GiB", tls: dict | None = None,
                 worker_args: tuple[str, ...] = (), dask: list[str] | None = None):
        self.folder = Path(folder)
        self.dask = list(dask) if dask else dask_cli()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.procs: dict[str, subprocess.Popen] = {}
        self.address = ""
        try:
            self.address = self._start_scheduler()
            for i in range(n_workers):
                self.start_worker(i, memory_limit, worker_args)
            self.wait_for_workers(n_workers)
        except BaseException:
            self.close()
            raise

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DASK_SCHEDULER_ADDRESS", None)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.folder, env=env)
        log.close()  # the child holds its own copy
        self.procs[name] = proc
        return proc

    def _start_scheduler(self) -> str:
        scheduler_file = self.folder / "scheduler.json"
        protocol = "tls" if self.tls else "tcp"
        self._spawn("scheduler", [*self.dask, "scheduler", "--host", LOOPBACK, "--port", "0",
                                  "--protocol", protocol, "--no-dashboard",
                                  "--dashboard-address", f"{LOOPBACK}:0", "--scheduler-file", str(scheduler_file),
                                  *GUARD, *tls_args(self.tls)])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.procs["scheduler"].poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {self.log('scheduler')[-2000:]}")
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        raise TimeoutError(f"dask scheduler did not write {scheduler_file}: {self.log('scheduler')[-2000:]}")

    def start_worker(self, i: int, memory_limit: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        return self._spawn(f"worker-{i}", [
            *self.dask, "worker", self.address, "--nthreads", "1", "--memory-limit", memory_limit,
            "--host", LOOPBACK, "--no-dashboard", "--dashboard-address", f"{LOOPBACK}:0",
            "--local-directory", str(self.folder / f"worker-{i}-space"), "--name", f"worker-{i}",
            "--preload-nanny", GUARD[1], *tls_args(self.tls), *extra])

    def client(self, timeout: float = 30):
        from distributed import Client

        return Client(self.address, timeout=timeout, security=self.security())

    def security(self):
        if not self.tls:
            return None
        from distributed.security import Security

        return Security(tls_ca_file=self.tls["ca"], tls_client_cert=self.tls["cert"],
                        tls_client_key=self.tls["key"], require_encryption=True)

    def wait_for_workers(self, n: int) -> None:
        with self.client(timeout=START_TIMEOUT) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_worker(self, i: int) -> None:
        """SIGKILL the worker's whole process group: nanny and worker die together, nothing restarts it."""
        os.killpg(self.procs[f"worker-{i}"].pid, signal.SIGKILL)

    def close(self) -> None:
        """SIGTERM every group, then SIGKILL what is still alive after a grace period."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # also reaches children of an already-exited leader
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> "DaskProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def dask_setup(server) -> None:
    """Preload hook of the scheduler and nannies: when the process that started us dies, kill our group."""
    import threading

    parent = os.getppid()

    def guard() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=guard, name="orphan-guard", daemon=True).start()


# --- TLS material -------------------------------------------------------------------------------


def make_tls_files(folder: Path) -> dict:
    """A throw-away CA and one certificate (for 127.0.0.1 / localhost) signed by it, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailseg test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailseg-dask")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {name: str(path) for name, path in paths.items()}
