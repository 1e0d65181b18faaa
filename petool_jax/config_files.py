"""Configuration files, one way for every command: defaults <- YAML file <- `key=value` overrides.

Training, synthesis, evaluation and the experiment each declare a DEFAULTS mapping; this
module loads a YAML file over it and then the command line's dotted `key=value` overrides
(values parsed as YAML: `lora.rank=16`, `data.train=[a.json,b.json]`). A key that is not in the
defaults is an error that names it and the valid keys beside it, and a value must have its
default's type, so a typo or a wrong type never silently runs something else.

Types, from the default: bool, int, float (an int, or a string such as YAML's `5e-5`, is made a
float), str, list
(a single string is accepted too: the consumer splits or wraps it), a mapping (a section,
checked key by key), or None (any value). Keys named in `open_sections` hold a mapping whose
contents the caller checks itself.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

from petool_jax.errors import UserError


def read_yaml_mapping(path: str | pathlib.Path) -> dict:
    """A YAML file that must hold a mapping; errors name the file (and the line)."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read: {err}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys")
    return data


def parse_override(text: str) -> dict:
    """`a.b=value` -> {"a": {"b": value}}, the value parsed as YAML ("" = None)."""
    if "=" not in text:
        raise UserError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r}: expected key=value with a dotted key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise UserError(f"override {text!r}: value is not valid YAML: {err}") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _typed(default: Any, value: Any, name: str, source: str) -> Any:
    def wrong(kind: str):
        raise UserError(f"{source}: key {name!r} expects {kind}, got {value!r}")

    if default is None or value is None:
        return value
    if isinstance(default, bool):
        return value if isinstance(value, bool) else wrong("true or false")
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else wrong("an integer")
    if isinstance(default, float):
        if isinstance(value, str):
            # YAML 1.1 reads 5e-5 (no dot) as a string; it is the number everyone means.
            try:
                return float(value)
            except ValueError:
                wrong("a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong("a number")
        return float(value)
    if isinstance(default, str):
        return value if isinstance(value, str) else wrong("a string")
    if isinstance(default, list):
        return value if isinstance(value, (list, str)) else wrong("a list")
    return value


def _deep_update(base: dict, update: dict) -> dict:
    """A copy of `base` with `update` merged in, mappings key by key (open sections: no checks)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge(base: dict, update: dict, source: str, open_sections: tuple[str, ...] = (), prefix: str = "") -> None:
    """Set `update`'s keys into `base` (in place), checking names and types against it."""
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise UserError(f"{source}: unknown key {name!r}; known keys: "
                            f"{', '.join(sorted(base))}")
        if name in open_sections:
            if value is not None and not isinstance(value, dict):
                raise UserError(f"{source}: key {name!r} expects a mapping, got {value!r}")
            base[key] = _deep_update(base[key] or {}, value or {})
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"{source}: key {name!r} is a section; set its keys ({', '.join(sorted(base[key]))})")
            merge(base[key], value, source, open_sections, f"{name}.")
        else:
            base[key] = _typed(base[key], value, name, source)


def load_config(defaults: dict, path: str | pathlib.Path | None = None, overrides=(),
                open_sections: tuple[str, ...] = ()) -> dict:
    """Defaults <- YAML file <- overrides: a checked plain nested dict (the caller validates
    values and builds its typed view from it)."""
    config = copy.deepcopy(defaults)
    if path is not None:
        merge(config, read_yaml_mapping(path), str(path), open_sections)
    for text in overrides:
        merge(config, parse_override(text), f"override {text.split('=', 1)[0]}=...", open_sections)
    return config


def overridden_keys(overrides) -> set[str]:
    """The dotted keys a list of `key=value` overrides sets."""
    return {text.split("=", 1)[0].strip() for text in overrides}
