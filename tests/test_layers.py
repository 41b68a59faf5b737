"""The library's layers, checked on its source: no module imports a module of a higher layer.

    core (0) < inputs (1) < model (2) < segments (3) < outputs (4) < workflows (5) < the API (6:
    mailseg_dist/__init__.py and mailseg_dist/api.py, and viewer/, the `mailseg view` web app beside it)

A module may import its own layer and any lower one. The graph is built statically
(ast over every .py file), so an import inside a function, under TYPE_CHECKING, or
relative (`from ..outputs import x`) counts like one at the top of the file, and
importlib.import_module("mailseg_dist.x") with a literal name counts too. The CLI
(jobs/) sits on top: it may import only the API (`mailseg_dist`, `mailseg_dist.api`)
and `mailseg_dist.core.*`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "mailseg_dist"
LAYERS = {"core": 0, "inputs": 1, "model": 2, "segments": 3, "outputs": 4, "workflows": 5, "viewer": 6}
API_LAYER = 6
API_MODULES = {"__init__", "api"}  # the files directly in the package: its public face
CLI_MAY_IMPORT = ("mailseg_dist", "mailseg_dist.api", "mailseg_dist.core")


# ---------------------------------------------------------------- the checker
def module_name(path: Path, root: Path) -> str:
    """Dotted name of a file under `root` (the folder that holds the package): a/b/__init__.py -> a.b."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, wherever it stands; relative imports resolved.

    `from a.b import c` is recorded as a.b.c when c is a module under `root`, else as a.b (c is a name in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level - 1 >= len(base_parts):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top package")
                base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found += [(node.lineno, base if alias.name == "*" else _module_or_parent(f"{base}.{alias.name}", root))
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _is_import_module(node.func)):
            found.append((node.lineno, node.args[0].value))
    return found


def _module_or_parent(dotted: str, root: Path) -> str:
    """`a.b.c` if it is a module or package under `root`, else `a.b` (c is then a name defined in a.b)."""
    path = root.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return dotted
    return dotted.rpartition(".")[0]


def _is_import_module(func: ast.expr) -> bool:
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module")
            or (isinstance(func, ast.Name) and func.id in ("import_module", "__import__")))


def layer_of(module: str, package: str = PACKAGE) -> int | None:
    """Layer of a dotted name inside `package`; None for a name outside it. Raises for a name in no layer."""
    parts = module.split(".")
    if parts[0] != package:
        return None
    if len(parts) == 1 or parts[1] in API_MODULES:
        return API_LAYER
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    raise LookupError(f"{'.'.join(parts[:2])} is in no layer: add it to LAYERS in tests/test_layers.py")


def layer_violations(root: Path, package: str = PACKAGE) -> list[str]:
    """Every import of a higher layer in `root/package`, as `package/x/y.py:LINE imports package.z (layer a < b)`.

    A module whose own name, or an imported name, lies in no layer is reported too (new sub-packages and
    top-level modules must be placed, not slip past the check)."""
    problems = []
    files = sorted((root / package).rglob("*.py"))
    assert files, f"no Python files under {root / package}"
    for path in files:
        where = path.relative_to(root).as_posix()
        try:
            own = layer_of(module_name(path, root), package)
        except LookupError as err:
            problems.append(f"{where}: {err}")
            continue
        for line, target in imported_modules(path, root):
            try:
                theirs = layer_of(target, package)
            except LookupError as err:
                problems.append(f"{where}:{line} imports {target}: {err}")
                continue
            if theirs is not None and theirs > own:
                problems.append(f"{where}:{line} imports {target} (layer {own} < {theirs})")
    return problems


def cli_violations(root: Path, cli: str = "jobs", allowed: tuple[str, ...] = CLI_MAY_IMPORT,
                   package: str = PACKAGE) -> list[str]:
    """Every import by the CLI of a library module other than the API and core."""
    problems = []
    for path in sorted((root / cli).rglob("*.py")):
        for line, target in imported_modules(path, root):
            if target.split(".")[0] != package or any(_within(target, a, package) for a in allowed):
                continue
            problems.append(f"{path.relative_to(root).as_posix()}:{line} imports {target} "
                            f"(the CLI may import only {', '.join(allowed)}.*)")
    return problems


def _within(target: str, allowed: str, package: str) -> bool:
    """`target` is `allowed` or, unless `allowed` is the whole package, a module inside it."""
    return target == allowed or (allowed != package and target.startswith(allowed + "."))


