"""Write-then-rename helpers and the output-folder lock.

Every output is written beside its final name and renamed into place, so a
crash leaves the previous complete version or none, never half a file. In an
object store a file is uploaded whole in one PUT (a reader sees the old or the
new object); a folder cannot be swapped at once there, so a folder's readers
rely on the commit mark written after it (a month's manifest, run_summary.json).
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
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location, is_remote, remove_tree

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


@contextlib.contextmanager
def atomic_path(final, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary local path; on success it becomes `final` (renamed, or uploaded to a store)."""
    final = as_location(final)
    if is_remote(final):
        with _upload_on_success(final, suffix) as tmp:
            yield tmp
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale, _ in _dead_leftovers(final):
        remove_tree(stale)
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


@contextlib.contextmanager
def _upload_on_success(final, suffix: str) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix="mailseg-", suffix=suffix + ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        final.fs.put_file(tmp, final.path)  # one object, complete when the upload completes
    finally:
        Path(tmp).unlink(missing_ok=True)


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
def atomic_dir(final) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; swap it in on success.

    The old folder is moved aside first and removed after the swap, so a kill
    at any point leaves either the old or the new complete folder in place
    (plus, at worst, a hidden leftover that the next write removes). A kill
    between the swap's two renames leaves no folder; the next write of the
    same folder puts the old one back first (`_recover_dir`).
    """
    final = as_location(final)
    if is_remote(final):
        with _stored_dir(final) as tmp:
            yield tmp
        return
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


@contextlib.contextmanager
def _stored_dir(final) -> Iterator:
    """A store's folder is a key prefix, with no rename: the new version is written under a hidden
    prefix, copied over the old one object by object, and only then are the old version's
    leftover objects removed. A copy that fails keeps the hidden prefix (the whole new version),
    so no failure loses both versions."""
    for stale, _ in _dead_leftovers(final):
        remove_tree(stale)
    tmp = final.parent / f".{final.name}.{_owner_tag()}.{secrets.token_hex(6)}.tmpdir"
    try:
        yield tmp
    except BaseException:
        remove_tree(tmp)  # nothing was published: the old version is untouched
        raise
    _publish_objects(tmp, final)
    remove_tree(tmp)


def _publish_objects(tmp, final) -> None:
    fs = final.fs
    keys = fs.find(tmp.path)  # the objects, listed after every writer finished
    published = [final.path + key[len(tmp.path):] for key in keys]
    if keys:
        fs.copy(keys, published)  # server-side copies
    replaced = set(published)
    outdated = [key for key in fs.find(final.path) if key not in replaced]
    if outdated:
        fs.rm(outdated)


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
            remove_tree(path)


@contextlib.contextmanager
def folder_lock(folder, command: str) -> Iterator:
    """Exclusive lock on an output folder; a second job is told who holds it."""
    folder = as_location(folder)
    if not is_remote(folder):
        folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".mailseg.lock"
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
    while not _create_exclusive(lock, json.dumps(holder)):
        try:
            other = json.loads(lock.read_text())
        except (OSError, ValueError):
            other = {}
        if other.get("host") == holder["host"] and other.get("pid") and not _alive(other["pid"]):
            remove_tree(lock)  # left by a killed job on this host
            continue
        raise UsageError(
            f"{folder}: locked by another mailseg job (pid {other.get('pid', '?')} on "
            f"{other.get('host', '?')}, '{other.get('command', '?')}'); wait for it or remove {lock}")
    try:
        yield lock
    finally:
        remove_tree(lock)


def _create_exclusive(lock, text: str) -> bool:
    """Create `lock` holding `text` unless it exists: O_EXCL on a disk, a conditional PUT in a store."""
    try:
        if is_remote(lock):
            with lock.fs.open(lock.path, "xb") as handle:
                handle.write(text.encode())
        else:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    except FileExistsError:
        return False
    return True


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
