"""A training checkpoint `RUN_DIR/checkpoints/N` used as a model (the authors' DPO starts
from `sft/checkpoint-50`, and their test script evaluates `dpo/checkpoint-50`).

A checkpoint holds the train state (trainable parameters, optimizer moments, step) but no
model files; the run's `config.yaml` names the model the run started from. So:
- the weights: the checkpoint's trainable leaves (only these are read; the optimizer state
  is not), over the starting model's other weights. LoRA runs train the adapter only, so
  their checkpoint is an adapter over the run's base model (a starting adapter directory or
  LoRA checkpoint is followed to its base); full fine-tuning holds every weight.
- config.json, tokenizer and generation_config: the starting model's (followed the same way).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from flax import traverse_util

from petool_jax.checkpoint import MARKER
from petool_jax.config import LlamaConfig, read_hf_config
from petool_jax.errors import UserError

SEP = "/"  # how the train state's flat trainable dict joins parameter paths (train/params.py)


def is_training_checkpoint(path) -> bool:
    path = pathlib.Path(path)
    return ((path / "state").is_dir() and path.parent.name == "checkpoints"
            and (path.parent.parent / "config.yaml").is_file() and path.name.isdigit())


@dataclasses.dataclass(frozen=True)
class CheckpointModel:
    path: pathlib.Path  # RUN_DIR/checkpoints/N
    start_model: str  # the run's `model`
    lora_rank: int
    lora_alpha: float
    param_dtype: str  # of the trainable leaves
    base_model: str | None  # LoRA: the plain model the adapter applies to
    files_dir: str  # where config.json, the tokenizer and generation_config.json are


def _run_config(path: pathlib.Path) -> dict:
    import yaml

    config_path = path.parent.parent / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{config_path}: cannot read the run's config ({err})") from None
    for key in ("model", "lora", "param_dtype"):
        if not isinstance(config, dict) or key not in config:
            raise UserError(f"{config_path}: missing key {key!r}; not a petool training run")
    return config


def _resolve(model: str, run_dir: pathlib.Path) -> str:
    """The run's `model` as an absolute path (a relative one was relative to where the run started;
    the run directory's parent is the best guess left, tried after the current directory)."""
    candidate = pathlib.Path(model)
    if candidate.is_absolute() or candidate.exists():
        return str(candidate.resolve())
    beside = run_dir.parent / candidate
    return str(beside.resolve()) if beside.exists() else str(candidate)


def describe(path) -> CheckpointModel:
    path = pathlib.Path(path).resolve()
    if not (path / "state").is_dir():
        raise UserError(f"{path}: not a training checkpoint (no state/; an unfinished save?)")
    config = _run_config(path)
    start = _resolve(str(config["model"]), path.parent.parent)
    rank = int(config["lora"]["rank"])
    return CheckpointModel(path, start, rank, float(config["lora"]["alpha"]), str(config["param_dtype"]),
                           base_of(start) if rank else None, files_dir_of(start))


def base_of(model: str) -> str:
    """The plain (non-adapter) model under `model`: itself, an adapter directory's base, or a
    LoRA checkpoint's base."""
    if is_training_checkpoint(model):
        info = describe(model)
        return info.base_model or info.start_model
    marker = pathlib.Path(model) / MARKER
    if marker.is_file():
        base = json.loads(marker.read_text()).get("base_model")
        if base:
            return base_of(base)
    return model


def files_dir_of(model: str) -> str:
    """The directory holding the model files (config.json, tokenizer) for `model`."""
    if is_training_checkpoint(model):
        return describe(model).files_dir
    return model


def model_config(info: CheckpointModel) -> LlamaConfig:
    config_path = pathlib.Path(info.files_dir) / "config.json"
    if not config_path.is_file():
        raise UserError(f"{info.path}: the run's model {info.files_dir} has no config.json")
    return read_hf_config(config_path)


def trainable_params(info: CheckpointModel) -> dict:
    """The checkpoint's trainable leaves as a nested numpy tree (optimizer state not read)."""
    import orbax.checkpoint as ocp

    state_dir = info.path / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(state_dir)
        tree = getattr(metadata, "item_metadata", metadata)
        tree = getattr(tree, "tree", tree)
        names = list(tree["trainable"])
        restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
            item={"trainable": {k: 0 for k in names}},
            restore_args={"trainable": {k: ocp.RestoreArgs(restore_type=np.ndarray) for k in names}},
            partial_restore=True))
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise UserError(f"{state_dir}: cannot read the trainable parameters ({err})") from None
    finally:
        checkpointer.close()
    return traverse_util.unflatten_dict(dict(restored["trainable"]), sep=SEP)


def model_marker(info: CheckpointModel) -> dict:
    """What a petool_model.json of this model would say (export reads it)."""
    marker = {"format": "petool-model", "version": 1, "param_dtype": info.param_dtype,
              "trained_by": "petool train", "checkpoint": str(info.path)}
    if info.lora_rank:
        marker.update(base_model=info.base_model, lora={"rank": info.lora_rank, "alpha": info.lora_alpha})
    return marker

