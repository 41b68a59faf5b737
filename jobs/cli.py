"""`mailseg` command line: parse arguments, load config, open the Dask client, call the library.

Exit codes: 0 success, 2 usage or config error, 3 input data error, 4 cluster
or connection error (1: an unexpected failure, with a traceback under --debug).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import warnings

from mailseg_dist import MailsegError
from mailseg_dist.core.settings import choices

from . import commands

EPILOG = "Exit codes: 0 ok, 2 usage/config error, 3 input data error, 4 cluster/connection error."


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding conf/base.yaml and conf/local.yaml")
    parser.add_argument("--data-dir", metavar="DIR", help="folder (or s3://, gs://, abfs:// URL) of raw inputs, Parquet layers and rejects (paths.data_dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object as the last line of stdout")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _cluster(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of an existing Dask scheduler (tcp://host:8786, tls://...); default: a LocalCluster")


def _modelling(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that fit and publish (run, update)."""
    _common(parser)
    _cluster(parser)
    parser.add_argument("--out", metavar="DIR", help="output folder (paths.out_dir, default Resultados)")
    parser.add_argument("--month", metavar="YYYY-MM", help="month to ingest INPUT as, or to model (default: latest)")
    parser.add_argument("--engine", choices=choices("model.engine"), help="fitting engine (model.engine)")
    parser.add_argument("--seed", type=int, help="random seed (model.seed)")
    parser.add_argument("--lang", choices=choices("report.lang"), help="language of names, recommendations and report")
    parser.add_argument("--replace", action="store_true", help="re-ingest a month whose input content changed")
    parser.add_argument("--profile", action="store_true",
                        help="save a Dask performance report to <out>/dask_performance_report.html")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailseg", description="Segment mailing users with distributed k-means.",
                                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="ingest (if INPUT is given), fit segments and write every output", epilog=EPILOG)
    run.add_argument("input", nargs="?", metavar="INPUT",
                     help="xlsx/CSV/Parquet of users; default: the latest ingested month, else the bundled default data")
    _modelling(run)
    run.add_argument("--k", metavar="K|auto", help="number of segments, or auto to choose it (model.k)")

    update = sub.add_parser("update", epilog=EPILOG,
                            help="refit on a new month starting from the saved model; segment ids stay the same")
    update.add_argument("input", nargs="?", metavar="INPUT",
                        help="xlsx/CSV/Parquet of this month's users; default: the latest ingested month")
    _modelling(update)
    update.add_argument("--model-dir", metavar="DIR", help="folder of the previous model (default: --out)")
    update.add_argument("--trust-unverified", action="store_true",
                        help="use a previous model whose hashes cannot be verified (unsafe; warns)")

    ingest = sub.add_parser("ingest", help="convert an input file to the month's partitioned Parquet", epilog=EPILOG)
    ingest.add_argument("input", metavar="INPUT", help="xlsx, CSV (',' or ';' with decimal commas) or Parquet file")
    _common(ingest)
    _cluster(ingest)
    ingest.add_argument("--month", metavar="YYYY-MM", help="month partition (default: ingest.month or current month)")
    ingest.add_argument("--sheet", help="xlsx sheet name (default: the first sheet)")
    ingest.add_argument("--sep", help="CSV separator (default: detected)")
    ingest.add_argument("--decimal", help="CSV decimal mark (default: ',' when the separator is ';')")
    ingest.add_argument("--replace", action="store_true", help="overwrite a month ingested from other content")

    events = sub.add_parser("ingest-events", epilog=EPILOG,
                            help="aggregate raw event logs (CSV, gzip CSV, Parquet) into the month's users table")
    events.add_argument("events", nargs="+", metavar="EVENTS", help="event files or globs (local or s3://...)")
    _common(events)
    _cluster(events)
    events.add_argument("--purchases", metavar="FILE", help="purchases/customers table: Comprador = 1 for its customers")
    when = events.add_mutually_exclusive_group()
    when.add_argument("--month", metavar="YYYY-MM", help="label of the one users table (default: ingest.month or now)")
    when.add_argument("--by-month", action="store_true", help="one users table per calendar month of the events")
    events.add_argument("--replace", action="store_true", help="overwrite months ingested from other content")

    gen = sub.add_parser("generate", help="write synthetic users shaped like the seed data", epilog=EPILOG)
    gen.add_argument("--rows", type=int, required=True, help="number of users")
    gen.add_argument("--out", metavar="FILE", required=True, help="output file")
    gen.add_argument("--format", choices=(*choices("default_data.format"), "csv.gz"),
                     help="default: from the file name (--events: parquet)")
    gen.add_argument("--seed", type=int, help="random seed (default: default_data.seed, 42)")
    gen.add_argument("--events", action="store_true",
                     help="write an event log into the folder --out instead (format parquet or csv.gz)")
    gen.add_argument("--months", type=int, default=1, help="--events: months of events (default 1)")
    gen.add_argument("--start", default="2026-01", metavar="YYYY-MM", help="--events: first month (default 2026-01)")
    gen.add_argument("--sep", default=",", help="--events with csv.gz: separator, ',' or ';'")
    gen.add_argument("--no-purchases", action="store_true", help="--events: no purchases.csv")
    gen.add_argument("--json", action="store_true", help="print one JSON summary object as the last line of stdout")
    gen.add_argument("--debug", action="store_true", help="show tracebacks")

    models = sub.add_parser("models", help="list the stored model versions of an output folder", epilog=EPILOG)
    models.add_argument("--out", metavar="DIR", help="output folder (paths.out_dir, default Resultados)")
    models.add_argument("--config", metavar="FILE", help="YAML file overriding the defaults")
    models.add_argument("--json", action="store_true", help="print the versions as one JSON object (last line)")
    models.add_argument("--debug", action="store_true", help="show tracebacks")

    rollback = sub.add_parser("rollback", epilog=EPILOG,
                              help="make an earlier model version current again, with its exact outputs")
    rollback.add_argument("version", metavar="VERSION", help="a version id listed by `mailseg models`")
    rollback.add_argument("--out", metavar="DIR", help="output folder (paths.out_dir, default Resultados)")
    rollback.add_argument("--config", metavar="FILE", help="YAML file overriding the defaults")
    rollback.add_argument("--json", action="store_true", help="print the restored run summary as JSON")
    rollback.add_argument("--debug", action="store_true", help="show tracebacks")

    score = sub.add_parser("score", help="apply a saved model to new users without refitting", epilog=EPILOG)
    score.add_argument("input", metavar="INPUT", help="xlsx/CSV/Parquet of users to score")
    _common(score)
    _cluster(score)
    score.add_argument("--model-dir", metavar="DIR", help="folder with the saved model (default: paths.out_dir)")
    score.add_argument("--out", metavar="DIR", help="output folder for the scored users (default: <model-dir>/scored)")
    score.add_argument("--month", metavar="YYYY-MM", help="month partition for the scored input")
    score.add_argument("--lang", choices=choices("report.lang"), help="language of names and recommendations")
    score.add_argument("--trust-unverified", action="store_true",
                       help="load pickles whose hash cannot be verified (unsafe; warns)")
    view = sub.add_parser("view", epilog=EPILOG,
                          help="serve a local web app to browse segments, find users and export audiences")
    view.add_argument("--out", metavar="DIR", help="output folder to show (paths.out_dir, default Resultados)")
    view.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")
    view.add_argument("--lang", choices=choices("report.lang"), help="language of the pages (default: report.lang)")
    view.add_argument("--config", metavar="FILE", help="YAML file overriding the defaults")
    view.add_argument("--json", action="store_true", help="print the server's summary as JSON when it stops")
    view.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _setup_logging(debug: bool) -> None:
    """Our progress lines on stderr; Dask's own chatter only with --debug (its errors still show)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mailseg: %(message)s"))
    ours = logging.getLogger("mailseg")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.DEBUG if debug else logging.INFO)
    ours.propagate = False
    if not debug:
        import dask

        dask.config.set({"logging": {"distributed": "error", "distributed.client": "error"}})
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                     "distributed.core", "distributed.http.proxy", "distributed.shuffle", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line for the user (where it came from only with --debug)."""
    print(f"mailseg: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    try:
        with warnings.catch_warnings():  # restores the caller's warning display when main() returns
            if not args.debug:
                warnings.showwarning = _one_line_warning
            commands.path_flags(args)
            summary = getattr(commands, args.command.replace("-", "_"))(args)
    except MailsegError as exc:
        print(f"mailseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mailseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line unless --debug
        if args.debug:
            raise
        print(f"mailseg: unexpected error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              " (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
    return 0


def console() -> int:
    """The `mailseg` console script: `main`, then exit without collecting the heap first.

    The interpreter's last garbage collection walks every object the imports left (~370,000: scikit-learn,
    scipy, matplotlib, pandas, Dask): 1.4 s of a 212,292-user run's 33 s on a slow 2-core machine, after
    every output was written. Frozen objects are left to the operating system; atexit handlers still run."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console())
