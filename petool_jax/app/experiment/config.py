"""The experiment config: YAML + `key=value` overrides (dotted), unknown keys are errors.

Keys: data (release file), model (a `petool models` name, a GGUF file or a model directory),
output_dir, seed, plan (a name under `plans`), split.pool_fraction, plans.<name>.<DemoPlan
field> (sizes of synthesis, training and evaluation; see petool_jax/app/demo/plan.py), paper_rows
(the published results printed beside ours).
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib

import yaml

from petool_jax.app.demo.plan import SMOLLM2, DemoPlan
from petool_jax.errors import UserError

TOP_KEYS = {"data", "model", "output_dir", "seed", "plan", "split", "plans", "paper_rows"}
PLAN_FIELDS = {f.name for f in dataclasses.fields(DemoPlan)} - {"name", "kind"}


def _set(config: dict, dotted: str, value) -> None:
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted}: {part!r} is not a section")
    node[parts[-1]] = value


def load_experiment_config(path: str | pathlib.Path, overrides: list[str] = ()) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of config keys")
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        _set(config, key, yaml.safe_load(raw) if raw else None)
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise UserError(f"{path}: unknown config key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    for key in ("data", "model", "output_dir", "plan", "plans"):
        if config.get(key) in (None, "", {}):
            raise UserError(f"{path}: config key {key!r} must be set")
    if set(config.get("split") or {}) - {"pool_fraction"}:
        raise UserError(f"{path}: unknown split key(s) {sorted(set(config['split']) - {'pool_fraction'})}")
    for name, plan in config["plans"].items():
        bad = set(plan or {}) - PLAN_FIELDS
        if bad:
            raise UserError(f"{path}: plans.{name}: unknown key(s) {sorted(bad)}; known: {sorted(PLAN_FIELDS)}")
    if config["plan"] not in config["plans"]:
        raise UserError(f"{path}: plan {config['plan']!r} is not one of plans {sorted(config['plans'])}")
    for i, row in enumerate(config.get("paper_rows") or []):
        if not isinstance(row, dict) or set(row) != {"model", "setting", "tool_acc", "param_acc"}:
            raise UserError(f"{path}: paper_rows[{i}] needs exactly model, setting, tool_acc, param_acc")
    config.setdefault("seed", 0)
    config.setdefault("split", {}).setdefault("pool_fraction", 0.5)
    return config


def plan_of(config: dict, name: str | None = None) -> DemoPlan:
    """The DemoPlan of plans.<name> (default: the config's `plan`), on top of the demo's SmolLM2 plan."""
    name = name or config["plan"]
    if name not in config["plans"]:
        raise UserError(f"--plan {name}: not one of the config's plans {sorted(config['plans'])}")
    values = dict(config["plans"][name] or {})
    try:
        return dataclasses.replace(SMOLLM2, name=f"experiment-{name}", kind="pretrained", **values)
    except TypeError as err:
        raise UserError(f"plans.{name}: {err}") from None
