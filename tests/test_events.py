"""ingest-events (issue 14): event logs → the month's users table, checked against pandas on the same events.

Every Dask result is compared with a plain pandas groupby of the same events (counts exactly,
means to 1e-9); rejects carry their reasons and the run reconciles read = used + rejected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, mailseg, one_json_last_line, write_config

import mailseg_dist as ms
from mailseg_dist.core.catalog import Catalog
from mailseg_dist.core.config import load_config
from mailseg_dist.inputs.event_ingest import ingest_events
from mailseg_dist.inputs.ingest import ingest
from mailseg_dist.inputs.schema import CLEAN_COLUMNS, SOURCE_ROW

TZ = "Europe/Madrid"
CODES = {"s": "send", "send": "send", "sent": "send", "v": "open", "open": "open", "opened": "open", "c": "click",
         "click": "click", "clicked": "click", "b": "bounce", "bounce": "bounce", "bounced": "bounce",
         "e": "other", "error": "other"}
CAP = 365.0


def random_events(n: int, seed: int = 0, customers: int = 300, months=("2026-01", "2026-02")) -> pd.DataFrame:
    """Events over `months` (UTC text), with codes and words mixed, unique event ids."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(f"{months[0]}-01", tz="UTC").value
    last = (pd.Timestamp(f"{months[-1]}-01", tz="UTC") + pd.offsets.MonthBegin(1)).value - 1
    ts = pd.to_datetime(rng.integers(first, last, n), utc=True).floor("s")
    types = rng.choice(["S", "S", "S", "V", "C", "B", "E", "send", "open", " click ", "bounce"], n)
    return pd.DataFrame({"event_id": rng.permutation(10 * n)[:n].astype("int64"),
                         "customer_id": rng.integers(1, customers, n).astype("int64"),
                         "campaign_id": rng.integers(0, 15, n).astype("int64"),
                         "delivery_id": rng.integers(0, 99, n).astype("int64"),
                         "event_type": types,
                         "event_time": ts.strftime("%Y-%m-%dT%H:%M:%SZ")})


def pandas_users(events: pd.DataFrame, window_end: int, buyers=()) -> pd.DataFrame:
    """The reference: valid events, first copy of each event id, then one pandas groupby."""
    ts = pd.to_datetime(events["event_time"], utc=True, format="ISO8601", errors="coerce")
    kind = events["event_type"].astype(str).str.strip().str.lower().map(CODES)
    ok = events["customer_id"].notna() & kind.notna() & ts.notna()
    ev = events[ok].assign(kind=kind[ok], ts=ts[ok])
    ev = ev[~ev["event_id"].duplicated(keep="first")]
    local = ev["ts"].dt.tz_convert(TZ)
    ev = ev.assign(hour=local.dt.hour, dow=local.dt.dayofweek, ns=ev["ts"].dt.as_unit("ns").astype("int64"))
    g = ev.groupby("customer_id")
    out = pd.DataFrame({k: g["kind"].apply(lambda s, k=k: int((s == k).sum())) for k in
                        ("send", "bounce", "open", "click")})
    out["Total"] = g.size()
    out["Comprador"] = out.index.isin(list(buyers)).astype("int64")
    out["hour"] = g["hour"].mean()
    out["day_of_week"] = g["dow"].mean()
    for name, k in (("days_since_open", "open"), ("days_since_click", "click")):
        last = ev[ev["kind"] == k].groupby("customer_id")["ns"].max().reindex(out.index)
        out[name] = ((window_end - last) / 86_400e9).clip(0, CAP).fillna(CAP)
    out["campaigns"] = g["campaign_id"].nunique()
    clicks = ev[ev["kind"] == "click"].groupby("customer_id")["hour"].mean().reindex(out.index)
    out["click_hour"] = clicks.fillna(out["hour"])
    return out


def assert_same_users(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.set_index("Id").sort_index()
    assert got.index.tolist() == want.index.tolist()
    for column in ("send", "bounce", "open", "click", "Total", "Comprador", "campaigns"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), err_msg=column)
    for column in ("hour", "day_of_week", "days_since_open", "days_since_click", "click_hour"):
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=0, atol=1e-9,
                                   err_msg=column)


