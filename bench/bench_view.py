"""Time the viewer's queries (mailseg_dist.viewer.queries) over a usuarios/-shaped Parquet folder.

    python bench/bench_view.py --rows 10000000            # builds bench/.work/view_10000000/ once, then times
    python bench/bench_view.py --rows 212292

The folder is synthetic but shaped like a real run's `usuarios/`: the same 17 columns and types (Id int64 in
random order, so Parquet statistics cannot prune an Id lookup; segmento / nivel / recomendacion
dictionary-encoded, ~500 advice texts), one part per 250,000 users with one row group each, as the workers
write them. Next to it a run_summary.json, segmentos.json and modelo.json make it a published folder.

Counts, pages and Id searches run in DuckDB, the export and the advice kinds in pyarrow (see queries.py).
Timed, each the median of --repeat runs in this one process (the page, filter and search must answer in
<= 1 s at 10M users): open the folder, count all, the first page, a filtered count (segment + buyer + days
+ hours), the first filtered page, a filtered page sorted by silhouette (descending, page 3), an Id search
(present, and absent), the advice kinds (the recommendation filter's choices), and a streamed export of one
segment (Spanish Excel CSV, written to /dev/null). Peak RSS of the process is read after all of them (the
app process holds the same data structures: <= 1 GiB). With --server, `mailseg view` also runs as a real process and the
export of ALL users is downloaded over HTTP while the server's RSS is sampled. Results go to
bench/results/view_<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mailseg_dist.viewer import queries as q

sys.path.insert(0, str(HERE))
import readme_tables  # the README's marked blocks

PART_ROWS = 250_000
NAMES = ["Rebotes: limpiar lista", "Muy enviados, compromiso moderado", "Poco comprometidos de noche",
         "Núcleo muy comprometido", "Compradores de mañana", "Dormidos"]
LEVELS = ["Baja", "Alta", "Baja", "Alta", "Alta", "Baja"]
SHARES = np.array([0.12, 0.17, 0.45, 0.02, 0.09, 0.15])
DAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
ACTIONS = ["Higiene de lista", "Reducir frecuencia y reactivar", "Reactivar con incentivo",
           "Fidelizar con ofertas exclusivas", "Venta cruzada", "Reactivar con incentivo"]


def _advice(cluster: int, day: int, hour: int, send: int, code: int) -> str:
    if code == 1:
        return f"Sunset: {send} envíos sin aperturas ni clics, último correo de recuperación y después suprimir " \
               f"(segmento: {NAMES[cluster]})."
    return f"{ACTIONS[cluster]}; mejor momento: {DAYS[day]} hacia las {hour}:00."


def build(folder: Path, rows: int, seed: int = 7) -> None:
    """A usuarios/ folder of `rows` users (parts of PART_ROWS), plus the published folder's JSON files."""
    users = folder / "usuarios"
    users.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, rows + 1, dtype=np.int64) * 7 + 1000)
    texts: dict[str, int] = {}
    sizes = np.zeros(len(NAMES), dtype=np.int64)
    for part, start in enumerate(range(0, rows, PART_ROWS)):
        n = min(PART_ROWS, rows - start)
        cluster = rng.choice(len(NAMES), size=n, p=SHARES)
        sizes += np.bincount(cluster, minlength=len(NAMES))
        send = rng.poisson(4, n).astype(np.int64)
        bounce = np.minimum(rng.poisson(0.3, n), send).astype(np.int64)
        opened = rng.binomial(send - bounce, 0.15).astype(np.int64)
        click = rng.binomial(opened, 0.1).astype(np.int64)
        buyer = (rng.random(n) < 0.2).astype(np.int64)
        hour = np.round(np.clip(rng.normal(18, 3, n), 0, 23.99), 2)
        day = np.round(np.clip(rng.normal(2.5, 1.2, n), 0, 6), 2)
        eng = (opened + 2 * click + 3 * buyer).astype(np.float64)
        rday = np.clip(np.floor(day + 0.5), 0, 6).astype(int)
        rhour = (np.floor(hour + 0.5) % 24).astype(int)
        code = ((opened == 0) & (send >= 10)).astype(int)
        keys = (cluster * 7 + rday) * 24 + rhour + 1000 * np.where(code == 1, send, 0)
        uniq, inverse = np.unique(keys, return_inverse=True)
        words = []
        for key in uniq:
            sendk, rest = divmod(int(key), 1000)
            c, rem = divmod(rest, 7 * 24)
            d, h = divmod(rem, 24)
            words.append(_advice(c, d, h, sendk, 1 if sendk else 0))
        for w in words:
            texts.setdefault(w, len(texts))
        table = pa.table({
            "Id": ids[start:start + n], "send": send, "bounce": bounce, "open": opened, "click": click,
            "Total": send + opened + click, "Comprador": buyer, "hour": hour, "day_of_week": day,
            "engagement_score": eng, "cluster": cluster.astype(np.int64),
            "silhouette_score": np.round(rng.uniform(-0.2, 0.9, n), 6), "pca1": rng.normal(0, 1, n),
            "pca2": rng.normal(0, 1, n),
            "segmento": pa.DictionaryArray.from_arrays(pa.array(cluster, pa.int32()), pa.array(NAMES)),
            "nivel": pa.DictionaryArray.from_arrays(pa.array(cluster, pa.int32()), pa.array(LEVELS)),
            "recomendacion": pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), pa.array(words)),
        })
        pq.write_table(table, users / f"part-{part:05d}.parquet", row_group_size=PART_ROWS)
    segments = [{"cluster": c, "nombre": NAMES[c], "nivel": LEVELS[c], "size": int(sizes[c]),
                 "share": float(sizes[c] / rows), "accion_corta": ACTIONS[c], "accion": ACTIONS[c],
                 "motivo": "sintético", "accion_codigo": "segment"} for c in range(len(NAMES))]
    (folder / "segmentos.json").write_text(json.dumps({"segments": segments, "population": {}}), encoding="utf-8")
    summary = {"month": "2026-12", "rows_in": rows, "rows_kept": rows, "rows_rejected": 0, "k": len(NAMES),
               "segments": [{"cluster": s["cluster"], "name": s["nombre"], "level": s["nivel"],
                             "users": s["size"], "share": s["share"]} for s in segments]}
    (folder / "run_summary.json").write_text(json.dumps(summary), encoding="utf-8")


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def server_export(folder: Path, rows: int) -> dict:
    """`mailseg view` as a real process: download /export.csv of ALL users over HTTP (streamed) and sample
    the server process tree's RSS every 0.2 s meanwhile (the claim: the app stays <= 1 GiB at 10M)."""
    import socket
    import subprocess
    import threading
    import urllib.request

    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "view", "--out", str(folder), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=HERE.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        tree = psutil.Process(proc.pid)
        peak, done = [0], threading.Event()

        def sample():
            while not done.is_set():
                try:
                    total = sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)])
                    peak[0] = max(peak[0], total)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        idle = sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)])
        start, size, lines = time.perf_counter(), 0, 0
        with urllib.request.urlopen(url + "/export.csv?excel=1&lang=es", timeout=600) as answer:
            while block := answer.read(1 << 20):
                size += len(block)
                lines += block.count(b"\n")  # not CRLF: a block may end between CR and LF
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert lines - 1 == rows, (lines, rows)
    return {"export_all_http_s": round(seconds, 2), "export_all_rows": lines - 1, "export_all_bytes": size,
            "server_rss_idle_mib": round(idle / 2**20, 1), "server_rss_peak_mib": round(peak[0] / 2**20, 1)}


