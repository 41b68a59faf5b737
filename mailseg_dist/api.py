"""The Python API: everything `mailseg` does, callable from a notebook or a script.

The CLI (`jobs/`) is a thin shell over these functions: each command parses its
flags and calls one of them, so nothing the CLI does is out of reach here.
Errors are `mailseg_dist.MailsegError` subclasses whose `exit_code` is the
CLI's (2 usage or config, 3 input data, 4 cluster).

`config` is None (conf/base.yaml's defaults plus ./conf/local.yaml), the path of
a YAML file, or a dict shaped like conf/base.yaml; keyword arguments such as
`k` or `seed` override it. Without a `client`, each call starts a LocalCluster
(or connects to `cluster.scheduler`) and closes it before returning; a client
you pass is used and never closed. A LocalCluster starts worker processes: in a
script, call the API under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailseg_dist.core.catalog import Catalog, check_month
from mailseg_dist.core.config import load_config

if TYPE_CHECKING:
    from mailseg_dist.workflows.segmentation import Segmentation


def _config(config, **dotted) -> dict:
    return load_config(config, {key.replace("__", "."): v for key, v in dotted.items() if v is not None})


def _input(data, check: bool = True):
    """A path as an absolute local path or store URL (workers must find it), checked before any cluster
    starts; a pandas/Dask DataFrame or None as it is."""
    from mailseg_dist.workflows.run import is_frame

    if data is None or is_frame(data):
        return data
    from mailseg_dist.core.storage import location
    from mailseg_dist.inputs.readers import check_file

    found = location(data, "input")
    return check_file(found) if check else found


def model_source(folder):
    """Where a saved model is read from: the current version's folder when `folder` holds versions (whole
    and immutable, even while the top-level copies are being replaced), else `folder` itself."""
    from mailseg_dist.workflows.versions import current_version, version_dir

    current = current_version(folder)
    return folder if current is None else version_dir(folder, current)


def _check_month(month):
    return None if month is None else check_month(month)


def segment(data=None, *, k="auto", config=None, client=None, seed=None, month=None, data_dir=None,
            replace=False) -> Segmentation:
    """Segment the users in `data` with k-means on Dask; nothing is written but the data layers.

    Parameters
    ----------
    data : str, pathlib.Path, pandas.DataFrame, dask.dataframe.DataFrame or None
        An xlsx / CSV / Parquet file (local path or fsspec URL such as ``s3://``), or a frame with the
        input columns (any accepted header). None: the latest ingested month, else the bundled default data.
        A path or frame is ingested first (cleaned, with its rejects ledger) into `data_dir`.
    k : int or "auto"
        Number of segments; "auto" chooses it by the inertia knee and the stratified silhouette.
    config : None, str, pathlib.Path or dict
        Settings over the defaults (see conf/base.yaml).
    client : distributed.Client, optional
        Used and left open; None starts a LocalCluster for the call.
    seed : int, optional
        Overrides model.seed: the same data and seed give the same segments on any partitioning.
    month : str, optional
        YYYY-MM month to ingest the data as, or to model (default: the config's, else the current month).
    data_dir : str, optional
        Where the Parquet layers and rejects go (default: paths.data_dir, ``data`` in the current folder).
    replace : bool
        Re-ingest a month whose input content changed.

    Returns
    -------
    Segmentation
        k, k_table, k_reason, segments, scaler, model, metrics, manifest; `predict(df)` and `write(out)`.

    Examples
    --------
    >>> import mailseg_dist as ms
    >>> seg = ms.segment("users.xlsx", k=6, seed=42)          # doctest: +SKIP
    >>> seg.segments[["id", "name", "share", "action"]]      # doctest: +SKIP
    >>> seg.predict(new_users_df)                            # doctest: +SKIP
    >>> seg.write("Resultados")                              # doctest: +SKIP
    """
    from mailseg_dist.workflows.job import client_scope
    from mailseg_dist.workflows.run import fit_stage, ingest_stage
    from mailseg_dist.workflows.segmentation import Segmentation

    cfg = _config(config, model__k=k, model__seed=seed)
    month = _check_month(month)
    data, catalog = _input(data), Catalog(cfg, data_dir=data_dir)
    with client_scope(cfg, client) as active:
        manifest = ingest_stage(cfg, catalog, active, data, month, replace)
        result, table = fit_stage(manifest, cfg, active)
    return Segmentation(result, table, manifest, cfg, catalog)


def run(data=None, *, config=None, out=None, data_dir=None, month=None, replace=False, client=None, k=None,
        engine=None, seed=None, lang=None, scheduler=None, profile=False) -> dict:
    """`mailseg run`: ingest `data` (as in `segment`), fit, and write every output into `out`; the run summary.

    The output folder is locked before any cluster starts; run_summary.json is written last. `k`, `engine`,
    `seed`, `lang` and `scheduler` override model.k, model.engine, model.seed, report.lang and
    cluster.scheduler; `profile` saves a Dask performance report beside the outputs.
    """
    from mailseg_dist.workflows.job import job
    from mailseg_dist.workflows.run import run_job

    cfg = _config(config, model__k=k, model__engine=engine, model__seed=seed, report__lang=lang,
                  cluster__scheduler=scheduler)
    month = _check_month(month)
    data = _input(data)
    catalog = Catalog(cfg, data_dir=data_dir, out_dir=out)
    with job(cfg, catalog.out_dir, "mailseg run", client, profile) as (active, monitor):
        return run_job(cfg, catalog, active, data=data, month=month, replace=replace, monitor=monitor, locked=True)


def models(out=None, *, config=None) -> list[dict]:
    """`mailseg models`: every stored version of the output folder, oldest first.

    Each is its version.json (id, kind run|update, month, parent, input and its SHA-256, k, engine, metrics,
    segments, created_at) with `current` True on the one the top-level outputs are a copy of.
    """
    from mailseg_dist.workflows.versions import list_versions

    return list_versions(Catalog(_config(config), out_dir=out).out_dir)


def rollback(version: str, *, out=None, config=None) -> dict:
    """`mailseg rollback`: make `version` current again, restoring its exact model files and outputs.

    Takes the output folder's lock (no cluster is needed); returns that version's run summary.
    """
    from mailseg_dist.workflows.job import locked_folder
    from mailseg_dist.workflows.versions import rollback as restore

    out_dir = Catalog(_config(config), out_dir=out).out_dir
    with locked_folder(out_dir, "mailseg rollback"):
        return restore(out_dir, version)


def update(data=None, *, model_dir=None, config=None, out=None, data_dir=None, month=None, replace=False,
           client=None, engine=None, seed=None, lang=None, scheduler=None, profile=False,
           trust_unverified=False) -> dict:
    """`mailseg update`: refit a new month from the saved model in `model_dir` (default `out`); ids are kept.

    The previous model is verified by SHA-256 and read from plain JSON before any cluster starts.
    """
    from mailseg_dist.workflows.job import job
    from mailseg_dist.workflows.update import previous_segments, update_job

    cfg = _config(config, model__engine=engine, model__seed=seed, report__lang=lang, cluster__scheduler=scheduler)
    month = _check_month(month)
    data = _input(data)
    catalog = Catalog(cfg, data_dir=data_dir, out_dir=out)
    previous = previous_segments(model_source(Catalog(cfg, out_dir=model_dir or out).out_dir), cfg, trust_unverified)
    with job(cfg, catalog.out_dir, "mailseg update", client, profile) as (active, monitor):
        return update_job(cfg, catalog, active, previous, data=data, month=month, replace=replace, monitor=monitor,
                          trust_unverified=trust_unverified)


def score(data, *, model_dir=None, out=None, config=None, data_dir=None, month=None, client=None, lang=None,
          scheduler=None, trust_unverified=False) -> dict:
    """`mailseg score`: label the users in `data` with the saved model in `model_dir`, without refitting.

    Nothing is unpickled: the model is rebuilt from modelo.json after its SHA-256 is checked. Results go to
    `out` (default ``<model_dir>/scored``); returns the summary.
    """
    from mailseg_dist.workflows.job import client_scope
    from mailseg_dist.workflows.score import load_scoring_model, score_file

    cfg = _config(config, report__lang=lang, cluster__scheduler=scheduler)
    month = _check_month(month)
    data = _input(data)
    catalog = Catalog(cfg, data_dir=data_dir, out_dir=model_dir)
    saved = load_scoring_model(model_source(catalog.out_dir), cfg, trust_unverified)  # a refused one starts no cluster
    with client_scope(cfg, client) as active:
        return score_file(data, cfg, catalog, active, out_dir=out, month=month, trust_unverified=trust_unverified,
                          saved=saved)


def ingest(data, *, config=None, data_dir=None, month=None, replace=False, client=None, sheet=None, sep=None,
           decimal=None, scheduler=None) -> dict:
    """`mailseg ingest`: convert `data` (a file, or a pandas/Dask DataFrame) to the month's Parquet layers.

    Returns the month's manifest: rows in = kept + rejected, rejects by reason, the input's SHA-256.
    """
    from mailseg_dist.inputs.ingest import ingest as ingest_file
    from mailseg_dist.inputs.ingest import ingest_frame
    from mailseg_dist.workflows.job import client_scope
    from mailseg_dist.workflows.run import is_frame

    cfg = _config(config, cluster__scheduler=scheduler)
    month = _check_month(month)
    data = _input(data)
    catalog = Catalog(cfg, data_dir=data_dir)
    with client_scope(cfg, client) as active:
        if is_frame(data):
            return ingest_frame(data, cfg, catalog, month=month, replace=replace, client=active)
        return ingest_file(data, cfg, catalog, month=month, replace=replace, client=active, sheet=sheet, sep=sep,
                           decimal=decimal)


def generate(rows: int, out, *, format: str | None = None, seed: int | None = None, events: bool = False,
             months: int = 1, start: str = "2026-01", purchases: bool = True, sep: str = ",",
             config=None) -> dict:
    """`mailseg generate`: `rows` synthetic seed-like users written to `out` (xlsx, csv or parquet).

    The same rows and seed give the same file on any machine; `seed` defaults to default_data.seed.
    With `events=True`, `out` is a folder that receives an event log instead: `rows` users a month for
    `months` months from `start` (YYYY-MM), one file per chunk of users in `format` "parquet" (default)
    or "csv.gz" (separator `sep`), whose per-user aggregates are the generated users, plus
    purchases.csv (each buyer once a month, dated) unless `purchases` is False.
    """
    from mailseg_dist.workflows.generate import generate_events, generate_file

    cfg = _config(config)
    seed = cfg["default_data"]["seed"] if seed is None else seed
    if events:
        return generate_events(rows, out, format, seed, months, start, cfg["events"]["timezone"], purchases, sep)
    return generate_file(rows, out, fmt=format, seed=seed)


def ingest_events(events, *, purchases=None, month=None, by_month=False, config=None, data_dir=None,
                  replace=False, client=None, scheduler=None) -> dict:
    """`mailseg ingest-events`: aggregate raw event logs into the month's users layer, as `ingest` writes it.

    Parameters
    ----------
    events : str, pathlib.Path or list of them
        Event files or globs (CSV, gzip CSV with ',' or ';', Parquet; local paths or fsspec URLs), one
        row per event with the columns of ``events.columns`` (event id, customer id, campaign, type, time).
    purchases : str, optional
        A purchases or customers table: Comprador = 1 for its customers (with ``events.purchases.date``,
        only purchases dated in the table's window). None: Comprador = 0 for everyone (the summary says so).
    month : str, optional
        YYYY-MM label of the one users table built from all the events (default: ingest.month, else now).
    by_month : bool
        One users table per local calendar month of the events instead (for ``update`` month by month).
    config, data_dir, replace, client, scheduler
        As for `ingest`: the same content again is skipped, other content refused unless `replace`.

    Returns
    -------
    dict
        months written, skipped_months, events_read = events_used + events_rejected, users, and each
        month's manifest (rows_in/rows_kept/rows_rejected count events; rejects_by_reason; users_path).

    Examples
    --------
    >>> import mailseg_dist as ms
    >>> ms.ingest_events(["logs/*.csv.gz"], purchases="compras.csv", by_month=True)  # doctest: +SKIP
    """
    from mailseg_dist.inputs.event_ingest import ingest_events as build
    from mailseg_dist.inputs.event_ingest import precheck
    from mailseg_dist.workflows.job import client_scope

    cfg = _config(config, cluster__scheduler=scheduler)
    month = _check_month(month)
    patterns = [str(p) for p in ([events] if isinstance(events, (str, bytes)) or hasattr(events, "__fspath__")
                                 else events)]
    if not patterns:
        from mailseg_dist.core.errors import UsageError

        raise UsageError("ingest-events expected at least one event file")
    catalog = Catalog(cfg, data_dir=data_dir)
    patterns = precheck(patterns, cfg)
    with client_scope(cfg, client) as active:
        return build(patterns, cfg, catalog, month=month, by_month=by_month, purchases=purchases, replace=replace,
                     client=active)


def view(out=None, *, port: int = 8501, host: str = "127.0.0.1", lang=None, config=None) -> dict:
    """`mailseg view`: serve the local web app over an output folder until stopped (Ctrl+C).

    Parameters
    ----------
    out : str or pathlib.Path, optional
        The output folder of `mailseg run` (local path or store URL; default: paths.out_dir).
    port : int
        Port to listen on (8501).
    host : str
        Address to bind; 127.0.0.1 (this machine only) unless told otherwise.
    lang : {"es", "en"}, optional
        Language of the pages (default: report.lang).
    config : None, str, pathlib.Path or dict
        Settings over the defaults.

    Returns
    -------
    dict
        {"url", "out", "returncode"} once the server has stopped. Needs the `view` extra
        (``pip install "mailseg[view]"``); without it, a UsageError saying so.
    """
    from mailseg_dist.viewer.launch import serve

    cfg = _config(config)
    folder = out if out is not None else cfg["paths"]["out_dir"]
    return serve(folder, port=port, host=host, lang=lang or cfg["report"]["lang"])


def open_results(out=None, *, config=None):
    """The published output folder `out` for queries, as the viewer reads it (read-only).

    Returns a `mailseg_dist.viewer.queries.Results`; with `mailseg_dist.viewer.queries`' functions (`count`,
    `page`, `find_user`, `export_csv`, `transitions`) it answers what the viewer's pages show. A folder with no
    run_summary.json raises a UsageError saying so.
    """
    from mailseg_dist.viewer.queries import open_results as opened

    return opened(out if out is not None else _config(config)["paths"]["out_dir"])
