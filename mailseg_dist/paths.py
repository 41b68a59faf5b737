"""Catalog paths from config, and the checks that keep them inside their folders."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from .errors import UsageError

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def local_path(value: str | Path, what: str) -> Path:
    """A path flag or config value as an absolute local path; file:// URLs are local paths too.

    Other fsspec protocols (s3://, gs://, abfs://) are refused rather than half supported: outputs
    are made whole by renaming in place, which object stores do not offer. Mount the storage instead.
    """
    text = str(value)
    match = _URL.match(text)
    if match is None:
        return Path(text).absolute()
    if match.group(1).lower() != "file":
        raise UsageError(f"{what} {text}: {match.group(1)}:// storage is not supported; give a local path "
                         "or file:// URL to storage every worker mounts at the same path")
    from urllib.parse import unquote, urlparse

    parsed = urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise UsageError(f"{what} {text}: a file:// URL names a local path (file:///path), found host {parsed.netloc!r}")
    return Path(unquote(parsed.path)).absolute()


def check_month(month: str) -> str:
    """A month string is YYYY-MM and nothing else, so it can never climb out of a folder."""
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise UsageError(f"month expected YYYY-MM (e.g. 2026-11), found {month!r}")
    return month


def current_month() -> str:
    return _dt.date.today().strftime("%Y-%m")


class Catalog:
    """Every artifact's location, derived from the `paths` section of the config."""

    def __init__(self, cfg: dict, data_dir: str | None = None, out_dir: str | None = None):
        paths = cfg["paths"]
        self.data_dir = local_path(data_dir or paths["data_dir"], "data folder")
        self.out_dir = local_path(out_dir or paths["out_dir"], "output folder")
        self._paths = paths

    def _month_dir(self, subdir: str, month: str) -> Path:
        return self.data_dir / self._paths[subdir] / f"month={check_month(month)}"

    def raw(self, month: str) -> Path:
        return self._month_dir("raw_subdir", month)

    def users(self, month: str) -> Path:
        return self._month_dir("users_subdir", month)

    def rejects(self, month: str) -> Path:
        return self._month_dir("rejects_subdir", month)

    def manifest(self, month: str) -> Path:
        return self.data_dir / self._paths["manifests_subdir"] / f"month={check_month(month)}.json"

    def months(self) -> list[str]:
        """Months with a clean users layer, oldest first."""
        root = self.data_dir / self._paths["users_subdir"]
        found = [p.name.split("=", 1)[1] for p in root.glob("month=*") if p.is_dir()]
        return sorted(m for m in found if _MONTH.match(m))

    def default_input(self) -> Path:
        return local_path(self._paths["default_input"], "paths.default_input")