def write_files(events: pd.DataFrame, folder: Path, pieces: int, fmt: str = "parquet", sep: str = ",") -> list[str]:
    """`pieces` files of consecutive rows (the second one empty), in order."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(events), pieces, dtype=int)
    parts = [events.iloc[:bounds[1]], events.iloc[0:0]] + [events.iloc[bounds[i]:bounds[i + 1]]
                                                          for i in range(1, pieces - 1)]
    paths = []
    for i, part in enumerate(parts):
        path = folder / f"events-{i}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        else:
            part.to_csv(path, index=False, sep=sep, compression="gzip")
        paths.append(str(path))
    return paths


def config(**events) -> dict:
    cfg = load_config({"events": {"part_rows": 1000, "users_parts": 3, **events}})
    return cfg


def users_of(catalog: Catalog, month: str) -> pd.DataFrame:
    return pd.read_parquet(catalog.users(month))


def window_end_of(events: pd.DataFrame) -> int:
    """The latest time of a usable event (the reference date of days_since_* for a --month table)."""
    ts = pd.to_datetime(events["event_time"], utc=True, format="ISO8601", errors="coerce")
    ok = ts.notna() & events["customer_id"].notna() & events["event_type"].astype(str).str.strip().str.lower().isin(CODES)
    return int(ts[ok].max().value)


# ---------------------------------------------------------------- aggregation = pandas
def test_dask_aggregation_equals_a_pandas_groupby_of_the_same_events(tmp_path, dask_client):
    events = random_events(6000)
    paths = write_files(events, tmp_path / "in", pieces=4)  # 3 files with rows + an empty one; 1000-row parts
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    summary = ingest_events(paths, config(), catalog, month="2026-02", client=dask_client)
    assert summary["events_read"] == 6000 == summary["events_used"] and summary["events_rejected"] == 0
    assert_same_users(users_of(catalog, "2026-02"), pandas_users(events, window_end_of(events)))
    assert summary["manifests"][0]["buyers_from"].startswith("none given")


def test_users_layer_has_the_ingest_columns_and_dtypes(tmp_path, dask_client):
    """run/update/score read the events-built table as an ingested one: same clean columns, same dtypes."""
    events = random_events(800)
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    ingest_events(write_files(events, tmp_path / "in", 3), config(), catalog, month="2026-01", client=dask_client)
    built = users_of(catalog, "2026-01")
    users = built[CLEAN_COLUMNS].copy()
    users.to_csv(tmp_path / "users.csv", index=False)
    ingest(tmp_path / "users.csv", load_config(), Catalog(load_config(), data_dir=tmp_path / "ref"), month="2026-01",
           client=dask_client)
    reference = pd.read_parquet(Catalog(load_config(), data_dir=tmp_path / "ref").users("2026-01"))
    assert built.columns.tolist() == [*CLEAN_COLUMNS, SOURCE_ROW, "days_since_open", "days_since_click",
                                      "campaigns", "click_hour"]
    assert built[[*CLEAN_COLUMNS, SOURCE_ROW]].dtypes.to_dict() == reference.dtypes.to_dict()


# ---------------------------------------------------------------- rejects and reconciliation
def increasing_log(folder: Path, id_kind: str, reexport: bool) -> tuple[list[str], pd.DataFrame]:
    """A log exported by date: increasing event ids, files a (rows 0-2999: 3 parts of 1000), an empty one and
    b (3002 rows: 4 parts) where two events are copied inside one part; with `reexport`, a file c repeating
    10 events of a's third part (a re-exported block). Returns the paths in order and the events they hold."""
    events = random_events(6000, seed=3)
    ids = pd.Series(np.arange(6000, dtype="int64") * 3)
    events["event_id"] = ids.map(lambda i: f"ev-{i:07d}") if id_kind == "text" else ids  # padded: same order
    events = pd.concat([events.iloc[:4500], events.iloc[[4005, 4100]], events.iloc[4500:]], ignore_index=True)
    files = {"a": events.iloc[:3000], "empty": events.iloc[:0], "b": events.iloc[3000:]}
    if reexport:
        files["c"] = events.iloc[2500:2510]
    folder.mkdir(parents=True)
    for name, rows in files.items():
        rows.to_parquet(folder / f"{name}.parquet", index=False)
    return [str(folder / f"{name}.parquet") for name in files], pd.concat(files.values(), ignore_index=True)


