"""Running the installed `mailseg` command in tests, and reading back what it wrote.

One copy for every end-to-end test module (test_cli, test_score, test_reliability,
test_update, test_storage_cli); test_cluster and test_client run `python -m jobs.cli`
instead, to control the environment Dask sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

MAILSEG = shutil.which("mailseg") or str(Path(sys.executable).parent / "mailseg")


def mailseg(*args, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([MAILSEG, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_json_last_line(proc: subprocess.CompletedProcess) -> dict:
    """The --json contract: the last stdout line is a JSON object and no other line is one."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no stdout; stderr: {proc.stderr}"
    summary = json.loads(lines[-1])
    assert isinstance(summary, dict)
    for line in lines[:-1]:
        with pytest.raises(ValueError):
            json.loads(line)
    return summary


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailseg: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def write_config(path: Path, overrides: dict) -> Path:
    path.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_users(folder: Path, columns=None) -> pd.DataFrame:
    return pq.read_table(folder, columns=columns).to_pandas()
