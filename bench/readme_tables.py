"""README's end-to-end speed tables, generated from the latest bench/results/<YYYY-MM-DD>-<rows>.json.

    python bench/readme_tables.py           # rewrite the block between the bench:e2e markers in README.md
    python bench/readme_tables.py --check   # exit 1 if README.md differs from what the results give

The block is never edited by hand: tests/test_bench_tables.py fails when it differs from render().
For each size the newest results file is used (by the date in its name).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:e2e:start -->", "<!-- bench:e2e:end -->"
NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-(\d+)\.json$")
MAILSEG = ("mailseg_k6", "mailseg_auto")
# mailseg run's stages: summary `timings` keys (publish's parts from its log), in the order they happen.
STAGE_LABELS = {
    "startup": "startup: process, imports, LocalCluster",
    "ingest_read": "ingest: read the input", "ingest_clean": "ingest: clean, write Parquet",
    "ingest_ingest": "ingest: already ingested (skipped)",
    "model_read": "model: one read (scaler, sample, feature cache)",
    "model_scaler": "model: scaler", "model_sample": "model: hashed sample", "model_cache": "model: feature cache",
    "model_k_search": "model: k search", "model_final_fit": "model: final fit",
    "model_quality": "model: silhouette, PCA, stability",
    "profiles": "profiles and names",
    "publish_user_results": "publish: per-user results", "publish_model_files": "publish: model files",
    "publish_figures": "publish: figures", "publish_report": "publish: report",
    "publish_xlsx_wait": "publish: waiting for the workbook",
}
SUMS = ("model", "publish", "total")  # sums of other rows, shown through their parts


def latest_results(results_dir: Path = RESULTS) -> list[dict]:
    """The newest results file of each size, smallest size first."""
    newest: dict[int, tuple[str, Path]] = {}
    for path in results_dir.glob("*.json"):
        m = NAME.match(path.name)
        if m and (int(m.group(2)) not in newest or m.group(1) > newest[int(m.group(2))][0]):
            newest[int(m.group(2))] = (m.group(1), path)
    return [json.loads(newest[rows][1].read_text()) for rows in sorted(newest)]


def _s(x: float) -> str:
    return f"{x:,.1f}"


def _x(x: float) -> str:
    return f"{x:.2f}×" if x < 1 else f"{x:.1f}×"


def _users(rows: int) -> str:
    return f"{rows:,}"


def short_reason(reason: str) -> str:
    """A failure as a table cell: the exception's own line (the last of the stderr tail, which joins lines
    with " | "), its first sentence; a skip or timeout reason as it is."""
    last = reason.split(" | ")[-1].strip()
    head, dot, _ = last.partition(". ")
    return head + dot.strip() if dot else last


def approach_row(entry: dict) -> str:
    if entry["status"] != "ok":
        word = {"skipped": "not run", "timeout": "timeout", "failed": "failed"}.get(entry["status"], entry["status"])
        return f"| {entry['label']} | {word}: {short_reason(entry.get('reason', ''))} | — | — | — | — | — |"

    def pair(base: str) -> str:
        return f"{_x(entry[f'speedup_vs_{base}'])} / {_x(entry[f'cpu_speedup_vs_{base}'])}" \
            if f"speedup_vs_{base}" in entry else "—"

    cells = [_s(entry["wall_s"]), _s(entry["cpu_s"]), f"{entry['peak_rss_mb']:,.0f}", pair("seed"), pair("sklearn"),
             _x(entry["memory_vs_sklearn"]) if "memory_vs_sklearn" in entry else "—"]
    return f"| {entry['label']} | " + " | ".join(cells) + " |"


def target_text(t: dict) -> str:
    label = "`mailseg run --k auto`" if t["approach"] == "mailseg_auto" else "`mailseg run --k 6`"
    if t.get("measured") is None:
        return f"{label} {t['what']}: not measured ({t.get('note', '')})"
    if "max_peak_mb" in t:
        verdict = "met" if t["met"] else f"not met, {t['factor_to_go']:.2f}× too much"
        return f"{label} {t['what']} ≤ {t['max_peak_mb']:,} MB: {t['measured']:,.0f} MB ({verdict})"
    if "per_user_of" in t:
        verdict = "met" if t["met"] else f"not met, {t['factor_to_go']:.2f}× too slow"
        base = t["against"]
        return (f"{label} {t['what']} ({_s(base['wall_s'])} s on {base['date']}, commit `{base['commit']}`) "
                f"≤ {t['max_ratio']}×: {t['measured']:.2f}× ({verdict})")
    if "max_wall_s" in t or "max_stage_s" in t:
        verdict = "met" if t["met"] else f"not met, {t['factor_to_go']:.2f}× too slow"
        limit = t.get("max_wall_s", t.get("max_stage_s"))
        return f"{label} {t['what']} ≤ {limit} s: {_s(t['measured'])} s ({verdict})"
    verdict = "met" if t["met"] else f"not met, {t['factor_to_go']:.2f}× short"
    fit_only = (f"; {t['measured_fit_only']:.1f}× the seed approach without its k choice and figures"
                if t.get("measured_fit_only") is not None else "")
    return f"{label} ≥ {t['min_speedup_vs_seed']}× {t['what']}: {t['measured']:.1f}× ({verdict}{fit_only})"


def size_section(r: dict) -> list[str]:
    m, g = r["machine"], r["git"]
    dirty = " + uncommitted library changes" if g.get("uncommitted_library_files") else ""
    rounds = r["settings"]["repeat"]
    head = (f"**{_users(r['rows'])} users ({r['input']['format']})**: {r['date']}, commit `{g['commit'][:7]}`{dirty}, "
            f"{m['cores']} cores ({m.get('cpu', 'CPU not recorded')}), {m['ram_gib']:.0f} GiB, "
            f"load average {m['load_at_start'][0]:.1f} at start and "
            f"{m['load_at_end'][0]:.1f} at end; " + ("one run each." if rounds == 1 else f"median of {rounds} interleaved runs."))
    lines = [head, "", "| approach | wall s | CPU s | peak MB | speed-up vs seed, wall / CPU | "
             "speed-up vs sklearn, wall / CPU | memory vs sklearn |", "|---|---|---|---|---|---|---|"]
    lines += [approach_row(e) for e in r["approaches"].values()]
    stage_lines = [f"- {e['label']}: " + ", ".join(f"{k} {v:.1f}" for k, v in e["stages"].items())
                   for name, e in r["approaches"].items() if e["status"] == "ok" and name not in MAILSEG]
    if stage_lines:
        lines += ["", "Stages (s) of the others:", *stage_lines]
    if r.get("targets"):
        lines += ["", "Issue 12 targets: " + "; ".join(target_text(t) for t in r["targets"]) + "."]
    return lines


def breakdown(results: list[dict]) -> list[str]:
    """Where `mailseg run`'s wall time goes, one column per size and k; rows add up to the wall time."""
    cols = [(f"{_users(r['rows'])} --k {'6' if a == 'mailseg_k6' else 'auto'}", r["approaches"][a])
            for r in results for a in MAILSEG if r["approaches"].get(a, {}).get("status") == "ok"]
    if not cols:
        return []
    keys: list[str] = []
    for _, e in cols:
        keys += [k for k in e["stages"] if k not in SUMS and k not in keys and k not in ("teardown",)]
    keys.sort(key=lambda k: list(STAGE_LABELS).index(k) if k in STAGE_LABELS else len(STAGE_LABELS))

    def other(e: dict) -> float:
        return e["wall_s"] - sum(e["stages"].get(k, 0) for k in keys) - e["stages"].get("teardown", 0)

    lines = ["| stage (s) | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for k in keys:
        lines.append(f"| {STAGE_LABELS.get(k, k)} | " + " | ".join(
            _s(e["stages"][k]) if k in e["stages"] else "—" for _, e in cols) + " |")
    lines.append("| other (between stages, rounding) | " + " | ".join(_s(other(e)) for _, e in cols) + " |")
    lines.append("| teardown: closing the cluster, exit | " + " | ".join(
        _s(e["stages"].get("teardown", 0)) for _, e in cols) + " |")
    lines.append("| **wall, end to end** | " + " | ".join(f"**{_s(e['wall_s'])}**" for _, e in cols) + " |")
    return lines


def render(results: list[dict]) -> str:
    lines = [
        "End to end, from the input file to every output, on the same generated users as what the seed notebook did,",
        "scikit-learn in memory and dask-ml: `python bench/bench_e2e.py` (212,292 users as xlsx and 10M as Parquet;",
        "`--rows 60000000` on request), then `python bench/readme_tables.py` writes the tables below from the latest",
        "`bench/results/<date>-<rows>.json` (a test fails when they differ). Each approach runs in its own process; wall",
        "time includes process start, imports and any cluster start; memory is the peak summed RSS of the process tree",
        "(client, scheduler, workers). The seed approach is the notebook's steps: pandas `read_excel`, StandardScaler,",
        "the elbow (KMeans k=2..10 on all rows) and silhouette by k, `MiniBatchKMeans` k=6, `silhouette_samples` on",
        "10,000 sampled users, PCA, its six figures and `to_excel` (openpyxl); results before 2026-12-02 left out the",
        "elbow, the silhouette by k and the figures. sklearn and dask-ml only read, scale and fit k=6; `mailseg run`",
        "writes every output. Each table gives the load average at its start and end (another job on a 2-core machine",
        "slows every figure).",
    ]
    for r in results:
        lines += ["", *size_section(r)]
    table = breakdown(results)
    if table:
        lines += ["", "Where `mailseg run`'s time goes (from its `timings` and stage log):", "", *table]
    return "\n".join(lines) + "\n"


def readme_block(text: str, start: str = START, end: str = END) -> str:
    """The text between the markers (which must each appear once); every bench's README table uses these."""
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"README.md must hold {start} and {end} once each")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    readme_block(text, start, end)
    before, rest = text.split(start, 1)
    return before + start + "\n" + block + end + rest.split(end, 1)[1]


def git_commit() -> str | None:
    """HEAD's short hash, "+" when mailseg_dist/ has uncommitted changes (the measured code is not HEAD's)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "mailseg_dist"], capture_output=True, text=True,
                               cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def write_block(block: str, start: str, end: str) -> None:
    """README.md with the block between `start` and `end` replaced by `block`."""
    text = README.read_text(encoding="utf-8")
    README.write_text(replace_block(text, block, start, end), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is not up to date")
    args = parser.parse_args()
    text = README.read_text()
    block = render(latest_results())
    if args.check:
        if readme_block(text) != block:
            sys.exit("README.md's bench:e2e block differs from bench/results: run python bench/readme_tables.py")
        return
    new = replace_block(text, block)
    if new != text:
        README.write_text(new)
    print(f"README.md: bench:e2e block from {len(latest_results())} results file(s)")


if __name__ == "__main__":
    main()