@pytest.mark.parametrize("id_kind", ["int", "text"])
@pytest.mark.parametrize("reexport", [False, True])
def test_only_parts_whose_event_id_ranges_overlap_are_compared_for_repeated_ids(tmp_path, dask_client, id_kind,
                                                                               reexport):
    """Increasing ids: each part's own repeats suffice (no second read of any part); a re-exported block meets
    only the part it repeats, and those two alone go through the Id-bucket check. The first copy is kept."""
    paths, events = increasing_log(tmp_path / "in", id_kind, reexport)
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    summary = ingest_events(paths, config(), catalog, month="2026-02", client=dask_client)
    repeated = int(events["event_id"].duplicated().sum())
    assert repeated == 2 + (10 if reexport else 0)
    assert summary["manifests"][0]["rejects_by_reason"] == {"duplicate event id": repeated}
    assert summary["events_used"] == len(events) - repeated
    assert summary["duplicate_scan"] == {"parts": 3 + 4 + reexport, "parts_compared": 2 if reexport else 0}
    assert_same_users(users_of(catalog, "2026-02"), pandas_users(events, window_end_of(events)))
    ledger = pd.read_parquet(catalog.rejects("2026-02"))
    places = sorted(zip(ledger["file"].map(lambda p: Path(p).stem), ledger[SOURCE_ROW]))
    assert places == [("b", 1501), ("b", 1502)] + ([("c", row) for row in range(1, 11)] if reexport else [])


def test_overlapping_parts_follow_chains_of_ranges_and_take_every_part_when_ids_mix_numbers_and_text():
    from mailseg_dist.inputs.events import overlapping_parts

    def part(name, low, high, text=False):
        rng = None if low is None else (low, high)
        return {"name": name, "text_ids": ["event_id"] if text else [], "summary": {"id_range": rng}}

    parts = [part("a", 0, 10), part("b", 20, 30), part("c", 25, 40), part("d", 39, 50), part("e", 51, 60),
             part("none", None, None), part("f", 60, 60)]
    assert sorted(p["name"] for p in overlapping_parts(parts, ())) == ["b", "c", "d", "e", "f"]
    assert [p["name"] for p in overlapping_parts(parts[:2], ())] == []
    mixed = [part("n", 1, 5), part("t", "x1", "x5", text=True)]
    assert sorted(p["name"] for p in overlapping_parts(mixed, ("event_id",))) == ["n", "t"]


def test_duplicates_unknown_types_bad_timestamps_and_missing_customers_are_rejected_with_reasons(tmp_path,
                                                                                              dask_client):
    events = random_events(2000, seed=1).astype({"customer_id": "object"})
    events.loc[5, "event_type"] = "Z"
    events.loc[6, "event_time"] = "not a time"
    events.loc[7, "customer_id"] = None
    events.loc[8, ["event_type", "event_time"]] = ["", "2026-13-45"]
    copy_within = events.iloc[[10]].assign(event_time=events.loc[10, "event_time"])
    second = pd.concat([events.iloc[1500:], events.iloc[[20, 21]], copy_within], ignore_index=True)
    first = pd.concat([events.iloc[:1500], events.iloc[[30]]], ignore_index=True)  # 30 twice in one file too
    folder = tmp_path / "in"
    folder.mkdir()
    first.to_csv(folder / "a.csv.gz", index=False, compression="gzip")
    second.to_parquet(folder / "b.parquet", index=False)
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    summary = ingest_events([str(folder / "a.csv.gz"), str(folder / "b.parquet")], config(), catalog,
                            month="2026-01", client=dask_client)
    read = len(first) + len(second)
    assert summary["events_read"] == read == summary["events_used"] + summary["events_rejected"]
    assert summary["events_rejected"] == 4 + 4  # 4 bad rows; copies of 20, 21, 10 (across files) and 30 (within)
    ledger = pd.read_parquet(catalog.rejects("2026-01"))
    assert len(ledger) == 8
    reasons = summary["manifests"][0]["rejects_by_reason"]
    assert reasons == {"duplicate event id": 4, "unknown event type": 2, "unparseable timestamp": 2,
                       "missing customer id": 1}
    dup = ledger[ledger["reason"].str.startswith("duplicate")]
    assert sorted(dup["file"].map(lambda p: Path(p).name)) == ["a.csv.gz", "b.parquet", "b.parquet", "b.parquet"]
    assert set(ledger.loc[ledger["reason"] == "unknown event type", "value"]) == {"Z"}
    combined = pd.concat([first, second], ignore_index=True)
    # the customer column went through CSV: compare as the reader types it
    combined["customer_id"] = pd.to_numeric(combined["customer_id"]).astype("Int64")
    assert_same_users(users_of(catalog, "2026-01"), pandas_users(combined, window_end_of(combined)))



