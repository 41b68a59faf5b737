"""Config: layering (base < local.yaml < --config < flags), unknown keys with suggestions, types,
cross-key checks, and month strings that could climb out of a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailseg_dist.core.catalog import Catalog, check_month, local_path
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import ConfigError, UsageError

REPO_CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A working directory with its own conf/ (a copy of base.yaml), so local.yaml can be written safely."""
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO_CONF / "base.yaml", tmp_path / "conf" / "base.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_and_each_call_is_a_fresh_dict(checkout):
    cfg = load_config()
    assert cfg["ingest"]["chunk_rows"] == 100000 and cfg["model"]["k"] == "auto"
    cfg["ingest"]["chunk_rows"] = 1
    assert load_config()["ingest"]["chunk_rows"] == 100000


def test_layering_base_local_file_flags(checkout):
    write(checkout / "conf" / "local.yaml", "ingest: {chunk_rows: 7, sheet: Hoja1}\nmodel: {k: 4}\n")
    cfg = load_config()
    assert (cfg["ingest"]["chunk_rows"], cfg["ingest"]["sheet"], cfg["model"]["k"]) == (7, "Hoja1", 4)
    assert cfg["ingest"]["sep"] == "auto"  # untouched keys of a touched section keep their default
    extra = write(checkout / "run.yaml", "ingest:\n  chunk_rows: 9\n")
    cfg = load_config(extra)
    assert (cfg["ingest"]["chunk_rows"], cfg["ingest"]["sheet"]) == (9, "Hoja1")
    cfg = load_config(extra, {"ingest.chunk_rows": 11, "model.k": None})  # None = flag not given
    assert (cfg["ingest"]["chunk_rows"], cfg["model"]["k"]) == (11, 4)


