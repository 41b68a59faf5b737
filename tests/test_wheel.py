"""mailseg as users install it: the wheel, in a fresh virtual environment, run from an empty folder.

The wheel is built from a clean copy of the checkout (the files git sees, so no
stale build/ leftovers can hide a missing module) and its file list is checked. It
is then installed, not editable, into a new venv that gets every dependency
itself (from PyPI or pip's cache; no access to this interpreter's packages), and
that venv's `mailseg` runs from an empty folder: on the default LocalCluster,
with a conf/local.yaml in that folder, and on a `dask scheduler` + 2 `dask worker`
processes started from the same venv, so the workers import mailseg from the
wheel, never from the checkout. The venv is built once for the module (~20 s
with a warm pip cache on an idle machine) and removed afterwards (it holds ~900 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import one_json_last_line
from cluster_helpers import DaskProcesses

from mailseg_dist.core.version import __version__ as VERSION

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("core", "inputs", "model", "model/engines", "segments", "outputs", "workflows", "viewer")
ROWS = 3000
BUILD_TIMEOUT = 600     # seconds: the isolated build fetches setuptools once
INSTALL_TIMEOUT = 1800  # seconds: a cold pip cache downloads ~300 MB of wheels
RUN_TIMEOUT = 300
# Not part of the checkout's sources: never copied into the build folder (used when git is not available).
JUNK = {".git", "build", "dist", "__pycache__", ".venv", ".pytest_cache", ".hypothesis", ".ruff_cache",
        ".benchmarks", "data", "Resultados"}


def _env() -> dict:
    """This process's environment without anything that would let the venv see the checkout or a scheduler."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DASK_SCHEDULER_ADDRESS")}
    env.update(MPLBACKEND="Agg", PYTHONNOUSERSITE="1")
    return env


def _run(args, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)  # _ok() reports a failure with its output


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _source_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a clone plus the work in progress holds."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, check=True, timeout=60).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        names = [path.relative_to(root).as_posix() for path in root.rglob("*")
                 if not JUNK & set(path.relative_to(root).parts)
                 and not any(part.endswith(".egg-info") for part in path.parts)]
    return sorted(name for name in names if (root / name).is_file())


# --------------------------------------------------------------------------- fixtures
@dataclass
class Built:
    wheel: Path
    sources: list[str]


@dataclass
class Venv:
    root: Path
    python: Path
    mailseg: Path
    dask: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The wheel, built with `python -m build --wheel` from a clean copy of the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"
    sources = _source_files(CHECKOUT)
    for name in sources:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CHECKOUT / name, src / name)
    start = time.monotonic()
    _ok(_run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, src], cwd=base, timeout=BUILD_TIMEOUT))
    wheels = sorted(dist.glob("*.whl"))
    print(f"\n[wheel] built {[w.name for w in wheels]} from {len(sources)} files in {time.monotonic() - start:.1f} s")
    assert len(wheels) == 1, wheels
    return Built(wheels[0], sources)


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Venv:
    """A fresh venv with the wheel installed (not editable) and its dependencies resolved by pip."""
    root = tmp_path_factory.mktemp("venv") / "env"
    start = time.monotonic()
    _ok(_run([sys.executable, "-m", "venv", root], cwd=root.parent, timeout=300))
    made = time.monotonic()
    bin_dir = root / "bin"
    # --no-compile: halves the install (no .pyc for all of numpy, scipy, pandas...); imports compile what they use.
    _ok(_run([bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile",
              built.wheel], cwd=root.parent, timeout=INSTALL_TIMEOUT))
    print(f"\n[venv] python -m venv {made - start:.1f} s; pip install {built.wheel.name} "
          f"(with every dependency) {time.monotonic() - made:.1f} s")
    yield Venv(root, bin_dir / "python", bin_dir / "mailseg", bin_dir / "dask")
    shutil.rmtree(root, ignore_errors=True)