START, END = "<!-- bench:view:start -->", "<!-- bench:view:end -->"


def _s(x: float) -> str:
    return f"{x:.2f} s" if x < 10 else f"{x:.0f} s"


def render(records: list[dict]) -> str:
    """README's viewer table, one row per size (smallest first), from bench/results/view_<rows>.json."""
    lines = ["| users | page | filtered count | filtered page | sorted page (filtered, p. 3; all users, p. 1) | "
             "Id search (found; absent) | export of one segment | peak RSS | load average |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["rows"]):
        t, server = r["seconds"], r.get("server")
        export = f"{r['answers']['export_rows']:,} rows in {_s(t['export_segment'])}"
        if server:
            export += f"; all {server['export_all_rows']:,} over HTTP in {_s(server['export_all_http_s'])}"
        rss = f"queries {r['peak_rss_mib']:.0f} MiB" + (f", server {server['server_rss_peak_mib']:.0f} MiB"
                                                        if server else "")
        lines.append(f"| {r['rows']:,} | {_s(t['page_first'])} | {_s(t['filter_count'])} | {_s(t['filter_page'])} | "
                     f"{_s(t['filter_page_sorted_p3'])}; {_s(t['page_sorted_all_p1'])} | "
                     f"{_s(t['search_present'])}; {_s(t['search_absent'])} | {export} | {rss} | "
                     f"{r['load_average'][0]:.1f} |")
    when = ", ".join(f"{r['rows']:,}: {r['when']}, median of {r['repeat']}" for r in records)
    return "\n".join([*lines, "", f"({when}; {records[0]['cpus']} cores.)"]) + "\n"


def results_files() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("view_*.json"))]


