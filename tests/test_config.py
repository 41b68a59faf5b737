"""Config: layering (base < local.yaml < --config or a dict < flags), unknown keys with suggestions, every
value checked against the one table of core.settings (through load_config and the real CLI), rules between
keys, and month strings that could climb out of a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from cli_helpers import mailseg

from mailseg_dist.core import settings
from mailseg_dist.core.catalog import Catalog, check_month, local_path
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parent.parent
REPO_CONF = REPO / "conf"
USERS_CSV = ("Id,send,bounce,open,click,Total,Comprador,hour,day_of_week\n"
             + "".join(f"{i},{3 + i % 4},0,{i % 3},{i % 2},{3 + i % 4 + i % 3 + i % 2},{i % 2},{8 + i % 12},{i % 7}\n"
                       for i in range(1, 13)))


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


def leaves(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} of every non-mapping value of a nested config."""
    flat = {}
    for key, value in tree.items():
        flat.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


# ---------------------------------------------------------------- the table and base.yaml cannot drift
def test_packaged_defaults_are_the_checkout_defaults_byte_for_byte():
    assert (REPO / "mailseg_dist" / "conf" / "base.yaml").read_bytes() == (REPO_CONF / "base.yaml").read_bytes()


def test_every_base_key_has_a_constraint_and_every_constraint_a_base_key():
    base_keys = set(leaves(yaml.safe_load((REPO_CONF / "base.yaml").read_text(encoding="utf-8"))))
    assert sorted(base_keys - set(settings.CONSTRAINTS)) == []  # a key nobody checks
    assert sorted(set(settings.CONSTRAINTS) - base_keys) == []  # a constraint for a key that is gone


def test_the_defaults_pass_every_constraint(checkout):
    defaults = leaves(yaml.safe_load((REPO_CONF / "base.yaml").read_text(encoding="utf-8")))
    refused = [key for key, value in defaults.items() if not settings.is_valid(key, value)]
    assert refused == []
    assert leaves(load_config()) == defaults  # and load_config takes them unchanged (no local.yaml here)


def test_feature_names_are_the_clean_layer_columns_but_the_id():
    from mailseg_dist.inputs.schema import EVENT_FEATURES, ID, USER_COLUMNS

    assert settings.FEATURE_COLUMNS == tuple(c for c in USER_COLUMNS if c != ID)
    assert settings.EVENT_FEATURES == tuple(EVENT_FEATURES)


def test_modules_acting_on_names_take_them_from_the_table():
    from mailseg_dist.inputs import generate
    from mailseg_dist.model import engines, features
    from mailseg_dist.segments import texts

    assert tuple(engines.ENGINES) == settings.ENGINES and all(map(callable, engines.ENGINES.values()))
    assert (texts.LANGS, generate.FORMATS, features.ALLOWED) == (
        settings.LANGS, settings.FORMATS, settings.FEATURE_COLUMNS)


def test_choices_and_descriptions_for_the_cli():
    assert settings.choices("model.engine") == ("lloyd", "minibatch", "daskml")
    assert settings.choices("report.lang") == ("es", "en")
    assert settings.choices("default_data.format") == ("xlsx", "csv", "parquet")
    assert settings.choices("model.k") == ("auto",) and settings.choices("model.seed") == ()
    assert settings.describe("model.k") == "'auto' or an integer >= 2"
    assert settings.describe("ingest.sheet") == "a sheet name or null"
    with pytest.raises(KeyError):
        settings.choices("model.kk")


# ---------------------------------------------------------------- layering and sources
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


def test_a_dict_is_a_source_like_a_file_and_is_not_shared(checkout):
    write(checkout / "conf" / "local.yaml", "model: {k: 4, k_max: 8}\n")
    given = {"model": {"k": 6}, "features": {"columns": ["send", "open"]}}
    cfg = load_config(given, {"model.seed": 7})
    assert (cfg["model"]["k"], cfg["model"]["k_max"], cfg["model"]["seed"]) == (6, 8, 7)
    cfg["features"]["columns"].append("click")
    assert given["features"]["columns"] == ["send", "open"]
    with pytest.raises(ConfigError, match=r"^config: expected a YAML file path or a dict of sections, found list$"):
        load_config([("model", {"k": 6})])


@pytest.mark.parametrize("overrides", [
    {"model.tol": 0.0}, {"model.tol": 1}, {"model.k": 2}, {"report.excel_max_rows": 2},
    {"report.excel_max_rows": 1_048_575}, {"model.cache_features": True}, {"model.cache_features": "auto"},
    {"ingest.sep": "\t"}, {"ingest.month": "2026-02"}, {"model.refine_sample": 0}, {"cluster.memory_limit": 0.5},
    {"cluster.memory_limit": "512 MiB"}, {"cluster.memory_limit": 2**30}, {"cluster.memory_limit": "auto"},
    {"model.daskml_init_max_iter": None}, {"cleaning.engagement_weights.click": 0},
    {"features.columns": ["hour"]}, {"selection.min_segment_share": 0}, {"recommend.buyer_rate_high": 1},
], ids=str)
def test_boundary_values_are_accepted(checkout, overrides):
    (dotted, value), = overrides.items()
    nested = value
    for key in reversed(dotted.split(".")):
        nested = {key: nested}
    found = leaves(load_config(nested))[dotted]
    assert (found, type(found)) == (value, type(value))
    if value is not None:  # as a flag, None means "not given"
        assert leaves(load_config(overrides=overrides))[dotted] == value


