"""How each feature option changes cluster quality, on seed-like data.

    python bench/bench_features.py --rows 212292

For each option (the seed's 8 features, log1p counts, + rates, cyclical hour and
weekday, all three) fit k=6 and k=auto with the default engine on the same
ingested users and record silhouette (stratified, exact), mean and minimum
bootstrap stability (Jaccard), Calinski-Harabasz, Davies-Bouldin and the k that
auto picks. Results: bench/results/features_<rows>.json; `python bench/bench_features.py --readme`
writes README.md's table from them.
Note that silhouettes in different feature spaces are not strictly comparable:
the point is which space separates the users better for the same k.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_tables  # noqa: E402  the README's marked blocks
from bench_fit import HERE, prepare  # noqa: E402

START, END = "<!-- bench:features:start -->", "<!-- bench:features:end -->"

OPTIONS = {
    "seed 8 features": {},
    "log1p counts": {"features.log1p": True},
    "+ rates": {"features.rates": True},
    "cyclical hour/day": {"features.cyclical": True},
    "log1p + rates + cyclical": {"features.log1p": True, "features.rates": True, "features.cyclical": True},
}


def measure(users: str, overrides: dict, k) -> dict:
    from distributed import Client, LocalCluster

    from mailseg_dist.core.config import load_config
    from mailseg_dist.model.modelling import fit_segments

    cfg = load_config(overrides={**overrides, "model.k": k})
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        r = fit_segments(users, cfg, client)
    stab = list(r.stability.values())
    return {"k": r.k, "silhouette": round(r.silhouette, 4), "stability_mean": round(sum(stab) / len(stab), 3),
            "stability_min": round(min(stab), 3), "calinski_harabasz": round(r.calinski_harabasz, 1),
            "davies_bouldin": round(r.davies_bouldin, 3), "smallest_share": round(min(r.cluster_sizes.values()) / r.n_rows, 4)}


def results_files() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("features_*.json"))]


def render(results: list[dict]) -> str:
    """The README table of the largest run: one row per feature option (the first is the default)."""
    record = max(results, key=lambda r: r["rows"])
    lines = ["| features | silhouette k=6 | stability k=6 mean / min | Davies-Bouldin k=6 | k chosen by auto | "
             "silhouette at that k |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(record["results"]):
        a, b = r["k6"], r["auto"]
        lines.append(f"| {r['option']}{' (default)' if i == 0 else ''} | {a['silhouette']:.3f} | "
                     f"{a['stability_mean']:.2f} / {a['stability_min']:.2f} | {a['davies_bouldin']:.2f} | {b['k']} | "
                     f"{b['silhouette']:.3f} |")
    measured = f"{record['rows']:,} users, {record.get('date', 'undated')}, commit `{record.get('commit', '?')}`"
    return "\n".join(lines) + f"\n\nMeasured on {measured}.\n"


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=212_292)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    args = parser.parse_args()
    if not args.readme:
        measure_all(args.rows, args.seed)
    readme_tables.write_block(render(results_files()), START, END)


def measure_all(rows_wanted: int, seed: int) -> None:
    users = prepare(rows_wanted, seed, HERE / ".work")
    rows = []
    for name, overrides in OPTIONS.items():
        row = {"option": name, "k6": measure(users, overrides, 6), "auto": measure(users, overrides, "auto")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / f"features_{rows_wanted}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows_wanted, "date": dt.date.today().isoformat(),
                               "commit": readme_tables.git_commit(), "results": rows}, indent=2))
    print(render(results_files()))


if __name__ == "__main__":
    main()