@pytest.mark.parametrize("text, message", [
    ("ingest: {chunk_row: 5}\n", "unknown config key 'ingest.chunk_row'; did you mean 'ingest.chunk_rows'?"),
    ("modle: {k: 3}\n", "unknown config key 'modle'; did you mean 'model'?"),
    ("zzzz: 1\n", "unknown config key 'zzzz'; known keys: paths, "),
    ("cleaning: {engagement_weights: {opens: 1.0}}\n",
     "unknown config key 'cleaning.engagement_weights.opens'; did you mean 'cleaning.engagement_weights.open'?"),
])
def test_unknown_keys_are_errors_with_a_suggestion(checkout, text, message):
    path = write(checkout / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_unknown_key_in_local_yaml_names_that_file(checkout):
    local = write(checkout / "conf" / "local.yaml", "report: {langs: en}\n")
    with pytest.raises(ConfigError, match=f"{local}: unknown config key 'report.langs'; did you mean 'report.lang'"):
        load_config()


def test_unknown_flag_override(checkout):
    with pytest.raises(ConfigError, match="command line: unknown config key 'ingest.chunkrows'"):
        load_config(overrides={"ingest.chunkrows": 5})


@pytest.mark.parametrize("text, message", [
    ("ingest: {chunk_rows: many}\n", "'ingest.chunk_rows' expected int like 100000, found 'many'"),
    ("ingest: {chunk_rows: true}\n", "'ingest.chunk_rows' expected int"),
    ("features: {columns: send}\n", "'features.columns' expected list"),
    ("cleaning: {engagement_weights: 3}\n", "'cleaning.engagement_weights' expected dict"),
    ("model: 5\n", "'model' expected dict"),
    ("features: {log1p: 'yes'}\n", "'features.log1p' expected bool"),
])
def test_wrong_types_are_errors(checkout, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(checkout / "bad.yaml", text))


@pytest.mark.parametrize("text, message", [
    ("model: {k: 1}\n", "model.k expected 'auto' or an integer >= 2, found 1"),
    ("model: {k: six}\n", "model.k expected 'auto' or an integer >= 2, found 'six'"),
    ("model: {k: true}\n", "model.k expected 'auto' or an integer >= 2, found True"),
    ("model: {k: -3}\n", "model.k expected 'auto' or an integer >= 2, found -3"),
    ("model: {k_min: 5, k_max: 3}\n", "k_min..k_max expected 2 <= k_min <= k_max, found 5..3"),
    ("model: {k_min: 1}\n", "found 1..10"),
    ("model: {engine: kmeans}\n", "model.engine expected one of lloyd, minibatch, daskml"),
    ("ingest: {chunk_rows: 0}\n", "ingest.chunk_rows expected a positive integer, found 0"),
    ("ingest: {xlsx_engine: pandas}\n", "ingest.xlsx_engine expected calamine or openpyxl"),
    ("cleaning: {null_counts: drop}\n", "cleaning.null_counts expected zero or reject"),
    ("report: {lang: fr}\n", "report.lang expected es or en"),
    ("features: {columns: []}\n", "features.columns expected at least one feature"),
])
def test_cross_key_validation(checkout, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(checkout / "bad.yaml", text))
    assert message in str(err.value)


@pytest.mark.parametrize("k", [2, 6, "auto"])
def test_valid_k(checkout, k):
    assert load_config(overrides={"model.k": k})["model"]["k"] == k


def test_yaml_problems_are_config_errors(checkout):
    with pytest.raises(ConfigError, match="broken.yaml: line 2 is not valid YAML"):
        load_config(write(checkout / "broken.yaml", "model: {k: 3}\ningest: chunk_rows: 5\n"))
    with pytest.raises(ConfigError, match="expected a mapping of sections, found list"):
        load_config(write(checkout / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(checkout / "missing.yaml")
    assert load_config(write(checkout / "empty.yaml", ""))["model"]["k"] == "auto"


@pytest.mark.parametrize("month", ["2026-01", "1999-12", "2030-10"])
def test_check_month_accepts_year_month(month):
    assert check_month(month) == month


@pytest.mark.parametrize("month", ["..", "../x", "../2026-01", "2026-01/../x", "2026-01/..", "2026-13", "2026-00",
                                   "2026-1", "26-01", " 2026-01", "2026-01 ", "2026-01\n", "", None, 202601,
                                   "month=2026-01", "2026_01"])
def test_check_month_refuses_anything_else(month):
    with pytest.raises(UsageError, match="month expected YYYY-MM"):
        check_month(month)


def test_month_in_config_and_catalog_paths_are_checked(checkout, tmp_path):
    with pytest.raises(UsageError, match="month expected YYYY-MM"):
        load_config(write(checkout / "m.yaml", "ingest: {month: ../x}\n"))
    assert load_config(write(checkout / "ok.yaml", "ingest: {month: '2026-02'}\n"))["ingest"]["month"] == "2026-02"
    catalog = Catalog(load_config(), data_dir=str(tmp_path / "data"))
    assert catalog.users("2026-02") == tmp_path / "data" / "parquet" / "users" / "month=2026-02"
    for method in (catalog.raw, catalog.users, catalog.rejects, catalog.manifest):
        with pytest.raises(UsageError):
            method("../../etc")


def test_local_path_takes_paths_and_file_urls_and_refuses_object_stores(tmp_path, monkeypatch):
    """The config file is read by the client itself, so it must be local; file:// URLs are local paths."""
    monkeypatch.chdir(tmp_path)
    assert local_path("d/x", "--config") == tmp_path / "d" / "x"
    assert local_path((tmp_path / "a b").as_uri(), "--config") == tmp_path / "a b"  # %20 decoded
    assert local_path("file://localhost/srv/data", "--config") == Path("/srv/data")
    assert local_path("FILE:///srv/data", "--config") == Path("/srv/data")
    for url, message in [("s3://bucket/conf.yaml", "must be a local path or file:// URL"),
                         ("ftp://host/conf.yaml", "ftp:// is not a supported storage"),
                         ("file://otherhost/srv", "found host 'otherhost'")]:
        with pytest.raises(UsageError, match=message):
            local_path(url, "--config")
    catalog = Catalog(load_config(), data_dir=(tmp_path / "d").as_uri(), out_dir="file:///srv/out")
    assert (catalog.data_dir, catalog.out_dir) == (tmp_path / "d", Path("/srv/out"))
