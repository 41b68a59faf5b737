"""One function per CLI command: config from flags, client opened and closed here, work in the library."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from mailseg_dist.core.catalog import Catalog, check_month, local_path
from mailseg_dist.core.config import load_config
from mailseg_dist.core.storage import is_remote, location

log = logging.getLogger("mailseg")


def _config(args, **flags) -> dict:
    return load_config(getattr(args, "config", None), {k: v for k, v in flags.items() if v is not None})


PATH_FLAGS = {"input": "input", "out": "--out", "data_dir": "--data-dir", "model_dir": "--model-dir"}


def path_flags(args) -> None:
    """Every path flag as an absolute local path or an object-store URL, before anything is sent to workers;
    the config file is read by this process, so it is local."""
    for name, what in PATH_FLAGS.items():
        if getattr(args, name, None) is not None:
            setattr(args, name, str(location(getattr(args, name), what)))
    if getattr(args, "config", None) is not None:
        args.config = str(local_path(args.config, "--config"))


def _check_at_the_door(args) -> None:
    """Checks that need no cluster: a bad month or a missing input never starts one."""
    if getattr(args, "month", None) is not None:
        check_month(args.month)
    if getattr(args, "input", None) is not None:
        from mailseg_dist.inputs.readers import check_file

        check_file(args.input)


def run(args) -> dict:
    k = args.k if args.k in (None, "auto") else _int_flag("--k", args.k)
    cfg = _config(args, **{"model.k": k, "model.engine": args.engine, "model.seed": args.seed,
                           "report.lang": args.lang, "cluster.scheduler": args.scheduler})
    _check_at_the_door(args)
    return _run_job(args, cfg, "mailseg run")


def update(args) -> dict:
    cfg = _config(args, **{"model.engine": args.engine, "model.seed": args.seed, "report.lang": args.lang,
                           "cluster.scheduler": args.scheduler})
    _check_at_the_door(args)
    from mailseg_dist.workflows.update import previous_segments

    model_dir = Catalog(cfg, out_dir=args.model_dir or args.out).out_dir
    previous = previous_segments(model_dir, cfg, args.trust_unverified)  # a refused model starts no cluster
    return _run_job(args, cfg, "mailseg update", previous=previous)


def _run_job(args, cfg: dict, holder: str, previous=None) -> dict:
    from mailseg_dist.core.atomic import (
        folder_lock,  # heavy imports (Dask dataframe) only once the flags are valid
    )
    from mailseg_dist.core.client import open_client
    from mailseg_dist.core.monitor import RunMonitor
    from mailseg_dist.workflows.run import run_job

    catalog = Catalog(cfg, data_dir=args.data_dir, out_dir=args.out)
    profile = catalog.out_dir / "dask_performance_report.html" if args.profile else None
    new_folder = not is_remote(catalog.out_dir) and not catalog.out_dir.exists()
    try:
        # The lock comes before the cluster: a second job on the same folder is refused at once.
        with folder_lock(catalog.out_dir, holder), open_client(cfg["cluster"], args.scheduler) as client, \
                RunMonitor(client, profile) as monitor:
            return run_job(cfg, catalog, client, input_path=args.input, month=args.month, replace=args.replace,
                           monitor=monitor, locked=True, previous=previous)
    finally:
        if new_folder:  # made only to hold the lock: a run that failed before writing leaves no empty folder
            with contextlib.suppress(OSError):
                catalog.out_dir.rmdir()


def ingest(args) -> dict:
    cfg = _config(args, **{"cluster.scheduler": args.scheduler})
    _check_at_the_door(args)
    from mailseg_dist.core.client import open_client
    from mailseg_dist.inputs.ingest import ingest as ingest_file

    catalog = Catalog(cfg, data_dir=args.data_dir)
    with open_client(cfg["cluster"], args.scheduler) as client:
        manifest = ingest_file(args.input, cfg, catalog, month=args.month, replace=args.replace, client=client,
                               sheet=args.sheet, sep=args.sep, decimal=args.decimal)
    _log_reconciliation(manifest)
    return manifest


def generate(args) -> dict:
    from mailseg_dist.inputs.generate import write_generated

    started = time.perf_counter()
    fmt = args.format or Path(args.out).suffix.lstrip(".").lower()
    if fmt not in ("xlsx", "csv", "parquet"):
        from mailseg_dist.core.errors import UsageError

        raise UsageError(f"{args.out}: cannot tell the format from the name; pass --format xlsx|csv|parquet")
    if args.rows < 1:
        from mailseg_dist.core.errors import UsageError

        raise UsageError(f"--rows expected a positive number of users, found {args.rows}")
    path = write_generated(args.out, args.rows, fmt, seed=args.seed)
    seconds = round(time.perf_counter() - started, 3)
    log.info("wrote %d users to %s in %.1f s", args.rows, path, seconds)
    return {"rows": args.rows, "path": str(path), "format": fmt, "seed": args.seed, "timings": {"generate": seconds}}


def score(args) -> dict:
    cfg = _config(args, **{"report.lang": args.lang, "cluster.scheduler": args.scheduler})
    _check_at_the_door(args)
    from mailseg_dist.core.client import open_client
    from mailseg_dist.workflows.score import load_scoring_model, score_file

    catalog = Catalog(cfg, data_dir=args.data_dir, out_dir=args.model_dir)
    saved = load_scoring_model(catalog.out_dir, cfg, args.trust_unverified)  # a refused model starts no cluster
    with open_client(cfg["cluster"], args.scheduler) as client:
        return score_file(args.input, cfg, catalog, client, out_dir=args.out, month=args.month,
                          trust_unverified=args.trust_unverified, saved=saved)


def _int_flag(name: str, value: str) -> int:
    from mailseg_dist.core.errors import UsageError

    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name} expected an integer or 'auto', found {value!r}") from None


def _log_reconciliation(manifest: dict) -> None:
    if manifest.get("skipped"):
        log.info("month %s: input unchanged (sha256 %s…), nothing to do", manifest["month"], manifest["sha256"][:12])
    log.info("month %s: %d rows read = %d kept + %d rejected (rejects: %s)", manifest["month"], manifest["rows_in"],
             manifest["rows_kept"], manifest["rows_rejected"], manifest["rejects_path"])
