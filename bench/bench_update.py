"""Monthly update, `refit` against `blend` (issue 13, behaviour 5), on generated 6-month series.

    python bench/bench_update.py                      # 200,000 users a month -> bench/results/update_200000.json
    python bench/bench_update.py --rows 1000000       # on request
    python bench/bench_update.py --readme             # README.md's table from bench/results/update_<rows>.json

The months. A pool of seed-like users is drawn with the generator's own code
(inputs.generate, with each row's true segment, which the public `generate` does
not return). Each month holds `rows` people; each person has a true segment and
a pool row as features. From one month to the next 80% of the people return
(same Id); 3% of those change segment, and more change when a segment must grow
faster than new users can fill it; a returning person who keeps the segment
keeps the features, one who changes gets a new pool row of the new segment; the
rest of the month are new people (new Ids). Two series, 6 months each:

- gradual: the heavily mailed segment (seed segment 4) gains 2 points of share a
  month (20% -> 30%, taken evenly from the others), and everyone's mean sending
  hour drifts 0.25 h later a month (+1.25 h by month 6).
- sudden: months 1-3 alike; from month 4 on the hard bouncers (seed segment 3)
  triple, 11% -> 33% (existing users start bouncing, new users too).

The runs. One LocalCluster (2 workers x 1 thread) serves every call. Each month
is ingested once (ms.ingest, not timed). Month 1: `ms.run` (k auto) picks k; each
mode's output folder starts from that same run. Months 2-6, in an order that
rotates every month (the machine is shared): a fresh `ms.run(k=k)` on the month
(the reference) and `ms.update` in each mode, config {"update": {"mode": ...}}.

Measured per month and mode:
- id stability: share of returning people (same Id both months) who keep their
  segment id; "truth" is the share who kept their true segment;
- ids follow: every new centre is nearest to its own previous centre (month's own
  standard units), and the Hungarian matching is the identity;
- inertia vs fresh: sum of squared distances of the month's users to the centre
  the model gives them, in the month's own standard units (the fresh fit's
  scaler), over the fresh fit's inertia (1.0 = as good as a fresh fit);
- PSI: the features' PSI (month before -> month, the month before's quantile
  bins: model/drift.py) and each mode's PSI of its segment shares;
- time: wall time of the call and its model stage (summary timings), the load
  average before each call.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
import readme_tables  # noqa: E402  the README's marked blocks

START, END = "<!-- bench:update:start -->", "<!-- bench:update:end -->"
MODES = ("refit", "blend")
SERIES = ("gradual", "sudden")
MONTHS = 6
RETURN_RATE, SWITCH_RATE = 0.8, 0.03
HEAVY, BOUNCERS = 4, 3                      # seed segments (inputs.generate.SEED_SEGMENTS)
GRADUAL_SHARE_STEP, GRADUAL_HOUR_STEP = 0.02, 0.25
SUDDEN_MONTH, SUDDEN_FACTOR = 4, 3.0


# ------------------------------------------------------------------ the months
def target_shares(series: str, month: int) -> np.ndarray:
    """True segment shares of `month` (1-based)."""
    from mailseg_dist.inputs.generate import SEED_SEGMENTS

    base = SEED_SEGMENTS["share"].to_numpy(np.float64)
    if series == "gradual":
        return _with_share(base, HEAVY, base[HEAVY] + GRADUAL_SHARE_STEP * (month - 1))
    return base if month < SUDDEN_MONTH else _with_share(base, BOUNCERS, SUDDEN_FACTOR * base[BOUNCERS])


def _with_share(base: np.ndarray, segment: int, share: float) -> np.ndarray:
    """`base` with segment's share set, the others scaled to fill the rest (their proportions kept)."""
    out = base * (1 - share) / (1 - base[segment])
    out[segment] = share
    return out


def hour_shift(series: str, month: int) -> float:
    return GRADUAL_HOUR_STEP * (month - 1) if series == "gradual" else 0.0


def _counts(shares: np.ndarray, rows: int) -> np.ndarray:
    counts = np.floor(shares * rows).astype(np.int64)
    counts[np.argsort(-(shares * rows - counts))[: rows - counts.sum()]] += 1
    return counts