# ---------------------------------------------------------------- by month, formats, purchases
def test_by_month_equals_a_pandas_split_by_local_month(tmp_path, dask_client):
    events = random_events(5000, seed=2, months=("2026-01", "2026-02", "2026-03"))
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    summary = ingest_events(write_files(events, tmp_path / "in", 4), config(), catalog, by_month=True,
                            client=dask_client)
    local = pd.to_datetime(events["event_time"], utc=True).dt.tz_convert(TZ)
    months = local.dt.strftime("%Y-%m")
    assert summary["months"] == sorted(months.unique())
    for month in summary["months"]:
        end = (pd.Timestamp(f"{month}-01", tz=TZ) + pd.offsets.MonthBegin(1)).value - 1
        assert_same_users(users_of(catalog, month), pandas_users(events[months == month], end))
        manifest = json.loads(catalog.manifest(month).read_text())
        assert manifest["events_read"] == (months == month).sum() == manifest["events_used"]


def test_gzip_csv_with_comma_or_semicolon_and_parquet_give_the_same_table(tmp_path, dask_client):
    events = random_events(3000, seed=3)
    tables = []
    for name, fmt, sep in (("parquet", "parquet", ","), ("comma", "csv.gz", ","), ("semicolon", "csv.gz", ";")):
        catalog = Catalog(config(), data_dir=tmp_path / name)
        ingest_events(write_files(events, tmp_path / f"in-{name}", 3, fmt, sep), config(), catalog, month="2026-01",
                      client=dask_client)
        tables.append(users_of(catalog, "2026-01").drop(columns=[SOURCE_ROW]).sort_values("Id", ignore_index=True))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_comprador_from_a_purchases_table_with_and_without_a_dated_window(tmp_path, dask_client):
    events = random_events(3000, seed=4, months=("2026-01", "2026-02"))
    paths = write_files(events, tmp_path / "in", 3)
    purchases = pd.DataFrame({"customer_id": [1, 2, 3, 4, 5, 999],
                              "purchase_date": ["2026-01-03", "2026-02-10", "2025-12-31", "2026-01-31",
                                                "2026-03-01", "2026-01-05"]})
    purchases.to_csv(tmp_path / "purchases.csv", index=False)
    undated = Catalog(config(), data_dir=tmp_path / "undated")
    ingest_events(paths, config(), undated, by_month=True, purchases=str(tmp_path / "purchases.csv"),
                  client=dask_client)
    for month in ("2026-01", "2026-02"):
        users = users_of(undated, month).set_index("Id")
        assert set(users.index[users["Comprador"] == 1]) == {1, 2, 3, 4, 5} & set(users.index)
    dated_cfg = config(purchases={"date": "purchase_date"})
    dated = Catalog(dated_cfg, data_dir=tmp_path / "dated")
    ingest_events(paths, dated_cfg, dated, by_month=True, purchases=str(tmp_path / "purchases.csv"),
                  client=dask_client)
    buyers = {m: set(users_of(dated, m).query("Comprador == 1")["Id"]) for m in ("2026-01", "2026-02")}
    assert buyers == {"2026-01": {1, 4}, "2026-02": {2}}


