"""Write-then-rename helpers and the output-folder lock.

Every output is written beside its final name and renamed into place, so a
crash leaves the previous complete version or none, never half a file.
Temporary names are hidden (leading dot, .tmp/.tmpdir suffix) and carry the
writer's pid and host: the next write of the same output removes the
leftovers of writers that are dead, never those of a live concurrent job.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UsageError

# After ".<final name>.": optional "old." (a folder moved aside), optional "<pid>@<host>." (its writer;
# absent in names made before the tag existed), mkstemp's random part, the caller's suffix, .tmp/.tmpdir.
_TEMP_REST = re.compile(r"^(old\.)?(?:(\d+)@([A-Za-z0-9-]+)\.)?[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?\.tmp(dir)?$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _owner_tag() -> str:
    return f"{os.getpid()}@{_host()}"


def _dead_leftovers(final: Path) -> list[tuple[Path, bool]]:
    """Temporaries of `final` whose writer is gone, as (path, is a moved-aside old version)."""
    head = f".{final.name}."
    found = []
    for path in final.parent.glob(f".{glob.escape(final.name)}.*"):
        match = _TEMP_REST.match(path.name[len(head):])
        if match is None:
            continue
        old, pid, host = match.group(1), match.group(2), match.group(3)
        if pid is not None and (host != _host() or _alive(int(pid))):
            continue  # a live writer's, or another host's that we cannot check
        found.append((path, old is not None))
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to `final` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale, _ in _dead_leftovers(final):
        _remove(stale)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{_owner_tag()}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary permissions
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(final: str | Path, data: object) -> None:
    write_text(final, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; swap it in on success.

    The old folder is moved aside first and removed after the swap, so a kill
    at any point leaves either the old or the new complete folder in place
    (plus, at worst, a hidden leftover that the next write removes). A kill
    between the swap's two renames leaves no folder; the next write of the
    same folder puts the old one back first (`_recover_dir`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover_dir(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_owner_tag()}.", suffix=".tmpdir", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.{_owner_tag()}.", suffix=".tmpdir",
                                        dir=final.parent))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _recover_dir(final: Path) -> None:
    """Remove dead writers' leftovers; first put back an old version cut off mid-swap.

    A kill between the swap's two renames leaves no `final`, the previous
    version moved aside and the new one still under its temporary name; the
    previous one is known complete, so it goes back into place.
    """
    leftovers = _dead_leftovers(final)
    if not final.exists():
        for path, is_old in leftovers:
            if is_old and path.is_dir():
                os.replace(path, final)
                break
    for path, _ in leftovers:
        if path.exists():
            _remove(path)


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Exclusive lock on an output folder; a second job is told who holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".mailseg.lock"
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            if other.get("host") == holder["host"] and other.get("pid") and not _alive(other["pid"]):
                lock.unlink(missing_ok=True)  # left by a killed job on this host
                continue
            raise UsageError(
                f"{folder}: locked by another mailseg job (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, '{other.get('command', '?')}'); wait for it or remove {lock}"
            ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process not yet reaped by its parent still answers kill(pid, 0), but it writes nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux) or gone: kill(pid, 0) already answered
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
