"""Who moved where between two months: `model.pair_counts` against a Dask outer merge on Id.

    python bench/bench_transitions.py --rows 10000000

Two months of per-user results (Id, cluster; 100,000-row parts like Resultados/usuarios/) are
generated once in bench/.work/transitions_<rows>/: month 2 keeps 95% of month 1's users (in
another order, 20% of them in another segment) and adds 5% new ones. In one LocalCluster of
2 workers × 1 thread, `repeat` times each, alternated: `merge` (what `drift.transitions` did
until then: `dd.merge(how="outer")` on Id, then a groupby size) and `pair_counts` (hash buckets
matched on the workers, as many as `drift.transitions` uses). Both counts must be equal.
Results: bench/results/transitions_<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_e2e import git, load, machine, versions  # noqa: E402

PART_ROWS = 100_000


def _write_month(folder: Path, ids: np.ndarray, clusters: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, lo in enumerate(range(0, len(ids), PART_ROWS)):
        part = pd.DataFrame({"Id": ids[lo:lo + PART_ROWS], "cluster": clusters[lo:lo + PART_ROWS]})
        part.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


def make_months(rows: int, seed: int, workdir: Path) -> tuple[Path, Path]:
    before, now = workdir / "m1", workdir / "m2"
    if (workdir / "done").exists():
        return before, now
    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows).astype(np.int64) + 1_000_000
    clusters = rng.integers(0, 5, rows)
    _write_month(before, ids, clusters)
    kept = rng.random(rows) < 0.95
    moved = np.where(rng.random(rows) < 0.2, rng.integers(0, 5, rows), clusters)[kept]
    new = np.arange(rows, rows + int(rows * 0.05), dtype=np.int64) + 1_000_000
    ids_now = np.concatenate([ids[kept], new])
    order = rng.permutation(len(ids_now))
    _write_month(now, ids_now[order], np.concatenate([moved, rng.integers(0, 5, len(new))])[order])
    (workdir / "done").write_text("")
    return before, now


def merge_counts(before: Path, now: Path) -> dict:
    """The alternative: a Dask outer merge on Id, then the pairs counted by a groupby."""
    import dask.dataframe as dd

    from mailseg_dist.core.progress import compute

    prev = dd.read_parquet(str(before), columns=["Id", "cluster"]).rename(columns={"cluster": "cluster_prev"})
    cur = dd.read_parquet(str(now), columns=["Id", "cluster"]).rename(columns={"cluster": "cluster_now"})
    pairs = prev.merge(cur, on="Id", how="outer")
    pairs = pairs.assign(cluster_prev=pairs["cluster_prev"].fillna(-1).astype("int64"),
                         cluster_now=pairs["cluster_now"].fillna(-1).astype("int64"))
    (sizes,) = compute(pairs.groupby(["cluster_prev", "cluster_now"]).size())
    return {(int(a), int(b)): int(n) for (a, b), n in sizes.items()}


def bucket_counts(before: Path, now: Path) -> dict:
    """What drift.transitions runs: buckets sized to the months (pair_counts.default_buckets)."""
    from mailseg_dist.model.pair_counts import months_pair_counts

    return months_pair_counts(before, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    before, now = make_months(args.rows, args.seed, HERE / ".work" / f"transitions_{args.rows}")
    import dask
    from distributed import Client, LocalCluster

    approaches = {"merge": merge_counts, "pair_counts": bucket_counts}
    times: dict[str, list[float]] = {name: [] for name in approaches}
    counts = {}
    load_start = load()
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client):
        from mailseg_dist.model.pair_counts import default_buckets

        buckets = default_buckets(args.rows)
        for rep in range(args.repeat):
            for name in (list(approaches) if rep % 2 == 0 else list(approaches)[::-1]):
                start = time.perf_counter()
                counts[name] = approaches[name](before, now)
                times[name].append(round(time.perf_counter() - start, 2))
                print(json.dumps({"rep": rep, "approach": name, "s": times[name][-1]}), flush=True)
    if counts["merge"] != counts["pair_counts"]:
        raise SystemExit("pair_counts and the merge counted different pairs")
    medians = {name: statistics.median(t) for name, t in times.items()}
    record = {"rows": args.rows, "date": time.strftime("%Y-%m-%d"), "git": {"commit": git("rev-parse", "HEAD")},
              "machine": {**machine(), "load_at_start": load_start, "load_at_end": load()}, "versions": versions(),
              "cluster": "LocalCluster 2 workers x 1 thread", "buckets": buckets, "repeat": args.repeat, "runs_s": times,
              "median_s": medians, "pair_counts_vs_merge": round(medians["pair_counts"] / medians["merge"], 3),
              "users_in_both": sum(n for (a, b), n in counts["merge"].items() if a >= 0 and b >= 0)}
    out = HERE / "results" / f"transitions_{args.rows}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"median_s": medians, "ratio": record["pair_counts_vs_merge"]}), f"wrote {out}")


if __name__ == "__main__":
    main()
