"""The clean stage's duplicate-Id pass: hash buckets (inputs.duplicates) against the Dask value_counts it replaced.

    python bench/bench_clean.py                     # 1,000,000 users -> bench/results/clean_1000000.json
    python bench/bench_clean.py --rows 10000000 --repeat 3

Not part of CI. Input: `mailseg generate --rows N --seed 1` as Parquet (cached in bench/.work/clean/), ingested
once with `mailseg ingest` to get its raw layer (typed cells, one part per 100,000 rows), plus a copy of that layer
in which 1% of the rows repeat an Id of another part (so both methods must find and place them). On one LocalCluster
(2 workers x 1 thread, as `mailseg run` starts), per layer, interleaved, --repeat times:

- `value_counts`: what the clean stage did before: `coerced[valid].Id.value_counts()` (Dask picks its own shuffle),
  the Ids counted more than once, then the groupby-min of their source rows (a second pass when there are any);
- `buckets`: `inputs.duplicates.duplicate_first_rows` (one pass, core.buckets).

Both answers are checked equal. Results: seconds (median and all), the load average before each call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "clean"


def raw_layer(rows: int) -> Path:
    """The raw layer of `rows` generated users (ingested once, cached)."""
    data = WORK / f"data_{rows}"
    raw = data / "parquet" / "raw" / "month=2026-01"
    if not raw.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        source = WORK / f"users_{rows}.parquet"
        subprocess.run(["mailseg", "generate", "--rows", str(rows), "--seed", "1", "--out", str(source)], check=True)
        subprocess.run(["mailseg", "ingest", str(source), "--month", "2026-01", "--data-dir", str(data)], check=True)
    return raw


def with_repeats(raw: Path, share: float) -> Path:
    """A copy of the raw layer in which `share` of each part's rows take an Id from the next part."""
    target = raw.parent / f"{raw.name}-repeats"
    if target.exists():
        return target
    target.mkdir()
    files = sorted(raw.glob("*.parquet"))
    rng = np.random.default_rng(5)
    for i, path in enumerate(files):
        part = pd.read_parquet(path)
        donor = pd.read_parquet(files[(i + 1) % len(files)], columns=["Id"])["Id"]
        rows = rng.choice(len(part), int(len(part) * share), replace=False)
        part.loc[rows, "Id"] = donor.sample(len(rows), random_state=i).to_numpy()
        part.to_parquet(target / path.name, index=False)
    return target


def coerced_frame(raw: Path, cfg: dict):
    import dask.dataframe as dd

    from mailseg_dist.core.parquet import parquet_files
    from mailseg_dist.inputs.clean import coerce_partition

    frame = dd.read_parquet([str(p) for p in parquet_files(raw)])
    id_type = "int" if pd.api.types.is_integer_dtype(frame.dtypes["Id"]) else "string"
    meta = coerce_partition(frame._meta, id_type, cfg["cleaning"])
    return frame.map_partitions(coerce_partition, id_type, cfg["cleaning"], meta=meta)


def by_value_counts(coerced) -> pd.Series:
    """The replaced method, as it was in inputs/ingest.py."""
    from mailseg_dist.core.progress import compute

    valid = coerced[coerced["_reason"].isna()][["Id", "source_row"]]
    counts = valid["Id"].value_counts()
    (repeated,) = compute(counts[counts > 1].index)
    if len(repeated) == 0:
        return pd.Series(dtype="int64")
    dups = valid[valid["Id"].isin(list(repeated))]
    return compute(dups.groupby("Id")["source_row"].min())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from mailseg_dist.core.config import load_config
    from mailseg_dist.inputs.duplicates import duplicate_first_rows

    cfg = load_config(None, {})
    raw = raw_layer(args.rows)
    layers = {"no repeats": raw, "1% repeated Ids": with_repeats(raw, 0.01)}
    methods = {"value_counts": by_value_counts, "buckets": duplicate_first_rows}
    record = {"rows": args.rows, "repeat": args.repeat, "cpus": os.cpu_count(), "layers": {}}
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster):
        for label, layer in layers.items():
            times: dict[str, list[float]] = {m: [] for m in methods}
            answers, loads = {}, []
            for r in range(args.repeat):
                for name in (list(methods) if r % 2 == 0 else list(methods)[::-1]):
                    loads.append(round(os.getloadavg()[0], 2))
                    start = time.perf_counter()
                    answers[name] = methods[name](coerced_frame(layer, cfg))
                    times[name].append(round(time.perf_counter() - start, 3))
            found = {name: a.sort_index().astype("int64") for name, a in answers.items()}
            assert found["value_counts"].to_dict() == found["buckets"].to_dict(), label
            record["layers"][label] = {"repeated_ids": len(found["buckets"]), "load_before": loads,
                                       **{name: {"median_s": statistics.median(t), "all_s": t}
                                          for name, t in times.items()}}
            print(label, {name: statistics.median(t) for name, t in times.items()}, flush=True)
    out = HERE / "results" / f"clean_{args.rows}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(WORK / "dask-scratch-space", ignore_errors=True)


if __name__ == "__main__":
    main()
