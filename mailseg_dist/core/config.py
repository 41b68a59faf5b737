"""One validated config object from conf/base.yaml, conf/local.yaml, --config and flags.

base.yaml defines every key and its type: an override may only use keys that
exist there, with a value of a compatible type, so a typo is an error with a
suggestion instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mailseg_dist.core.errors import ConfigError

LOCAL_CONF = Path("conf") / "local.yaml"  # relative to the folder the job runs from


def default_config_text() -> str:
    """The packaged defaults (mailseg_dist/conf/base.yaml, a copy of the checkout's conf/base.yaml that a
    test keeps equal): the same in a checkout, an installed wheel, and on every worker."""
    return resources.files("mailseg_dist").joinpath("conf", "base.yaml").read_text(encoding="utf-8")


def _read_yaml(path: Path, text: str | None = None) -> dict:
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, found {type(data).__name__}")
    return data


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        # "auto"-style keys accept a bool or the string.
        return isinstance(value, bool) == isinstance(default, bool) or isinstance(default, str)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) or (isinstance(value, str) and default is None)
    if isinstance(default, str):
        # "auto" keys also take a number or a bool (k: 6, cache_features: true).
        return isinstance(value, (str, int, float, bool))
    if isinstance(default, list):
        return isinstance(value, list)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _merge(base: dict, override: dict, source: str, prefix: str = "") -> None:
    for key, value in override.items():
        where = f"{prefix}{key}"
        if key not in base:
            hint = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            tip = f"; did you mean '{prefix}{hint[0]}'?" if hint else f"; known keys: {', '.join(map(str, base))}"
            raise ConfigError(f"{source}: unknown config key '{where}'{tip}")
        default = base[key]
        if not _compatible(default, value):
            raise ConfigError(
                f"{source}: '{where}' expected {type(default).__name__} like {default!r}, found {value!r}"
            )
        if isinstance(default, dict) and isinstance(value, dict):
            _merge(default, value, source, where + ".")
        else:
            base[key] = copy.deepcopy(value)


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """Set cfg['a']['b'] from 'a.b' (used for CLI flag overrides)."""
    section, _, key = dotted.partition(".")
    _merge(cfg, {section: {key: value}}, "command line")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Defaults, then conf/local.yaml, then `path`, then dotted `overrides` (CLI flags)."""
    cfg = _read_yaml(Path("mailseg_dist/conf/base.yaml"), default_config_text())
    local = LOCAL_CONF.resolve()
    if local.exists():
        _merge(cfg, _read_yaml(local), str(local))
    if path is not None:
        _merge(cfg, _read_yaml(Path(path)), str(path))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(cfg, dotted, value)
    validate(cfg)
    return cfg


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: dict) -> None:
    """Cross-key checks that types alone cannot express."""
    model, ingest = cfg["model"], cfg["ingest"]
    k = model["k"]
    _check(k == "auto" or (isinstance(k, int) and not isinstance(k, bool) and k >= 2),
           f"model.k expected 'auto' or an integer >= 2, found {k!r}")
    _check(2 <= model["k_min"] <= model["k_max"],
           f"model.k_min..k_max expected 2 <= k_min <= k_max, found {model['k_min']}..{model['k_max']}")
    _check(model["engine"] in ("lloyd", "minibatch", "daskml"),
           f"model.engine expected one of lloyd, minibatch, daskml, found {model['engine']!r}")
    _check(model["init"] in ("sample", "native"), f"model.init expected sample or native, found {model['init']!r}")
    _check(isinstance(ingest["chunk_rows"], int) and ingest["chunk_rows"] >= 1,
           f"ingest.chunk_rows expected a positive integer, found {ingest['chunk_rows']!r}")
    _check(ingest["xlsx_engine"] in ("calamine", "openpyxl"),
           f"ingest.xlsx_engine expected calamine or openpyxl, found {ingest['xlsx_engine']!r}")
    _check(cfg["cleaning"]["duplicate_ids"] in ("keep_first",),
           f"cleaning.duplicate_ids expected keep_first, found {cfg['cleaning']['duplicate_ids']!r}")
    _check(cfg["cleaning"]["null_counts"] in ("zero", "reject"),
           f"cleaning.null_counts expected zero or reject, found {cfg['cleaning']['null_counts']!r}")
    _check(cfg["report"]["lang"] in ("es", "en"), f"report.lang expected es or en, found {cfg['report']['lang']!r}")
    _check(bool(cfg["features"]["columns"]), "features.columns expected at least one feature, found none")
    month = ingest["month"]
    if month is not None:
        from mailseg_dist.core.catalog import check_month

        check_month(month)