def test_the_same_events_again_are_skipped_and_other_events_refused_without_replace(tmp_path, dask_client):
    events = random_events(1000, seed=5)
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    paths = write_files(events, tmp_path / "in", 3)
    ingest_events(paths, config(), catalog, month="2026-01", client=dask_client)
    again = ingest_events(paths, config(), catalog, month="2026-01", client=dask_client)
    assert again["skipped"] and again["skipped_months"] == ["2026-01"]
    other = write_files(random_events(900, seed=6), tmp_path / "other", 3)
    with pytest.raises(ms.UsageError, match="--replace"):
        ingest_events(other, config(), catalog, month="2026-01", client=dask_client)
    ingest_events(other, config(), catalog, month="2026-01", replace=True, client=dask_client)
    assert users_of(catalog, "2026-01")["Total"].sum() == 900


def test_a_by_month_rerun_of_the_same_files_is_skipped_without_reading_them(tmp_path, dask_client, monkeypatch):
    import mailseg_dist.inputs.event_ingest as event_ingest

    paths = write_files(random_events(1200, seed=8), tmp_path / "in", 3)
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    first = ingest_events(paths, config(), catalog, by_month=True, client=dask_client)
    assert first["months"] == ["2026-01", "2026-02"]

    def no_reading(*args, **kwargs):
        raise AssertionError("the event files were read again")

    monkeypatch.setattr(event_ingest, "write_raw_events", no_reading)
    again = ingest_events(paths, config(), catalog, by_month=True, client=dask_client)
    assert again["skipped"] and again["skipped_months"] == ["2026-01", "2026-02"]
    with pytest.raises(AssertionError, match="read again"):  # other settings: the files are read
        ingest_events(paths, config(timezone="UTC"), catalog, by_month=True, client=dask_client)


def test_a_failed_run_leaves_no_raw_events_copy_behind(tmp_path, dask_client):
    paths = write_files(random_events(600, seed=9), tmp_path / "in", 3)
    buyers = tmp_path / "compras.csv"
    pd.DataFrame({"cliente": [1, 2]}).to_csv(buyers, index=False)  # not the configured customer column
    catalog = Catalog(config(), data_dir=tmp_path / "data")
    with pytest.raises(ms.InputDataError, match="compras.csv"):
        ingest_events(paths, config(), catalog, month="2026-01", purchases=str(buyers), client=dask_client)
    raw = tmp_path / "data" / load_config()["paths"]["raw_subdir"]
    assert not raw.exists() or list(raw.iterdir()) == []
    assert catalog.months() == []


# ---------------------------------------------------------------- errors
def test_a_missing_column_is_one_line_naming_file_and_column_exit_3(tmp_path):
    events = random_events(50).rename(columns={"event_type": "tipo"})
    path = tmp_path / "ev.csv.gz"
    events.to_csv(path, index=False, compression="gzip")
    done = mailseg("ingest-events", path, "--data-dir", tmp_path / "data", cwd=tmp_path, timeout=120)
    assert_one_line_error(done, 3, str(path), "'event_type'", "events.columns.type")
    bad = write_config(tmp_path / "bad.yaml", {"events": {"types": {"open": ["V", "S"]}}})
    done = mailseg("ingest-events", path, "--config", bad, cwd=tmp_path, timeout=120)
    assert_one_line_error(done, 2, "events.types.open")


