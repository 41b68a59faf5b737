"""How each feature option changes cluster quality, on seed-like data.

    python bench/bench_features.py --rows 212292

For each option (the seed's 8 features, log1p counts, + rates, cyclical hour and
weekday, all three) fit k=6 and k=auto with the default engine on the same
ingested users and record silhouette (stratified, exact), mean and minimum
bootstrap stability (Jaccard), Calinski-Harabasz, Davies-Bouldin and the k that
auto picks. Results: bench/results/features_<rows>.json and a Markdown table.
Note that silhouettes in different feature spaces are not strictly comparable:
the point is which space separates the users better for the same k.
"""

from __future__ import annotations

import argparse
import json

from bench_fit import HERE, prepare

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=212_292)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    users = prepare(args.rows, args.seed, HERE / ".work")
    rows = []
    for name, overrides in OPTIONS.items():
        row = {"option": name, "k6": measure(users, overrides, 6), "auto": measure(users, overrides, "auto")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / f"features_{args.rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "results": rows}, indent=2))
    print("\n| features | silhouette k=6 | stability k=6 mean / min | DB k=6 | k auto | silhouette auto |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["k6"], r["auto"]
        print(f"| {r['option']} | {a['silhouette']:.3f} | {a['stability_mean']:.2f} / {a['stability_min']:.2f} | "
              f"{a['davies_bouldin']:.2f} | {b['k']} | {b['silhouette']:.3f} |")


if __name__ == "__main__":
    main()
