"""A local S3 for the object-store tests: moto's server process on 127.0.0.1, nothing beyond loopback.

The server runs in its own session so teardown reaches it even after a failure.
`S3Server.env` holds what a client or worker process needs to reach it: the
endpoint and throwaway credentials (the same variables a real deployment sets).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import s3fs
from cluster_helpers import LOOPBACK, free_port

from mailseg_dist.core.storage import open_parquet

START_TIMEOUT = 60


class S3Server:
    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "mailseg-test",
                    "AWS_SECRET_ACCESS_KEY": "mailseg-test", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError(f"moto server did not listen on {self.endpoint} within {START_TIMEOUT} s")

    def new_bucket(self) -> str:
        """A fresh, empty bucket; returns its s3:// URL."""
        name = f"mailseg-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(endpoint_url=self.endpoint, key=self.env["AWS_ACCESS_KEY_ID"],
                          secret=self.env["AWS_SECRET_ACCESS_KEY"]).mkdir(name)
        return f"s3://{name}"

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def store_fs() -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def download(url: str, dest: Path) -> list[str]:
    """Copy every object under `url` into `dest`; returns their names relative to `url`, sorted."""
    fs, prefix = store_fs(), url.removeprefix("s3://")
    names = sorted(key[len(prefix) + 1:] for key in fs.find(prefix))
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{prefix}/{name}", str(dest / name))
    return names


def read_parquet_table(path):
    """One Parquet file (local or stored) as a pyarrow Table."""
    with open_parquet(path) as parquet:
        return parquet.read()