class Pool:
    """Generated users with their true segment; rows of a segment handed out without repeats until used up."""

    def __init__(self, rows: int, seed: int):
        from mailseg_dist.inputs.generate import BLOCK_ROWS, _generate_block

        frames, segments = zip(*(_generate_block(rows, seed, b) for b in range(-(-rows // BLOCK_ROWS))))
        self.frame = pd.concat(frames, ignore_index=True)
        self.segment = np.concatenate(segments)
        self.rng = np.random.default_rng([seed, 1])
        self.queues = {s: self.rng.permutation(np.flatnonzero(self.segment == s)) for s in np.unique(self.segment)}
        self.next = {s: 0 for s in self.queues}
        self.reused = 0

    def take(self, segment: int, n: int) -> np.ndarray:
        out = []
        while n > 0:
            queue = self.queues[segment]
            if self.next[segment] == len(queue):  # used up: start again (a feature vector seen before)
                self.queues[segment], self.next[segment] = self.rng.permutation(queue), 0
                self.reused += 1
                queue = self.queues[segment]
            got = queue[self.next[segment]: self.next[segment] + n]
            self.next[segment] += len(got)
            out.append(got)
            n -= len(got)
        return np.concatenate(out) if out else np.zeros(0, np.int64)


def first_month(pool: Pool, rows: int, shares: np.ndarray) -> pd.DataFrame:
    seg = np.repeat(np.arange(len(shares)), _counts(shares, rows))
    people = pd.DataFrame({"Id": np.arange(1, rows + 1, dtype=np.int64), "segment": seg,
                           "row": np.concatenate([pool.take(s, (seg == s).sum()) for s in range(len(shares))])})
    return people.sample(frac=1.0, random_state=0).reset_index(drop=True)


def next_month(pool: Pool, prev: pd.DataFrame, rows: int, shares: np.ndarray, rng, next_id: int):
    """(people, next free Id): returning people keep Id and (unless they switch) segment and features."""
    ret = prev[rng.random(len(prev)) < RETURN_RATE].copy()
    old = ret["segment"].to_numpy().copy()
    seg = old.copy()
    seg[rng.random(len(seg)) < SWITCH_RATE] = -1
    target = _counts(shares, rows)
    for s in range(len(shares)):  # a segment shrinking faster than people leave: some of its people switch
        mine = np.flatnonzero(seg == s)
        if len(mine) > target[s]:
            seg[rng.choice(mine, len(mine) - target[s], replace=False)] = -1
    deficit = target - np.bincount(seg[seg >= 0], minlength=len(shares))
    slots = rng.permutation(np.repeat(np.arange(len(shares)), deficit))
    free = np.flatnonzero(seg == -1)
    seg[free], slots = slots[: len(free)], slots[len(free):]
    ret["segment"] = seg
    moved = free  # a switcher gets a new feature row, even when it lands in its own segment again
    rows_now = ret["row"].to_numpy().copy()
    for s in range(len(shares)):
        who = moved[seg[moved] == s]
        rows_now[who] = pool.take(s, len(who))
    ret["row"] = rows_now
    new = pd.DataFrame({"Id": np.arange(next_id, next_id + len(slots), dtype=np.int64), "segment": slots})
    new["row"] = np.zeros(len(new), np.int64)
    for s in range(len(shares)):
        who = np.flatnonzero(slots == s)
        new.loc[who, "row"] = pool.take(s, len(who))
    people = pd.concat([ret, new], ignore_index=True).sample(frac=1.0, random_state=int(rng.integers(2**31)))
    return people.reset_index(drop=True), next_id + len(slots)


def month_frame(pool: Pool, people: pd.DataFrame, shift: float) -> pd.DataFrame:
    """The month's input table: the people's feature rows under their own Ids, hours drifted by `shift`."""
    from mailseg_dist.inputs.generate import DECIMALS, HOUR_MAX

    frame = pool.frame.iloc[people["row"].to_numpy()].reset_index(drop=True)
    frame["Id"] = people["Id"].to_numpy()
    frame["hour"] = np.round(np.clip(frame["hour"] + shift, 0, HOUR_MAX), DECIMALS)
    return frame


def build_series(series: str, rows: int, seed: int, folder: Path) -> list[dict]:
    """Write the series' months as Parquet; per month its file, people (Id, true segment) and drift knobs."""
    pool = Pool(3 * rows, seed + (0 if series == "gradual" else 1000))
    rng = np.random.default_rng([seed, 7 if series == "gradual" else 8])
    months, people, next_id = [], first_month(pool, rows, target_shares(series, 1)), rows + 1
    for m in range(1, MONTHS + 1):
        if m > 1:
            people, next_id = next_month(pool, people, rows, target_shares(series, m), rng, next_id)
        path = folder / f"{series}-{m}.parquet"
        month_frame(pool, people, hour_shift(series, m)).to_parquet(path, index=False)
        months.append({"month": f"2026-{m:02d}", "path": path, "people": people[["Id", "segment"]].copy(),
                       "shares": target_shares(series, m).round(4).tolist(), "hour_shift": hour_shift(series, m)})
    print(f"{series}: {MONTHS} months of {rows:,} users written (pool rows reused {pool.reused} times)", flush=True)
    return months


# ------------------------------------------------------------------ measuring
def load(out: Path):
    """The model in `out` as an update would read it: centres in feature units, scaler, counts."""
    from mailseg_dist.core.config import load_config
    from mailseg_dist.workflows.update import previous_segments

    return previous_segments(out, load_config(), False)


def features(users: pd.DataFrame) -> np.ndarray:
    from mailseg_dist.core.config import load_config
    from mailseg_dist.model.features import feature_frame

    return feature_frame(users, load_config()["features"]).to_numpy(np.float64)


def labels_and_sq(x: np.ndarray, model, units) -> tuple[np.ndarray, np.ndarray]:
    """The model's label of each user (nearest centre in its own scaled space), and the squared distance to
    that centre in `units` (a scaler: the month's own standard units)."""
    from mailseg_dist.model.kernels import nearest

    own = (x - model.scaler.mean_) / model.scaler.scale_
    labels, _ = nearest(own, (model.centers - model.scaler.mean_) / model.scaler.scale_)
    z, c = (x - units.mean_) / units.scale_, (model.centers - units.mean_) / units.scale_
    return labels, ((z - c[labels]) ** 2).sum(axis=1)


def id_checks(prev, now, units) -> dict:
    """Does every id's new centre stay nearest its previous centre (month's units), and would matching agree."""
    from mailseg_dist.model.matching import matching

    a = (prev.centers - units.mean_) / units.scale_
    b = (now.centers - units.mean_) / units.scale_
    nearest_prev = (((b[:, None, :] - a[None]) ** 2).sum(axis=2)).argmin(axis=1)
    k = len(a)
    return {"ids_nearest_own": bool((nearest_prev == np.arange(k)).all()),
            "ids_not_nearest_own": [int(j) for j in np.flatnonzero(nearest_prev != np.arange(k))],
            "matching_identity": bool((matching(a, b) == np.arange(k)).all()),
            "centre_shift": [round(float(s), 4) for s in np.sqrt(((a - b) ** 2).sum(axis=1))]}


def anchor_cost(x: np.ndarray, model) -> float:
    """Blend's inertia over that of plain Lloyd run on from its centres, both in the blend model's own scaled
    units: the part of its distance to a fresh fit that the anchors cost (the rest is the kept scaler)."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    own = (x - model.scaler.mean_) / model.scaler.scale_
    centres = (model.centers - model.scaler.mean_) / model.scaler.scale_
    with threadpool_limits(limits=1):
        free = KMeans(len(centres), init=centres, n_init=1, tol=0.0, max_iter=300).fit(own)
    from mailseg_dist.model.kernels import nearest

    return float(nearest(own, centres)[1].sum() / free.inertia_)


def feature_psi(prev: pd.DataFrame, now: pd.DataFrame) -> dict:
    """Per feature PSI over the previous month's quantile bins (model/drift.py's, config drift.bins)."""
    from mailseg_dist.core.config import load_config
    from mailseg_dist.model.drift import drift_reference, feature_drift
    from mailseg_dist.model.features import raw_columns

    cfg = load_config()
    columns = raw_columns(cfg["features"])
    rows = feature_drift(drift_reference(prev, columns, cfg["drift"]["bins"]), now,
                         psi_watch=cfg["drift"]["psi_watch"], psi_act=cfg["drift"]["psi_act"])
    return {row["feature"]: round(float(row["psi"]), 4) for row in rows}


def share_psi(then: np.ndarray, now: np.ndarray, k: int) -> float:
    from mailseg_dist.model.drift import share_psi as psi

    a, b = (np.bincount(x, minlength=k) / len(x) for x in (then, now))
    return round(psi(dict(enumerate(a)), dict(enumerate(b))), 4)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def timed(call, **kwargs) -> tuple[dict, dict]:
    before = loadavg()
    start = time.perf_counter()
    summary = call(**kwargs)
    wall = time.perf_counter() - start
    stages = {k[len("model_"):]: round(v, 2) for k, v in summary["timings"].items() if k.startswith("model_")}
    return summary, {"wall_s": round(wall, 2), "model_s": round(summary["timings"]["model"], 2), "stages": stages,
                     "load_before": before}


def wire_blend_if_needed() -> str:
    """`fit_stage` (workflows/run.py) passes blend=previous once the lead wires it; until then this process
    wraps it the same way (months_elapsed from the previous model's month) and the results say so."""
    from mailseg_dist.model.blend import months_between
    from mailseg_dist.workflows import run as run_module

    if "blend" in inspect.getsource(run_module.fit_stage):
        return "workflows.run.fit_stage"
    original = run_module.fit_stage

    def fit_stage(manifest, cfg, client, previous=None):
        if previous is None or cfg["update"]["mode"] != "blend":
            return original(manifest, cfg, client, previous)
        from mailseg_dist.model import modelling

        previous.months_elapsed = months_between(previous.month, manifest["month"])
        plain = modelling.fit_segments
        modelling.fit_segments = lambda path, cfg, client=None, start=None: plain(path, cfg, client, blend=previous)
        try:
            return original(manifest, cfg, client, previous)
        finally:
            modelling.fit_segments = plain

    run_module.fit_stage = fit_stage
    return "bench shim (fit_stage not wired yet)"


def run_series(ms, client, series: str, months: list[dict], work: Path, order_offset: int) -> dict:
    data_dir = work / series / "data"
    users = {}
    for m in months:
        manifest = ms.ingest(str(m["path"]), month=m["month"], data_dir=str(data_dir), client=client)
        users[m["month"]] = pd.read_parquet(manifest["users_path"])
    first = months[0]["month"]
    outs = {mode: work / series / mode for mode in MODES}
    summary, t = timed(ms.run, month=first, data_dir=str(data_dir), out=str(work / series / "fresh" / first),
                       client=client, k="auto")
    k = summary["k"]
    for mode in MODES:  # the same data, seed and k search: the same model in each mode's folder
        ms.run(month=first, data_dir=str(data_dir), out=str(outs[mode]), client=client, k="auto")
    print(f"{series} {first}: k={k} (auto), {t['wall_s']} s", flush=True)
    x = {mon: features(df) for mon, df in users.items()}
    ids = {mon: df["Id"].to_numpy() for mon, df in users.items()}
    model0 = load(outs["refit"])
    labels = {mode: {first: labels_and_sq(x[first], model0, model0.scaler)[0]} for mode in MODES}
    models = {mode: model0 for mode in MODES}
    rows = [{"month": first, "k": k, "fresh": {"inertia": summary["inertia"], "silhouette": summary["silhouette"],
                                                 **t}}]
    for i, m in enumerate(months[1:], start=1):
        mon, prev = m["month"], months[i - 1]["month"]
        row = {"month": mon, "hour_shift": m["hour_shift"], "true_shares": m["shares"]}
        plan = ["fresh", *MODES]
        plan = plan[(i + order_offset) % 3:] + plan[: (i + order_offset) % 3]
        row["order"] = plan
        timings = {}
        for what in plan:
            config = {"update": {"mode": "refit" if what == "fresh" else what}}
            if what == "fresh":
                summ, timings[what] = timed(ms.run, month=mon, data_dir=str(data_dir), k=k, config=config,
                                            out=str(work / series / "fresh" / mon), client=client)
            else:
                summ, timings[what] = timed(ms.update, month=mon, data_dir=str(data_dir), config=config,
                                            out=str(outs[what]), client=client)
            timings[what].update(inertia_own=summ["inertia"], silhouette=summ["silhouette"], n_iter=summ["n_iter"],
                                 engine=summ["engine"], k_choice=summ["k_choice"])
            print(f"{series} {mon} {what}: {timings[what]['wall_s']} s (model {timings[what]['model_s']} s), "
                  f"load {timings[what]['load_before']}", flush=True)
        fresh = load(work / series / "fresh" / mon)
        units = fresh.scaler
        _, sq_fresh = labels_and_sq(x[mon], fresh, units)
        row["fresh"] = {**timings["fresh"], "inertia": float(sq_fresh.sum())}
        row["feature_psi"] = feature_psi(users[prev], users[mon])
        people_prev = months[i - 1]["people"].set_index("Id")["segment"]
        people_now = m["people"].set_index("Id")["segment"]
        both = people_prev.index.intersection(people_now.index)
        row["returning"] = len(both)
        row["true_stability"] = round(float((people_prev[both] == people_now[both]).mean()), 4)
        for mode in MODES:
            model = load(outs[mode])
            lab, sq = labels_and_sq(x[mon], model, units)
            then = pd.Series(labels[mode][prev], index=ids[prev])[both].to_numpy()
            now = pd.Series(lab, index=ids[mon])[both].to_numpy()
            row[mode] = {**timings[mode], "inertia_vs_fresh": round(float(sq.sum() / sq_fresh.sum()), 5),
                         "id_stability": round(float((then == now).mean()), 4),
                         "share_psi": share_psi(labels[mode][prev], lab, k),
                         **id_checks(models[mode], model, units),
                         "time_vs_fresh": round(timings[mode]["wall_s"] / timings["fresh"]["wall_s"], 3),
                         "model_time_vs_fresh": round(timings[mode]["model_s"] / timings["fresh"]["model_s"], 3)}
            if mode == "blend":
                row[mode]["anchor_cost"] = round(anchor_cost(x[mon], model), 5)
            labels[mode][mon], models[mode] = lab, model
        rows.append(row)
        print(f"{series} {mon}: psi max {max(row['feature_psi'].values()):.3f}; " + "; ".join(
            f"{mode} stab {row[mode]['id_stability']:.3f} inertia x{row[mode]['inertia_vs_fresh']:.4f}"
            for mode in MODES) + f"; truth {row['true_stability']:.3f}", flush=True)
    return {"k": k, "months": rows}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def measure(rows: int, seed: int, work: Path) -> dict:
    import psutil
    from distributed import Client, LocalCluster

    import mailseg_dist as ms
    from mailseg_dist.core.config import load_config

    logging.basicConfig(level=logging.WARNING)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    wiring = wire_blend_if_needed()
    months = {s: build_series(s, rows, seed, work) for s in SERIES}
    result = {"rows": rows, "seed": seed, "months": MONTHS, "blend_wiring": wiring,
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                          "python": platform.python_version(), "load_at_start": loadavg()},
              "git": {"commit": git("rev-parse", "HEAD"),
                      "uncommitted_library_files": git("status", "--porcelain", "--", "mailseg_dist").splitlines()},
              "design": {"return_rate": RETURN_RATE, "switch_rate": SWITCH_RATE,
                         "gradual": f"seed segment {HEAVY} +{GRADUAL_SHARE_STEP:.0%} share a month, hour "
                                    f"+{GRADUAL_HOUR_STEP} h a month",
                         "sudden": f"seed segment {BOUNCERS} (bouncers) x{SUDDEN_FACTOR:g} from month {SUDDEN_MONTH}"},
              "config": {key: load_config()[key] for key in ("update", "model")},
              "series": {}}
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="4GiB", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for n, series in enumerate(SERIES):
            result["series"][series] = run_series(ms, client, series, months[series], work, n)
    result["machine"]["load_at_end"] = loadavg()
    return result


# ------------------------------------------------------------------ the README table
def _mean(values) -> float:
    return float(np.mean(list(values)))


def readme_table(result: dict) -> str:
    """The markdown table README's "Refit or blend" shows, from a results file."""
    head = ("| series | month | feature PSI (max) | true stay | id stability refit / blend | "
            "inertia vs fresh refit / blend (anchors' part) | segment-share PSI refit / blend | "
            "ids kept refit / blend | model s fresh / refit / blend | wall s fresh / refit / blend |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for series, data in result["series"].items():
        for row in data["months"][1:]:
            r, b, f = row["refit"], row["blend"], row["fresh"]
            lines.append(
                f"| {series} (k={data['k']}) | {row['month']} | {max(row['feature_psi'].values()):.3f} | {row['true_stability']:.3f} | "
                f"{r['id_stability']:.3f} / {b['id_stability']:.3f} | "
                f"{r['inertia_vs_fresh']:.4f} / {b['inertia_vs_fresh']:.4f} ({b['anchor_cost']:.4f}) | "
                f"{r['share_psi']:.4f} / {b['share_psi']:.4f} | "
                f"{'yes' if r['ids_nearest_own'] else 'no'} / {'yes' if b['ids_nearest_own'] else 'no'} | "
                f"{f['model_s']:.1f} / {r['model_s']:.1f} / {b['model_s']:.1f} | "
                f"{f['wall_s']:.1f} / {r['wall_s']:.1f} / {b['wall_s']:.1f} |")
    every = [row for data in result["series"].values() for row in data["months"][1:]]
    lines.append(
        "| **mean** | | | {:.3f} | {:.3f} / {:.3f} | {:.4f} / {:.4f} ({:.4f}) | {:.4f} / {:.4f} | | "
        "{:.1f} / {:.1f} / {:.1f} | {:.1f} / {:.1f} / {:.1f} |".format(
            _mean(r["true_stability"] for r in every),
            *(_mean(r[m]["id_stability"] for r in every) for m in MODES),
            *(_mean(r[m]["inertia_vs_fresh"] for r in every) for m in MODES),
            _mean(r["blend"]["anchor_cost"] for r in every),
            *(_mean(r[m]["share_psi"] for r in every) for m in MODES),
            *(_mean(r[m]["model_s"] for r in every) for m in ("fresh", *MODES)),
            *(_mean(r[m]["wall_s"] for r in every) for m in ("fresh", *MODES))))
    stages = [st for st in ("read", "scaler", "sample", "cache", "k_search", "final_fit", "quality")
              if any(st in r[w].get("stages", {}) for r in every for w in ("fresh", *MODES))]
    if stages:
        lines += ["", "Model stage, mean seconds fresh / refit / blend: " + "; ".join(
            f"{st.replace('_', ' ')} " + " / ".join(f"{_mean(r[w].get('stages', {}).get(st, 0.0) for r in every):.2f}"
                                                   for w in ("fresh", *MODES)) for st in stages) + "."]
    m = result["machine"]
    dirty = " + uncommitted library changes" if result["git"]["uncommitted_library_files"] else ""
    lines += ["", (f"{result['rows']:,} users a month, {result['date']}, "
                   f"commit `{result['git']['commit'][:7]}`{dirty}, {m['cores']} cores, load average "
                   f"{m['load_at_start']:.1f} at start and {m['load_at_end']:.1f} at end (shared machine; the three "
                   "fits of a month ran one after the other, in a rotating order).")]
    return "\n".join(lines)


def results_files() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("update_*.json")) if p.stem[7:].isdigit()]


def render(results: list[dict]) -> str:
    """README's table: the smallest size measured (200,000 users a month by default)."""
    return readme_table(min(results, key=lambda r: r["rows"])) + "\n"


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


def write_readme() -> None:
    readme_tables.write_block(render(results_files()), START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="users a month (default 200,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default /tmp/mailseg_bench_update_ROWS)")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from bench/results")
    args = parser.parse_args()
    path = RESULTS / f"update_{args.rows}.json"
    if not args.readme:
        result = measure(args.rows, args.seed, args.work or Path(f"/tmp/mailseg_bench_update_{args.rows}"))
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        print(readme_table(result))
    write_readme()


if __name__ == "__main__":
    sys.exit(main())