def _report(problems: list[str]) -> str:
    return f"{len(problems)} import(s) against the layers:\n" + "\n".join(problems)


# ---------------------------------------------------------------- the real package
def test_no_module_imports_a_higher_layer():
    problems = layer_violations(REPO)
    assert problems == [], _report(problems)


def test_the_cli_imports_only_the_api_and_core():
    problems = cli_violations(REPO)
    assert problems == [], _report(problems)


def test_every_subpackage_has_a_layer():
    """A new sub-package (or top-level module) must be given a place, not silently ignored."""
    folders = {p.name for p in (REPO / PACKAGE).iterdir() if (p / "__init__.py").exists()}
    top_modules = {p.stem for p in (REPO / PACKAGE).glob("*.py")}
    assert folders == set(LAYERS), folders ^ set(LAYERS)
    assert top_modules <= API_MODULES, top_modules - API_MODULES


# ---------------------------------------------------------------- the checker can fail
def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in {(root / name).parent for name in files}:
        while folder != root:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return root


def test_the_checker_reports_backward_imports_with_file_and_line(tmp_path):
    root = _package(tmp_path, {
        "mailseg_dist/core/a.py": "import os\nfrom mailseg_dist.core import b\n\n\ndef late():\n"
                                  "    from mailseg_dist.outputs.report import write\n    return write\n",
        "mailseg_dist/core/b.py": "",
        "mailseg_dist/model/m.py": "from ..core import a\nfrom ..segments.texts import NAMES\n"
                                   "from . import n\n",
        "mailseg_dist/model/n.py": "import mailseg_dist.inputs.clean\nimport mailseg_dist\n",
        "mailseg_dist/inputs/clean.py": "import importlib\n"
                                        "ENGINE = importlib.import_module('mailseg_dist.workflows.run')\n",
        "mailseg_dist/segments/texts.py": "NAMES = {}\n",
        "mailseg_dist/outputs/report.py": "from mailseg_dist.segments.texts import NAMES\n"
                                          "from mailseg_dist.model import m\nwrite = print\n",
        "mailseg_dist/workflows/run.py": "from mailseg_dist.outputs import report\nfrom mailseg_dist.api import go\n",
        "mailseg_dist/api.py": "from mailseg_dist.workflows.run import report\n\n\ndef go():\n    pass\n",
        "mailseg_dist/__init__.py": "from .api import go\n",
    })
    assert layer_violations(root) == [
        "mailseg_dist/core/a.py:6 imports mailseg_dist.outputs.report (layer 0 < 4)",
        "mailseg_dist/inputs/clean.py:2 imports mailseg_dist.workflows.run (layer 1 < 5)",
        "mailseg_dist/model/m.py:2 imports mailseg_dist.segments.texts (layer 2 < 3)",
        "mailseg_dist/model/n.py:2 imports mailseg_dist (layer 2 < 6)",
        "mailseg_dist/workflows/run.py:2 imports mailseg_dist.api (layer 5 < 6)",
    ]


def test_the_checker_refuses_a_module_in_no_layer(tmp_path):
    root = _package(tmp_path, {"mailseg_dist/extras/x.py": "",
                               "mailseg_dist/core/c.py": "from mailseg_dist.helpers import h\n"})
    problems = layer_violations(root)
    assert any(p.startswith("mailseg_dist/extras/x.py: mailseg_dist.extras is in no layer") for p in problems)
    assert any(p.startswith("mailseg_dist/core/c.py:1 imports mailseg_dist.helpers: mailseg_dist.helpers is in")
               for p in problems)


def test_the_cli_check_reports_imports_past_the_api(tmp_path):
    root = _package(tmp_path, {
        "jobs/cli.py": "import mailseg_dist as api\nfrom mailseg_dist import MailsegError\nfrom . import commands\n",
        "jobs/commands.py": "from mailseg_dist.core.errors import UsageError\nfrom mailseg_dist.api import run\n"
                            "\n\ndef go():\n    from mailseg_dist.workflows.run import run_job\n"
                            "    from mailseg_dist import model\n",
        "mailseg_dist/api.py": "", "mailseg_dist/model/m.py": "", "mailseg_dist/workflows/run.py": "",
    })
    problems = cli_violations(root)
    assert [p.split(" (")[0] for p in problems] == [
        "jobs/commands.py:6 imports mailseg_dist.workflows.run",
        "jobs/commands.py:7 imports mailseg_dist.model",
    ]
    assert "may import only mailseg_dist, mailseg_dist.api, mailseg_dist.core.*" in problems[0]