def _generate_and_run(venv: Venv, work: Path, *run_args) -> tuple[subprocess.CompletedProcess, dict]:
    """`mailseg generate` then `mailseg run users.csv --k 3 --json` from `work`, with the venv's mailseg."""
    start = time.monotonic()
    _ok(_run([venv.mailseg, "generate", "--rows", ROWS, "--out", "users.csv"], cwd=work))
    done = _ok(_run([venv.mailseg, "run", "users.csv", "--k", "3", "--json", *run_args], cwd=work))
    print(f"\n[run] mailseg generate + run {' '.join(map(str, run_args)) or '(LocalCluster)'} from {work}: "
          f"{time.monotonic() - start:.1f} s")
    return done, one_json_last_line(done)


@pytest.fixture(scope="module")
def local_run(venv, tmp_path_factory) -> dict:
    """The venv's mailseg, run from an empty folder on the default LocalCluster."""
    work = tmp_path_factory.mktemp("empty")
    assert not any(work.iterdir())
    _, summary = _generate_and_run(venv, work)
    return {"work": work, "summary": summary}


def _flat(outputs) -> list[str]:
    if isinstance(outputs, dict):
        return [path for value in outputs.values() for path in _flat(value)]
    return [outputs] if isinstance(outputs, str) else []


def _assert_outputs(work: Path, summary: dict, out_dir: str = "Resultados", data_dir: str = "data",
                    extra: frozenset = frozenset()) -> None:
    """Every output written, under folders created relative to `work`, and nothing else beside them."""
    assert {p.name for p in work.iterdir()} == {"users.csv", data_dir, out_dir, *extra}
    out = work / out_dir
    for name in ("resultados_clustering.xlsx", "modelo_clustering.pkl", "escalador.pkl", "informe.html",
                 "run_summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list((out / "usuarios").glob("*.parquet")), "no per-user results"
    for path in _flat(summary["outputs"]):
        assert Path(path).exists() and Path(path).is_relative_to(out), path
    assert Path(summary["parquet_path"]).is_relative_to(work / data_dir) and (work / data_dir).is_dir()
    assert Path(summary["input"]) == work / "users.csv"
    assert summary["rows_in"] == ROWS == summary["rows_kept"] + summary["rows_rejected"]
    assert summary["rows_reconciled"] is True
    assert sum(segment["users"] for segment in summary["segments"]) == summary["rows_kept"]
    on_disk = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    assert on_disk["rows_reconciled"] is True
    assert {k: on_disk[k] for k in ("rows_in", "rows_kept", "rows_rejected")} == \
        {k: summary[k] for k in ("rows_in", "rows_kept", "rows_rejected")}


# --------------------------------------------------------------------------- the wheel
def test_wheel_holds_every_subpackage_and_the_default_config_and_nothing_else(built):
    assert built.wheel.name == f"mailseg-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as whl:
        names = whl.namelist()
        dist_info = f"mailseg-{VERSION}.dist-info"
        metadata = whl.read(f"{dist_info}/METADATA").decode()
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        base_yaml = whl.read("mailseg_dist/conf/base.yaml")
    # Only the two packages and their metadata: no tests/, data/, conf/local.yaml, bench/, Resultados/.
    assert {name.split("/")[0] for name in names} == {"mailseg_dist", "jobs", dist_info}
    for sub in SUBPACKAGES:
        assert f"mailseg_dist/{sub}/__init__.py" in names, sub
    assert [name for name in names if name.startswith("mailseg_dist/conf/")] == ["mailseg_dist/conf/base.yaml"]
    assert base_yaml == (CHECKOUT / "mailseg_dist" / "conf" / "base.yaml").read_bytes()
    # Exactly the modules of the sources: none missing, none left over from an earlier build.
    modules = {name for name in built.sources if name.startswith(("mailseg_dist/", "jobs/")) and name.endswith(".py")}
    assert {name for name in names if name.endswith(".py")} == modules
    assert not [name for name in names if name.endswith((".pyc", ".csv", ".xlsx", ".parquet", ".pkl"))]
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "mailseg = jobs.cli:console" in entry_points
    # `mailseg view` runs the page script and its server from the installed package, with the `view` extra
    assert {"mailseg_dist/viewer/app.py", "mailseg_dist/viewer/serve.py"} <= set(names)
    assert 'Requires-Dist: streamlit>=1.67.0; extra == "view"' in metadata


# --------------------------------------------------------------------------- the installed wheel
def test_installed_version_is_the_packages_and_comes_from_the_venv(venv, tmp_path):
    done = _ok(_run([venv.python, "-c", "import mailseg_dist, importlib.metadata as m; print(m.version('mailseg'))"],
                    cwd=tmp_path))
    assert done.stdout.strip() == VERSION
    probe = ("import json, mailseg_dist, mailseg_dist.core.version as v; print(json.dumps("
             "{'version': v.__version__, 'package': getattr(mailseg_dist, '__version__', None), "
             "'file': mailseg_dist.__file__}))")
    found = json.loads(_ok(_run([venv.python, "-c", probe], cwd=tmp_path)).stdout)
    assert found["version"] == VERSION and found["package"] in (None, VERSION), found
    assert Path(found["file"]).resolve().is_relative_to(venv.root.resolve()), found  # the wheel, not the checkout
    _ok(_run([venv.python, "-m", "pip", "check", "--disable-pip-version-check"], cwd=tmp_path))


def test_run_from_an_empty_folder_on_the_local_cluster(local_run):
    work, summary = local_run["work"], local_run["summary"]
    _assert_outputs(work, summary)
    assert summary["cluster"]["workers_start"] == 2
    assert '<html lang="es"' in (work / "Resultados" / "informe.html").read_text(encoding="utf-8")


def test_local_yaml_in_the_working_folder_is_honoured(venv, tmp_path, local_run):
    work = tmp_path / "work"
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "local.yaml").write_text("report:\n  lang: en\npaths:\n  out_dir: Salida\n", encoding="utf-8")
    _, summary = _generate_and_run(venv, work)
    _assert_outputs(work, summary, out_dir="Salida", extra=frozenset({"conf"}))
    assert '<html lang="en"' in (work / "Salida" / "informe.html").read_text(encoding="utf-8")
    spanish = local_run["summary"]["segments"]
    # The same segments, named in English.
    assert [s["users"] for s in summary["segments"]] == [s["users"] for s in spanish]
    assert all(en["name"] != es["name"] for en, es in zip(summary["segments"], spanish)), \
        ([s["name"] for s in summary["segments"]], [s["name"] for s in spanish])


