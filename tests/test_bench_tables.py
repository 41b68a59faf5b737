"""README's end-to-end speed tables come from bench/results, never hand-copied (no benchmark is run here).

bench/readme_tables.py renders the block between <!-- bench:e2e:start --> and <!-- bench:e2e:end --> from the
newest bench/results/<date>-<rows>.json of each size; after a benchmark run, `python bench/readme_tables.py`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "bench" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_e2e_block_matches_the_latest_results(tables):
    results = tables.latest_results()
    assert results, "no bench/results/<date>-<rows>.json: run python bench/bench_e2e.py"
    block = tables.readme_block((ROOT / "README.md").read_text())
    assert block == tables.render(results), (
        "README.md's bench:e2e block differs from bench/results: run python bench/readme_tables.py")


def test_the_newest_file_of_each_size_is_used(tables, tmp_path):
    for name, rows, wall in [("2026-01-05-100.json", 100, 1.0), ("2026-02-01-100.json", 100, 2.0),
                             ("2026-01-20-7.json", 7, 3.0), ("fit_100.json", 100, 9.0)]:
        (tmp_path / name).write_text(json.dumps({"rows": rows, "wall": wall}))
    assert [(r["rows"], r["wall"]) for r in tables.latest_results(tmp_path)] == [(7, 3.0), (100, 2.0)]


def test_replace_block_keeps_the_text_around_the_markers(tables):
    text = f"intro\n{tables.START}\nold table\n{tables.END}\nafter\n"
    new = tables.replace_block(text, "new table\n")
    assert new == f"intro\n{tables.START}\nnew table\n{tables.END}\nafter\n"
    assert tables.readme_block(new) == "new table\n"
    with pytest.raises(ValueError):
        tables.readme_block("no markers")


@pytest.mark.parametrize("script, issue", [("bench_update_cost", 13), ("bench_view", 15), ("bench_events", 14),
                                           ("bench_xlsx", 12), ("bench_fit", 12)])
def test_each_bench_block_in_the_readme_matches_its_results(script, issue):
    """README's update-against-refit (issue 13), viewer (15), event-log (14), workbook-writer and fit (12) tables come
    from bench/results."""
    spec = importlib.util.spec_from_file_location(script, ROOT / "bench" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.results_files()
    assert results, f"no results for bench/{script}.py (issue {issue}): run it"
    block = module.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block == module.render(results), f"README.md's block differs: run python bench/{script}.py --readme"


def test_a_failure_shows_the_exception_line_and_a_skip_its_reason(tables):
    tail = 'File "x.py", line 3, in f | raise E | pkg.KilledWorker: task t died on 4 workers. See the docs.'
    assert tables.short_reason(tail) == "pkg.KilledWorker: task t died on 4 workers."
    skip = "the notebook reads one Excel sheet, at most 1,048,575 users"
    assert tables.short_reason(skip) == skip
