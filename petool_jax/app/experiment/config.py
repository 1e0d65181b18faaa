"""The experiment config: YAML + `key=value` overrides (dotted), unknown keys are errors.

Keys: data (release file), model (a `petool models` name, a GGUF file or a model directory),
output_dir, seed, plan (a name under `plans`), split.pool_fraction, plans.<name>.<DemoPlan
field> (sizes of synthesis, training and evaluation; see petool_jax/app/demo/plan.py), paper_rows
(the published results printed beside ours).
"""

from __future__ import annotations

import dataclasses
import pathlib

from petool_jax import config_files
from petool_jax.app.demo.plan import SMOLLM2, DemoPlan
from petool_jax.errors import UserError

DEFAULTS = {
    "data": None,  # the release file (the authors' user_entries_test.json format)
    "model": None,
    "output_dir": None,
    "seed": 0,
    "plan": None,  # a name under plans
    "split": {"pool_fraction": 0.5},
    "plans": {},  # name -> {DemoPlan field: value}; checked below against DemoPlan's fields
    "paper_rows": [],
}
PLAN_FIELDS = {f.name for f in dataclasses.fields(DemoPlan)} - {"name", "kind"}


def load_experiment_config(path: str | pathlib.Path, overrides: list[str] = ()) -> dict:
    config = config_files.load_config(DEFAULTS, path, overrides, open_sections=("plans",))
    for key in ("data", "model", "output_dir", "plan", "plans"):
        if config.get(key) in (None, "", {}):
            raise UserError(f"{path}: config key {key!r} must be set")
    for name, plan in config["plans"].items():
        bad = set(plan or {}) - PLAN_FIELDS
        if bad:
            raise UserError(f"{path}: plans.{name}: unknown key(s) {sorted(bad)}; known: {sorted(PLAN_FIELDS)}")
    if config["plan"] not in config["plans"]:
        raise UserError(f"{path}: plan {config['plan']!r} is not one of plans {sorted(config['plans'])}")
    for i, row in enumerate(config["paper_rows"] or []):
        if not isinstance(row, dict) or set(row) != {"model", "setting", "tool_acc", "param_acc"}:
            raise UserError(f"{path}: paper_rows[{i}] needs exactly model, setting, tool_acc, param_acc")
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