WORKER_FILES = """\
import json, sys
from distributed import Client
with Client(sys.argv[1], timeout=30) as client:
    print(json.dumps(client.run(lambda: __import__("mailseg_dist").__file__)))
"""


@pytest.mark.cluster
def test_run_on_scheduler_and_workers_started_from_the_venv(venv, tmp_path, local_run, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the workers see only what the venv has
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    start = time.monotonic()
    with DaskProcesses(tmp_path / "dask", n_workers=2, memory_limit="1GiB", dask=[str(venv.dask)]) as procs:
        print(f"\n[cluster] venv scheduler + 2 workers up in {time.monotonic() - start:.1f} s")
        files = json.loads(_ok(_run([venv.python, "-c", WORKER_FILES, procs.address], cwd=work)).stdout)
        _, summary = _generate_and_run(venv, work, "--scheduler", procs.address)
    assert len(files) == 2
    for worker, path in files.items():
        assert Path(path).resolve().is_relative_to(venv.root.resolve()), (worker, path)
    assert summary["cluster"]["scheduler"] == procs.address
    assert summary["cluster"]["workers_start"] == 2 and summary["cluster"]["workers_lost"] == 0
    _assert_outputs(work, summary)
    # The same segments as on the LocalCluster.
    assert [(s["name"], s["users"]) for s in summary["segments"]] == \
        [(s["name"], s["users"]) for s in local_run["summary"]["segments"]]
