"""One function per CLI command: flags in, one call of the Python API (mailseg_dist), summary out.

Everything else — config, the output lock, the Dask client, the monitor, the
summary — lives in the library, so a Python user can do all that the CLI does.
"""

from __future__ import annotations

import logging

import mailseg_dist as api
from mailseg_dist.core.catalog import local_path
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import location

log = logging.getLogger("mailseg")

PATH_FLAGS = {"input": "input", "out": "--out", "data_dir": "--data-dir", "model_dir": "--model-dir",
              "purchases": "--purchases"}


def path_flags(args) -> None:
    """Every path flag as an absolute local path or an object-store URL, before anything is sent to workers;
    the config file is read by this process, so it is local."""
    for name, what in PATH_FLAGS.items():
        if getattr(args, name, None) is not None:
            setattr(args, name, str(location(getattr(args, name), what)))
    if getattr(args, "events", None) not in (None, True, False):  # ingest-events EVENTS... (generate: a flag)
        args.events = [str(location(p, "events")) for p in args.events]
    if getattr(args, "config", None) is not None:
        args.config = str(local_path(args.config, "--config"))


def _k_flag(value: str | None):
    if value in (None, "auto"):
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--k expected an integer or 'auto', found {value!r}") from None


def run(args) -> dict:
    return api.run(args.input, config=args.config, out=args.out, data_dir=args.data_dir, month=args.month,
                   replace=args.replace, k=_k_flag(args.k), engine=args.engine, seed=args.seed, lang=args.lang,
                   scheduler=args.scheduler, profile=args.profile)


def update(args) -> dict:
    return api.update(args.input, model_dir=args.model_dir, config=args.config, out=args.out,
                      data_dir=args.data_dir, month=args.month, replace=args.replace, engine=args.engine,
                      seed=args.seed, lang=args.lang, scheduler=args.scheduler, profile=args.profile,
                      trust_unverified=args.trust_unverified)


def ingest(args) -> dict:
    manifest = api.ingest(args.input, config=args.config, data_dir=args.data_dir, month=args.month,
                          replace=args.replace, sheet=args.sheet, sep=args.sep, decimal=args.decimal,
                          scheduler=args.scheduler)
    _log_reconciliation(manifest)
    return manifest


def generate(args) -> dict:
    if args.events:
        return api.generate(args.rows, args.out, format=args.format, seed=args.seed, events=True, months=args.months,
                            start=args.start, purchases=not args.no_purchases, sep=args.sep)
    if args.format == "csv.gz":
        raise UsageError("--format csv.gz is for --events; a users file is xlsx, csv or parquet")
    return api.generate(args.rows, args.out, format=args.format, seed=args.seed)


def ingest_events(args) -> dict:
    summary = api.ingest_events(args.events, purchases=args.purchases, month=args.month, by_month=args.by_month,
                                config=args.config, data_dir=args.data_dir, replace=args.replace,
                                scheduler=args.scheduler)
    for manifest in summary["manifests"]:
        if manifest["month"] in summary["skipped_months"]:
            log.info("month %s: events unchanged (sha256 %s…), nothing to do", manifest["month"],
                     manifest["sha256"][:12])
        log.info("month %s: %d events read = %d used + %d rejected; %d users (rejects: %s)", manifest["month"],
                 manifest["events_read"], manifest["events_used"], manifest["events_rejected"], manifest["users"],
                 manifest["rejects_path"])
    if summary["manifests"] and not summary["manifests"][0]["purchases"]:
        log.info("no --purchases table: Comprador is 0 for every user")
    return summary


def score(args) -> dict:
    return api.score(args.input, model_dir=args.model_dir, out=args.out, config=args.config,
                     data_dir=args.data_dir, month=args.month, lang=args.lang, scheduler=args.scheduler,
                     trust_unverified=args.trust_unverified)


def models(args) -> dict:
    versions = api.models(args.out, config=args.config)
    if not args.json:
        _print_versions(versions)
    return {"versions": versions}


def rollback(args) -> dict:
    return api.rollback(args.version, out=args.out, config=args.config)


def view(args) -> dict:
    return api.view(args.out, port=args.port, host=args.host, lang=args.lang, config=args.config)


def _print_versions(versions: list[dict]) -> None:
    """One line per version, the current one marked, as a person reads them."""
    if not versions:
        print("no stored versions (run `mailseg run` first)")
    for v in versions:
        mark = "*" if v["current"] else " "
        print(f"{mark} {v['id']}  {v['kind']:<6} month {v['month']}  k={v['k']}  {v['engine']:<9} "
              f"silhouette {v['metrics']['silhouette']:.3f}  parent {v.get('parent') or '-':<13} {v['created_at']}")


def _log_reconciliation(manifest: dict) -> None:
    if manifest.get("skipped"):
        log.info("month %s: input unchanged (sha256 %s…), nothing to do", manifest["month"], manifest["sha256"][:12])
    log.info("month %s: %d rows read = %d kept + %d rejected (rejects: %s)", manifest["month"], manifest["rows_in"],
             manifest["rows_kept"], manifest["rows_rejected"], manifest["rejects_path"])