def test_the_generated_log_aggregates_to_the_generated_users(tmp_path, dask_client):
    from mailseg_dist.inputs.generate import iter_generated

    log = ms.generate(500, tmp_path / "ev", events=True, months=1, format="csv.gz", sep=";", seed=3)
    cfg = config(purchases={"date": "purchase_date"})
    catalog = Catalog(cfg, data_dir=tmp_path / "data")
    ingest_events([f"{log['path']}/*.csv.gz"], cfg, catalog, by_month=True, purchases=log["purchases"],
                  client=dask_client)
    got = users_of(catalog, "2026-01").set_index("Id").sort_index()
    want = pd.concat(iter_generated(500, 3)).set_index("Id").sort_index()
    columns = ["send", "bounce", "open", "click", "Total", "Comprador"]
    pd.testing.assert_frame_equal(got[columns], want.loc[got.index, columns])
    assert len(got) == 500
    assert abs(got["hour"].mean() - want["hour"].mean()) < 0.1


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_generate_ingest_by_month_run_and_update_through_the_cli(tmp_path):
    done = mailseg("generate", "--events", "--rows", 3000, "--months", 2, "--format", "csv.gz", "--out",
                   tmp_path / "ev", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    log = one_json_last_line(done)
    done = mailseg("ingest-events", tmp_path / "ev" / "*.csv.gz", "--purchases", log["purchases"], "--by-month",
                   "--data-dir", tmp_path / "data", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = one_json_last_line(done)
    assert summary["months"] == ["2026-01", "2026-02"]
    assert summary["events_read"] == log["events"] == summary["events_used"] + summary["events_rejected"]
    common = ("--data-dir", tmp_path / "data", "--out", tmp_path / "R", "--json")
    done = mailseg("run", "--month", "2026-01", "--k", 4, *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert one_json_last_line(done)["rows_in"] == summary["manifests"][0]["events_read"]
    done = mailseg("update", "--month", "2026-02", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert one_json_last_line(done)["month"] == "2026-02"


@pytest.mark.slow
def test_generate_ingest_by_month_run_and_update_through_the_api_with_extra_features(tmp_path, dask_client):
    log = ms.generate(2000, tmp_path / "ev", events=True, months=2, seed=5)
    cfg = {"features": {"columns": ["send", "open", "click", "Total", "hour", "days_since_open", "campaigns",
                                    "click_hour"]}}
    summary = ms.ingest_events(f"{log['path']}/*.parquet", purchases=log["purchases"], by_month=True, config=cfg,
                               data_dir=tmp_path / "data", client=dask_client)
    assert summary["months"] == ["2026-01", "2026-02"]
    ran = ms.run(config=cfg, data_dir=tmp_path / "data", out=tmp_path / "R", month="2026-01", k=3,
                 client=dask_client)
    assert ran["features"] == cfg["features"]["columns"]
    updated = ms.update(config=cfg, data_dir=tmp_path / "data", out=tmp_path / "R", month="2026-02",
                        client=dask_client)
    assert updated["month"] == "2026-02"


@pytest.mark.cluster
def test_ingest_events_on_real_dask_processes_with_scheduler(tmp_path):
    from cluster_helpers import DaskProcesses

    events = random_events(3000, seed=7)
    paths = write_files(events, tmp_path / "in", 3, "csv.gz")
    with DaskProcesses(tmp_path / "dask", n_workers=2, memory_limit="1GiB") as procs:
        done = mailseg("ingest-events", *paths, "--month", "2026-01", "--scheduler", procs.address,
                       "--data-dir", tmp_path / "data", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = one_json_last_line(done)
    assert summary["events_read"] == 3000 == summary["events_used"]
    catalog = Catalog(load_config(), data_dir=tmp_path / "data")
    assert_same_users(users_of(catalog, "2026-01"), pandas_users(events, window_end_of(events)))


def test_event_files_and_layers_in_an_object_store(tmp_path, bucket, dask_client):
    """Globbed event files and the data folder in S3 (moto): the same table as from local files."""
    from mailseg_dist.core.storage import as_location

    events = random_events(1500, seed=8)
    local = write_files(events, tmp_path / "in", 3)
    for path in local:
        as_location(f"{bucket}/logs/{Path(path).name}").write_bytes(Path(path).read_bytes())
    catalog = Catalog(config(), data_dir=f"{bucket}/data")
    summary = ingest_events([f"{bucket}/logs/*.parquet"], config(), catalog, month="2026-01", client=dask_client)
    assert summary["events_read"] == 1500 == summary["events_used"]
    folder = as_location(str(catalog.users("2026-01")))
    users = pd.concat(pd.read_parquet(part.open("rb")) for part in folder.iterdir())
    assert_same_users(users, pandas_users(events, window_end_of(events)))
    assert as_location(str(catalog.manifest("2026-01"))).exists()