def readme_block(text: str) -> str:
    return readme_tables.readme_block(text, START, END)


def write_readme() -> None:
    readme_tables.write_block(render(results_files()), START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", help="default: bench/.work/view_<rows>")
    parser.add_argument("--server", action="store_true",
                        help="also start `mailseg view` and download the export of all users over HTTP")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    args = parser.parse_args()
    if args.readme:
        write_readme()
        return
    folder = Path(args.folder or HERE / ".work" / f"view_{args.rows}")
    if not (folder / "run_summary.json").exists():
        start = time.perf_counter()
        build(folder, args.rows)
        print(f"built {folder} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    size = sum(p.stat().st_size for p in (folder / "usuarios").iterdir())

    results = {}
    t, res = timed(lambda: q.open_results(folder), args.repeat)
    results["open"] = t
    res.users()
    present = int(pq.read_table(next(iter(sorted((folder / "usuarios").iterdir()))), columns=["Id"])["Id"][123])
    absent = 1000 + 7 * (args.rows // 2) + 3  # inside every part's Id range (no statistics pruning), not an Id
    filters = q.Filters(clusters=(2,), buyer=True, days=(1, 2), hours=(18, 21))
    checks = {
        "count_all": lambda: q.count(res),
        "page_first": lambda: q.page(res, limit=50),
        "filter_count": lambda: q.count(res, filters),
        "filter_page": lambda: q.page(res, filters, limit=50),
        "filter_page_sorted_p3": lambda: q.page(res, filters, offset=100, limit=50, sort_by="silhouette_score",
                                                 descending=True),
        "page_sorted_all_p1": lambda: q.page(res, limit=50, sort_by="silhouette_score", descending=True),
        "search_present": lambda: q.find_user(res, str(present)),
        "search_absent": lambda: q.find_user(res, str(absent)),
        "advice_kinds": lambda: q.advice_kinds(res),
    }
    answers = {}
    for name, fn in checks.items():
        results[name], answers[name] = timed(fn, args.repeat)
    assert answers["count_all"] == args.rows
    assert answers["search_present"]["Id"] == present and answers["search_absent"] is None
    assert len(answers["filter_page"]) == 50 and 0 < answers["filter_count"] < args.rows

    export_filter = q.Filters(clusters=(1,))
    start, written, lines = time.perf_counter(), 0, 0
    with open(os.devnull, "wb") as sink:
        for chunk in q.export_csv(res, export_filter, excel=True):
            sink.write(chunk)
            written += len(chunk)
            lines += chunk.count(b"\r\n")
    results["export_segment"] = time.perf_counter() - start
    assert lines - 1 == q.count(res, export_filter)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    record = {
        "rows": args.rows, "parts": len(list((folder / "usuarios").iterdir())), "parquet_bytes": size,
        "seconds": {k: round(v, 4) for k, v in results.items()},
        "answers": {"filter_count": answers["filter_count"], "advice_kinds": len(answers["advice_kinds"]),
                    "export_rows": lines - 1, "export_bytes": written},
        "peak_rss_bytes": peak, "peak_rss_mib": round(peak / 2**20, 1),
        "export_rows_per_s": round((lines - 1) / results["export_segment"]),
        "targets": {"page_filter_search_s": 1.0, "rss_mib": 1024},
        "within_targets": all(results[k] <= 1.0 for k in ("page_first", "filter_count", "filter_page",
                                                          "filter_page_sorted_p3", "search_present",
                                                          "search_absent")) and peak <= 2**30,
        "repeat": args.repeat, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "pyarrow": pa.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.server:
        record["server"] = server_export(folder, args.rows)
        record["within_targets"] = record["within_targets"] and record["server"]["server_rss_peak_mib"] <= 1024
    out = HERE / "results" / f"view_{args.rows}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
