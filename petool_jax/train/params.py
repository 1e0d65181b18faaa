"""Splitting the parameter tree into trainable and frozen parts (LoRA or full fine-tuning),
and creating LoRA adapters beside loaded base weights."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.loading import param_shardings
from petool_jax.model import Llama

SEP = "/"


def is_lora_key(key: str) -> bool:
    return key.rsplit(SEP, 1)[-1].startswith("lora_")


def flatten(params) -> dict:
    return traverse_util.flatten_dict(params, sep=SEP)


def merge(*flat_parts: dict):
    merged = {}
    for part in flat_parts:
        merged.update(part)
    return traverse_util.unflatten_dict(merged, sep=SEP)


def split_trainable(params, lora: bool) -> tuple[dict, dict]:
    """(trainable, frozen) flat dicts: the LoRA leaves when `lora`, else everything."""
    flat = flatten(params)
    if not lora:
        return flat, {}
    trainable = {k: v for k, v in flat.items() if is_lora_key(k)}
    frozen = {k: v for k, v in flat.items() if not is_lora_key(k)}
    return trainable, frozen


def init_lora(config: LlamaConfig, options: RuntimeOptions, mesh, seed: int) -> dict:
    """Fresh LoRA leaves (lora_a random, lora_b zero), sharded. Only the adapter is
    materialised: XLA drops the unused base-weight initialisers from the jitted init."""
    model = Llama(config, options)
    _, shardings = param_shardings(config, options, mesh)
    flat_shardings = {k: v for k, v in flatten(shardings).items() if is_lora_key(k)}

    def init(key):
        params = nn.meta.unbox(model.init(key, jnp.zeros((1, 1), jnp.int32))["params"])
        return {k: v for k, v in flatten(params).items() if is_lora_key(k)}

    return jax.jit(init, out_shardings=flat_shardings)(jax.random.key(seed))
