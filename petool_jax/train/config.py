"""Training configuration: a YAML preset plus `key=value` overrides (dotted keys).

Every key has a default here; a key in a file or on the command line that is not listed is
an error naming it, so a typo never silently trains something else.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

from petool_jax.errors import UserError

DEFAULTS: dict[str, Any] = {
    "model": None,  # HF dir, petool model dir, or (for DPO) an SFT run directory
    "data": {
        "train": None,  # file or list of files
        "format": "auto",  # auto | llamafactory | petoolbench
        "settings": "p,r,c",  # PEToolBench entries: one example per entry and setting
        "prompt_format": "system_user",  # system_user | alpaca_user | llama_factory (the authors' LLaMA-Factory rendering)
        "max_samples": 0,  # per file, 0 = all (the authors used 2000 per setting)
        "packing": False,
        "cache_dir": None,  # default: <output_dir>/cache
        "val_size": 0.0,  # fraction held out (seeded); its loss goes to metrics.jsonl as val_loss (authors: 0.1)
    },
    "eval_every": 0,  # steps between validation losses (0: at every checkpoint); with data.val_size > 0
    "output_dir": None,
    "max_steps": 0,  # 0 = epochs * steps per epoch
    "epochs": 1,
    "batch_size": 16,  # examples (or pairs) per optimizer step, global
    "micro_batch_size": 16,  # per forward/backward; batch_size / micro_batch_size = accumulation
    "max_seq_len": 4096,
    "learning_rate": 1e-4,
    "warmup_ratio": 0.1,
    "schedule": "cosine",  # cosine | linear | constant
    "weight_decay": 0.0,
    "adam_b1": 0.9,
    "adam_b2": 0.999,
    "adam_eps": 1e-8,
    "max_grad_norm": 1.0,
    "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0},
    "mesh": {"data": 1, "fsdp": -1, "tensor": 1},
    "checkpoint_every": 100,
    "keep_checkpoints": 3,
    "resume": True,
    "seed": 0,
    "dtype": "bfloat16",  # compute dtype
    "param_dtype": "float32",  # trainable parameters (frozen base weights are kept in `dtype`)
    "remat": "full",
    "attention": "auto",  # auto | xla | blockwise | cudnn | splash (petool_jax/attention_choice.py)
    "log_every": 1,
    "dpo": {
        "beta": 0.1,
        "loss": "sigmoid",  # sigmoid | ipo | hinge | simpo | orpo
        "reference": "base",  # base | init | precomputed
        "label_smoothing": 0.0,
        "sft_weight": 0.0,
        "simpo_gamma": 0.5,
        "negatives": {"same_func": 1.0, "other_func": 0.0, "corrupt_params": 0.0},
    },
}


def _merge(base: dict, override: dict, prefix: str, source: str) -> None:
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise UserError(f"{source}: unknown config key {name!r}")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise UserError(f"{source}: {name!r} is a section; set its keys ({sorted(base[key])})")
        if isinstance(base[key], dict):
            _merge(base[key], value, f"{name}.", source)
        else:
            base[key] = value


def parse_override(item: str) -> dict:
    if "=" not in item:
        raise UserError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    node: dict = {}
    out = node
    parts = key.split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return out


def load_config(path: str | pathlib.Path | None, overrides: list[str] = ()) -> dict:
    """Defaults <- YAML file <- overrides; returns a plain nested dict."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = pathlib.Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"{path}: invalid YAML ({err})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping of config keys")
        _merge(config, loaded, "", str(path))
    for item in overrides:
        _merge(config, parse_override(item), "", "command line")
    validate(config)
    return config


def validate(config: dict) -> None:
    for key in ("model", "output_dir"):
        if not config[key]:
            raise UserError(f"config key {key!r} must be set")
    if not config["data"]["train"]:
        raise UserError("config key 'data.train' must be set")
    batch, micro = config["batch_size"], config["micro_batch_size"]
    if batch <= 0 or micro <= 0 or batch % micro:
        raise UserError(f"batch_size ({batch}) must be a positive multiple of micro_batch_size ({micro})")
    if config["schedule"] not in ("cosine", "linear", "constant"):
        raise UserError(f"schedule {config['schedule']!r} is not cosine, linear or constant")
    from petool_jax.petoolbench import PROMPT_FORMATS

    if config["data"]["prompt_format"] not in PROMPT_FORMATS:
        raise UserError(f"data.prompt_format {config['data']['prompt_format']!r} is not one of "
                        f"{', '.join(PROMPT_FORMATS)}")
    if not 0.0 <= float(config["data"]["val_size"]) < 1.0:
        raise UserError(f"data.val_size {config['data']['val_size']} must be in [0, 1)")
    if config["lora"]["dropout"]:
        raise UserError("lora.dropout > 0 is not implemented (the paper's setting is 0)")
    if not 0.0 <= config["warmup_ratio"] < 1.0:
        raise UserError(f"warmup_ratio {config['warmup_ratio']} must be in [0, 1)")


def settings_list(config: dict) -> list[str]:
    raw = config["data"]["settings"]
    items = raw if isinstance(raw, list) else str(raw).split(",")
    settings = [s.strip() for s in items if s.strip()]
    bad = [s for s in settings if s not in ("p", "r", "c")]
    if bad or not settings:
        raise UserError(f"data.settings {raw!r}: use a comma list of p, r, c")
    return settings


def to_yaml(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
