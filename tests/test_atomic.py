"""Write-then-rename helpers and the output-folder lock: a failure leaves the previous version."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from mailseg_dist.core.atomic import (
    atomic_dir,
    atomic_path,
    folder_lock,
    write_json,
    write_text,
)
from mailseg_dist.core.errors import UsageError


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_path_replaces_on_success(tmp_path):
    final = tmp_path / "sub" / "model.bin"  # the folder is created
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final and not final.exists()
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and leftovers(final.parent) == []


def test_atomic_path_keeps_the_old_version_on_failure(tmp_path):
    final = tmp_path / "report.txt"
    write_text(final, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert final.read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "never.txt") as tmp:
            tmp.write_text("x")
            raise RuntimeError("boom")
    assert not (tmp_path / "never.txt").exists() and leftovers(tmp_path) == []


def test_write_json_is_readable_and_keeps_accents(tmp_path):
    final = tmp_path / "m.json"
    write_json(final, {"ciudad": "Málaga", "n": 3, "path": tmp_path})
    assert json.loads(final.read_text(encoding="utf-8")) == {"ciudad": "Málaga", "n": 3, "path": str(tmp_path)}
    assert "Málaga" in final.read_text(encoding="utf-8")


def test_atomic_dir_swaps_a_whole_folder(tmp_path):
    final = tmp_path / "users"
    with atomic_dir(final) as tmp:
        (tmp / "part-0.parquet").write_text("v1")
        (tmp / "part-1.parquet").write_text("v1")
    with atomic_dir(final) as tmp:
        assert not list(tmp.iterdir())  # starts empty, not as a copy of the old version
        (tmp / "part-0.parquet").write_text("v2")
    assert [(p.name, p.read_text()) for p in final.iterdir()] == [("part-0.parquet", "v2")]
    assert leftovers(tmp_path) == []


def test_atomic_dir_keeps_the_old_folder_on_failure(tmp_path):
    final = tmp_path / "users"
    with atomic_dir(final) as tmp:
        (tmp / "part-0.parquet").write_text("old")
    with pytest.raises(ValueError):
        with atomic_dir(final) as tmp:
            (tmp / "part-0.parquet").write_text("new")
            raise ValueError("clean failed")
    assert [(p.name, p.read_text()) for p in final.iterdir()] == [("part-0.parquet", "old")]
    assert leftovers(tmp_path) == []


def test_atomic_dir_clears_leftovers_of_a_killed_run(tmp_path):
    final = tmp_path / "users"
    stale = tmp_path / ".users.abc123.tmpdir"
    stale.mkdir()
    (stale / "part-0.parquet").write_text("half")
    other = tmp_path / ".rejects.abc123.tmpdir"  # another folder's leftovers are not ours to remove
    other.mkdir()
    with atomic_dir(final) as tmp:
        (tmp / "x").write_text("1")
    assert leftovers(tmp_path) == [".rejects.abc123.tmpdir"]


def test_folder_lock_refuses_a_second_holder_naming_the_pid(tmp_path):
    with folder_lock(tmp_path, "mailseg run") as lock:
        holder = json.loads(lock.read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname(), "command": "mailseg run"}
        with pytest.raises(UsageError) as err:
            with folder_lock(tmp_path, "mailseg score"):
                pass
        message = str(err.value)
        assert f"pid {os.getpid()}" in message and "'mailseg run'" in message and str(lock) in message
        assert lock.exists()  # the refused job did not remove the holder's lock
    assert not lock.exists()
    with folder_lock(tmp_path, "again"):  # free again once released
        pass


def test_folder_lock_is_released_when_the_job_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "mailseg run"):
            raise RuntimeError("job failed")
    assert not (tmp_path / ".mailseg.lock").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_folder_lock_recovers_a_stale_lock_from_a_dead_pid(tmp_path):
    lock = tmp_path / ".mailseg.lock"
    pid = _dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "killed run"}))
    with folder_lock(tmp_path, "mailseg run") as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert not lock.exists()


@pytest.mark.parametrize("holder", [
    {"pid": 1, "host": "another-host", "command": "mailseg run"},   # cannot tell from here whether it lives
    {"pid": os.getpid(), "host": socket.gethostname(), "command": "mailseg run"},  # alive
    "not json at all",
])
def test_folder_lock_does_not_steal_a_live_or_unknown_lock(tmp_path, holder):
    lock = tmp_path / ".mailseg.lock"
    lock.write_text(holder if isinstance(holder, str) else json.dumps(holder))
    with pytest.raises(UsageError, match="locked by another mailseg job"):
        with folder_lock(tmp_path, "mailseg run"):
            pass
    assert lock.exists()
