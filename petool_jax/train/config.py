"""Training configuration: a YAML preset plus `key=value` overrides (dotted keys).

Every key has a default here; a key in a file or on the command line that is not listed is
an error naming it, so a typo never silently trains something else.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import yaml

from petool_jax import config_files
from petool_jax.errors import UserError

DEFAULTS: dict[str, Any] = {
    "model": None,  # HF dir, petool model dir, LoRA adapter dir, or a training checkpoint RUN_DIR/checkpoints/N
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
    "epochs": 1.0,  # may be fractional
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


def load_train_config(path: str | pathlib.Path | None, overrides: list[str] = ()) -> "TrainConfig":
    """Defaults <- YAML file <- overrides (petool_jax.config_files), checked, as a TrainConfig."""
    raw = config_files.load_config(DEFAULTS, path, overrides)
    validate(raw)
    return TrainConfig.from_dict(raw)


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


def parse_settings(raw) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else str(raw).split(",")
    settings = tuple(s.strip() for s in items if s.strip())
    bad = [s for s in settings if s not in ("p", "r", "c")]
    if bad or not settings:
        raise UserError(f"data.settings {raw!r}: use a comma list of p, r, c")
    return settings


# Typed, frozen views of the config, built once by load_train_config; training code reads
# these attributes, never the dict. The YAML layout stays flat where the presets have it
# (learning_rate, adam_b1, ... at the top level); `optimizer` groups those keys.

@dataclasses.dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...]
    format: str
    settings: tuple[str, ...]
    prompt_format: str
    max_samples: int
    packing: bool
    cache_dir: str | None
    val_size: float


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int
    alpha: float
    dropout: float


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int
    fsdp: int
    tensor: int


OPTIMIZER_KEYS = ("learning_rate", "warmup_ratio", "schedule", "weight_decay", "adam_b1", "adam_b2", "adam_eps",
                  "max_grad_norm")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float
    warmup_ratio: float
    schedule: str
    weight_decay: float
    adam_b1: float
    adam_b2: float
    adam_eps: float
    max_grad_norm: float


@dataclasses.dataclass(frozen=True)
class DpoConfig:
    beta: float
    loss: str
    reference: str
    label_smoothing: float
    sft_weight: float
    simpo_gamma: float
    negatives: dict


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str
    output_dir: str
    max_steps: int
    epochs: float
    batch_size: int
    micro_batch_size: int
    max_seq_len: int
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int
    resume: bool
    seed: int
    dtype: str
    param_dtype: str
    remat: str
    attention: str
    log_every: int
    data: DataConfig
    lora: LoraConfig
    mesh: MeshConfig
    optimizer: OptimizerConfig
    dpo: DpoConfig
    raw: dict = dataclasses.field(repr=False, compare=False)  # the merged dict, written to config.yaml

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        data = dict(raw["data"])
        train = data["train"]
        data["train"] = tuple(str(f) for f in (train if isinstance(train, list) else [train]))
        data["settings"] = parse_settings(data["settings"])
        top = {f.name: raw[f.name] for f in dataclasses.fields(cls)
               if f.name not in ("data", "lora", "mesh", "optimizer", "dpo", "raw")}
        return cls(**top, data=DataConfig(**data), lora=LoraConfig(**raw["lora"]), mesh=MeshConfig(**raw["mesh"]),
                   optimizer=OptimizerConfig(**{k: raw[k] for k in OPTIMIZER_KEYS}), dpo=DpoConfig(**raw["dpo"]),
                   raw=raw)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with top-level fields changed, the raw dict kept in step."""
        return dataclasses.replace(self, **changes, raw={**self.raw, **changes})


def to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.raw, sort_keys=False)