# ---------------------------------------------------------------- unknown keys and YAML
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


def test_yaml_problems_are_config_errors(checkout):
    with pytest.raises(ConfigError, match="broken.yaml: line 2 is not valid YAML"):
        load_config(write(checkout / "broken.yaml", "model: {k: 3}\ningest: chunk_rows: 5\n"))
    with pytest.raises(ConfigError, match="expected a mapping of sections, found list"):
        load_config(write(checkout / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(checkout / "missing.yaml")
    assert load_config(write(checkout / "empty.yaml", ""))["model"]["k"] == "auto"


# ---------------------------------------------------------------- bad values, through the API and the CLI
# (id, config overrides, dotted key named, value as shown, what the message says is allowed)
BAD_VALUES = [
    ("cache_features_yes", {"model": {"cache_features": "yes"}}, "model.cache_features", "'yes'",
     "'auto' or true or false"),
    ("excel_rows_negative", {"report": {"excel_max_rows": -1}}, "report.excel_max_rows", "-1",
     "an integer in [2, 1048575]"),
    ("engine_kmeans", {"model": {"engine": "kmeans"}}, "model.engine", "'kmeans'",
     "one of 'lloyd', 'minibatch', 'daskml'"),
    ("lang_fr", {"report": {"lang": "fr"}}, "report.lang", "'fr'", "one of 'es', 'en'"),
    ("sample_negative", {"quality": {"bootstrap_sample": -500}}, "quality.bootstrap_sample", "-500",
     "an integer >= 2"),
    ("k_min_above_k_max", {"model": {"k_min": 5, "k_max": 3}}, "model.k_min", "5", "<= model.k_max (3)"),
    ("feature_name", {"features": {"columns": ["send", "opens"]}}, "features.columns", "'opens'",
     "distinct names among send, bounce"),
    ("columns_not_a_list", {"features": {"columns": "send"}}, "features.columns", "found 'send'", "a non-empty list"),
    ("columns_empty", {"features": {"columns": []}}, "features.columns", "found []", "a non-empty list"),
    ("k_below_2", {"model": {"k": 1}}, "model.k", "found 1", "'auto' or an integer >= 2"),
    ("k_bool", {"model": {"k": True}}, "model.k", "found True", "'auto' or an integer >= 2"),
    ("chunk_rows_text", {"ingest": {"chunk_rows": "many"}}, "ingest.chunk_rows", "'many'", "an integer >= 1"),
    ("xlsx_engine", {"ingest": {"xlsx_engine": "pandas"}}, "ingest.xlsx_engine", "'pandas'",
     "one of 'fastexcel', 'calamine', 'openpyxl'"),
    ("null_counts", {"cleaning": {"null_counts": "drop"}}, "cleaning.null_counts", "'drop'", "one of 'zero', 'reject'"),
    ("weight_text", {"cleaning": {"engagement_weights": {"click": "two"}}}, "cleaning.engagement_weights.click",
     "'two'", "a number >= 0"),
    ("weights_not_a_mapping", {"cleaning": {"engagement_weights": 3}}, "cleaning.engagement_weights", "found 3",
     "a mapping of open, click, Comprador"),
    ("section_not_a_mapping", {"model": 5}, "model", "found 5", "a mapping of engine, k, "),
    ("log1p_text", {"features": {"log1p": "yes"}}, "features.log1p", "'yes'", "true or false"),
    ("tol_as_yaml_text", {"model": {"tol": "1e-4"}}, "model.tol", "'1e-4'", "write 1.0e-4"),
    ("share_above_1", {"recommend": {"bounce_rate_high": 1.5}}, "recommend.bounce_rate_high", "1.5",
     "a number in [0, 1]"),
    ("workers_0", {"cluster": {"n_workers": 0}}, "cluster.n_workers", "found 0", "an integer >= 1"),
    ("memory_limit", {"cluster": {"memory_limit": "4 lots"}}, "cluster.memory_limit", "'4 lots'", "a size like 4GiB"),
    ("malloc_fraction", {"cluster": {"malloc_mmap_threshold": 0.5}}, "cluster.malloc_mmap_threshold", "0.5",
     "a size like 64MiB or a whole number of bytes"),
    ("format_txt", {"default_data": {"format": "txt"}}, "default_data.format", "'txt'",
     "one of 'xlsx', 'csv', 'parquet'"),
    ("out_dir_blank", {"paths": {"out_dir": " "}}, "paths.out_dir", "' '", "a folder path or URL"),
    ("month_dotdot", {"ingest": {"month": "../x"}}, "ingest.month", "'../x'", "YYYY-MM (e.g. 2026-11) or null"),
    ("seed_rows_below_k", {"model": {"init_sample": 4, "k": 6}}, "model.init_sample", "found 4",
     ">= the largest k tried (model.k = 6)"),
    ("very_high_below_high", {"recommend": {"very_high_engagement_ratio": 0.5}},
     "recommend.very_high_engagement_ratio", "0.5", ">= recommend.high_engagement_ratio (1.0)"),
]
BAD_IDS = [case[0] for case in BAD_VALUES]


def assert_names(message: str, source: str, key: str, found: str, allowed: str) -> None:
    assert "\n" not in message
    assert message.startswith(f"{source}: {key} expected "), message
    assert found in message and allowed in message, message


@pytest.mark.parametrize("case, given, key, found, allowed", BAD_VALUES, ids=BAD_IDS)
def test_bad_values_are_refused_by_load_config(checkout, case, given, key, found, allowed):
    path = checkout / "bad.yaml"
    path.write_text(yaml.safe_dump(given), encoding="utf-8")
    with pytest.raises(ConfigError) as from_file:
        load_config(path)
    assert_names(str(from_file.value), str(path), key, found, allowed)
    with pytest.raises(ConfigError) as from_dict:
        load_config(given)
    assert_names(str(from_dict.value), "config dict", key, found, allowed)


@pytest.fixture
def valid_input(tmp_path) -> Path:
    """A small users CSV that passes the input checks: a refusal can only come from the config."""
    from mailseg_dist.inputs.readers import check_file

    path = write(tmp_path / "users.csv", USERS_CSV)
    check_file(path)
    return path


@pytest.mark.slow  # each case starts the `mailseg` command in a subprocess
@pytest.mark.parametrize("case, given, key, found, allowed", BAD_VALUES, ids=BAD_IDS)
def test_bad_values_stop_the_cli_before_input_or_cluster(tmp_path, valid_input, case, given, key, found, allowed):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(given), encoding="utf-8")
    proc = mailseg("run", valid_input, "--config", config, "--data-dir", "data", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailseg: error: "), proc.stderr
    assert_names(lines[0].removeprefix("mailseg: error: "), str(config), key, found, allowed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "users.csv"]  # no data/, out/, Resultados/


@pytest.mark.slow
@pytest.mark.parametrize("command", [["ingest", "missing.csv"], ["run", "missing.csv"], ["score", "missing.csv"]])
def test_the_config_is_refused_before_the_input_is_looked_at(tmp_path, command):
    config = write(tmp_path / "bad.yaml", "report: {excel_max_rows: -1}\n")
    proc = mailseg(*command, "--config", config, "--data-dir", "data", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "report.excel_max_rows expected an integer in [2, 1048575], found -1" in proc.stderr
    assert "no such file" not in proc.stderr and [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_a_bad_value_in_local_yaml_and_on_the_command_line_names_its_source(checkout):
    local = write(checkout / "conf" / "local.yaml", "report: {excel_max_rows: -1}\n")
    with pytest.raises(ConfigError, match=rf"^{local}: report.excel_max_rows expected .*, found -1$"):
        load_config()
    local.unlink()
    with pytest.raises(ConfigError, match=r"^command line: model.engine expected .*, found 'kmeans'$"):
        load_config(overrides={"model.engine": "kmeans"})


def test_a_rule_between_keys_names_the_sources_that_set_them(checkout):
    path = write(checkout / "k.yaml", "model: {k_min: 5}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {"model.k_max": 3})
    assert str(err.value) == f"{path} and command line: model.k_min expected <= model.k_max (3), found 5"
    with pytest.raises(ConfigError, match=r"^command line: model.init_sample expected .*model.k_max = 10\), found 5$"):
        load_config(overrides={"model.init_sample": 5})


# ---------------------------------------------------------------- months
GOOD_MONTHS = ["2026-01", "1999-12", "2030-10"]
BAD_MONTHS = ["..", "../x", "../2026-01", "2026-01/../x", "2026-01/..", "2026-13", "2026-00", "2026-1", "26-01",
              " 2026-01", "2026-01 ", "2026-01\n", "", 202601, "month=2026-01", "2026_01"]


@pytest.mark.parametrize("month", GOOD_MONTHS)
def test_check_month_accepts_year_month(month):
    assert check_month(month) == month


@pytest.mark.parametrize("month", [*BAD_MONTHS, None])
def test_check_month_refuses_anything_else(month):
    with pytest.raises(UsageError, match="month expected YYYY-MM"):
        check_month(month)


@pytest.mark.parametrize("month", GOOD_MONTHS + BAD_MONTHS)
def test_config_months_are_the_months_check_month_takes(checkout, month):
    try:
        check_month(month)
    except UsageError:
        with pytest.raises(ConfigError, match="ingest.month expected YYYY-MM"):
            load_config({"ingest": {"month": month}})
    else:
        assert load_config({"ingest": {"month": month}})["ingest"]["month"] == month


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
