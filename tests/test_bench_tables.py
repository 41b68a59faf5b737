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
                                           ("bench_xlsx", 12), ("bench_fit", 12), ("bench_features", 12),
                                           ("bench_update", 13), ("bench_duplicates", 12)])
def test_each_bench_block_in_the_readme_matches_its_results(script, issue):
    """README's update-against-refit (issue 13), viewer (15), event-log (14), workbook-writer, fit and feature-option
    (12: the k auto picks moves with the selection rule) tables come from bench/results."""
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


@pytest.fixture()
def e2e(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # bench_e2e imports bench_fit and readme_tables by name
    spec = importlib.util.spec_from_file_location("bench_e2e", ROOT / "bench" / "bench_e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_60m_target_compares_seconds_per_user_with_the_newest_10m_run(e2e, tables, tmp_path):
    target = next(t for t in e2e.TARGETS if t.get("per_user_of"))
    assert (target["rows"], target["per_user_of"], target["max_ratio"]) == (60_000_000, 10_000_000, 2.5)
    assert e2e.per_user_ratio(60_000_000, {"wall_s": 360.0}, target, tmp_path)["note"].startswith("no 10,000,000")
    for date, wall in [("2026-01-01", 10.0), ("2026-02-01", 40.0)]:  # the newer 10M run is the reference
        (tmp_path / f"{date}-10000000.json").write_text(json.dumps({
            "rows": 10_000_000, "date": date, "git": {"commit": "0123456789"},
            "approaches": {target["approach"]: {"status": "ok", "wall_s": wall}}}))
    met = e2e.per_user_ratio(60_000_000, {"wall_s": 360.0}, target, tmp_path)  # 6 µs a user against 4 µs
    assert (met["measured"], met["met"], met["against"]["wall_s"]) == (1.5, True, 40.0)
    missed = dict(target, **e2e.per_user_ratio(60_000_000, {"wall_s": 720.0}, target, tmp_path))
    assert (missed["measured"], missed["met"], missed["factor_to_go"]) == (3.0, False, 1.2)
    assert tables.target_text(missed).endswith("≤ 2.5×: 3.00× (not met, 1.20× too slow)")


def test_the_100m_target_is_the_peak_memory_of_the_process_tree(e2e, tables):
    runs = {"mailseg_k6": {"status": "ok", "wall_s": 400.0, "peak_rss_mb": 7065.6}}
    [target] = e2e.check_targets(100_000_000, runs)
    assert (target["max_peak_mb"], target["met"], target["factor_to_go"]) == (6144, False, 1.15)
    assert tables.target_text(target).endswith("≤ 6,144 MB: 7,066 MB (not met, 1.15× too much)")
    [target] = e2e.check_targets(100_000_000, {"mailseg_k6": dict(runs["mailseg_k6"], peak_rss_mb=3583.3)})
    assert target["met"] and target["measured"] == 3583.3


def test_the_212k_ingest_target_adds_the_read_and_clean_stages(e2e, tables):
    stages = {"startup": 2.6, "ingest_read": 2.05, "ingest_clean": 1.39, "model": 3.3}
    runs = {"mailseg_auto": {"status": "ok", "wall_s": 14.6, "stages": stages}}
    [target] = [t for t in e2e.check_targets(212_292, runs) if t.get("stage")]
    assert (target["stage"], target["max_stage_s"]) == (["ingest_read", "ingest_clean"], 3)
    assert (target["measured"], target["met"], target["factor_to_go"]) == (3.44, False, 1.15)
    assert tables.target_text(target).endswith("beyond the cluster start ≤ 3 s: 3.4 s (not met, 1.15× too slow)")
    faster = dict(stages, ingest_read=1.6)
    [target] = [t for t in e2e.check_targets(212_292, {"mailseg_auto": dict(runs["mailseg_auto"], stages=faster)})
                if t.get("stage")]
    assert target["met"] and target["measured"] == 2.99
