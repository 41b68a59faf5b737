"""One validated config object from conf/base.yaml, conf/local.yaml, --config (or a dict) and flags.

base.yaml defines every key and its default; core.settings says what each key
may hold. An override may only use keys that exist in base.yaml, and every
value is checked against the table as it is merged, so a typo or a bad value
is one line naming where it came from (file, "config dict" or "command line"),
the key, the value and what is allowed: refused before any input is read or
any cluster starts, not on a worker after the fit.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mailseg_dist.core import settings
from mailseg_dist.core.errors import ConfigError

LOCAL_CONF = Path("conf") / "local.yaml"  # relative to the folder the job runs from
PACKAGED_CONF = "mailseg_dist/conf/base.yaml"  # how the defaults are named in messages
DICT_SOURCE = "config dict"
FLAGS_SOURCE = "command line"


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
    return _sections(data, str(path))


def _sections(data: Any, source: str) -> dict:
    """The top level of a config source: a mapping of sections (an empty file is no override)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, found {type(data).__name__}")
    return dict(data)


def _found(value: Any, numeric: bool) -> str:
    """The value as the message shows it; for a number key, a hint on YAML 1.1 reading 1e-4 as text."""
    shown = repr(value)
    if numeric and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return shown
        return f"{shown} (text: YAML reads 1e-4 as text, write 1.0e-4)"
    return shown


def _refuse(source: str, dotted: str, expected: str, value: Any) -> ConfigError:
    numeric = "a number" in expected or "an integer" in expected
    return ConfigError(f"{source}: {dotted} expected {expected}, found {_found(value, numeric)}")


def _unknown(base: dict, key: Any, prefix: str, source: str) -> ConfigError:
    hint = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
    tip = f"; did you mean '{prefix}{hint[0]}'?" if hint else f"; known keys: {', '.join(map(str, base))}"
    return ConfigError(f"{source}: unknown config key '{prefix}{key}'{tip}")


def _merge(base: dict, override: Mapping, source: str, origins: dict, prefix: str = "") -> None:
    """Apply `override` onto `base` in place, refusing unknown keys and values the table does not allow;
    `origins` records which source set each dotted key (for messages about rules between keys)."""
    for key, value in override.items():
        if key not in base:
            raise _unknown(base, key, prefix, source)
        dotted = f"{prefix}{key}"
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise _refuse(source, dotted, f"a mapping of {', '.join(map(str, base[key]))}", value)
            _merge(base[key], value, source, origins, dotted + ".")
            continue
        if not settings.is_valid(dotted, value):
            raise _refuse(source, dotted, settings.describe(dotted), value)
        base[key] = copy.deepcopy(value)
        origins[dotted] = source


def set_dotted(cfg: dict, dotted: str, value: Any, origins: dict | None = None) -> None:
    """Set cfg['a']['b'] from 'a.b' (CLI flag overrides; any depth), checked like any other source."""
    nested = value
    for key in reversed(dotted.split(".")):
        nested = {key: nested}
    _merge(cfg, nested, FLAGS_SOURCE, {} if origins is None else origins)


def _defaults(origins: dict) -> dict:
    """The packaged defaults, checked against the table too (a bad default is a bug, said as plainly)."""
    packaged = _read_yaml(Path(PACKAGED_CONF), default_config_text())
    cfg = copy.deepcopy(packaged)
    _merge(cfg, packaged, PACKAGED_CONF, origins)
    return cfg


def _source(path: str | os.PathLike | Mapping) -> tuple[dict, str]:
    """The sections of a YAML file or of a dict nested like one, and the name messages give it."""
    if isinstance(path, Mapping):
        return _sections(path, DICT_SOURCE), DICT_SOURCE
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"config: expected a YAML file path or a dict of sections, found {type(path).__name__}")
    return _read_yaml(Path(path)), str(path)


def load_config(path: str | os.PathLike | Mapping | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Defaults, then conf/local.yaml, then `path`, then dotted `overrides` (CLI flags; None = not given).

    `path` is a YAML file or a dict nested like one ({"model": {"k": 6}}, for the Python API).
    Raises ConfigError (exit 2) on the first unknown key or value the table refuses.
    """
    origins: dict[str, str] = {}
    cfg = _defaults(origins)
    local = LOCAL_CONF.resolve()
    if local.exists():
        _merge(cfg, _read_yaml(local), str(local), origins)
    if path is not None:
        data, source = _source(path)
        _merge(cfg, data, source, origins)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(cfg, dotted, value, origins)
    validate(cfg, origins)
    return cfg


def validate(cfg: dict, origins: Mapping[str, str] | None = None) -> None:
    """Rules between keys (k_min <= k_max...) that one key's constraint cannot express; every key's own
    constraint was checked while merging. The message names the source(s) of the keys involved."""
    for keys, expected, found in settings.cross_key_violations(cfg):
        named = [(origins or {}).get(key, PACKAGED_CONF) for key in keys]
        changed = [source for source in named if source != PACKAGED_CONF] or [PACKAGED_CONF]
        raise _refuse(" and ".join(dict.fromkeys(changed)), keys[0], expected, found)
