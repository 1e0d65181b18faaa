"""Building a model and its parameters: random init, or weights from an HF directory or a
petool model directory, placed on a mesh with the logical sharding table."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from petool_jax.checkpoint import is_petool_model, load_params, read_model_config
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.errors import UserError
from petool_jax.host_memory import release_freed_host_memory
from petool_jax.model import Llama
from petool_jax.sharding import check_divisible, logical_to_sharding, make_mesh


@dataclasses.dataclass
class ModelBundle:
    config: LlamaConfig
    options: RuntimeOptions
    model: Llama
    params: Any  # the "params" collection: a nested dict of jax arrays
    mesh: Mesh
    tokenizer: Any = None
    path: str | None = None  # where the model was loaded from (tokenizer files live there)
    base_path: str | None = None  # for a LoRA adapter directory: its base model


def boxed_abstract_params(config: LlamaConfig, options: RuntimeOptions):
    """Shapes/dtypes with their logical axis names (nn.LogicallyPartitioned leaves)."""
    model = Llama(config, options)
    tokens = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), tokens)["params"])


def param_shardings(config: LlamaConfig, options: RuntimeOptions, mesh: Mesh):
    boxed = boxed_abstract_params(config, options)
    shardings = logical_to_sharding(boxed, mesh)
    abstract = nn.meta.unbox(boxed)
    check_divisible(abstract, shardings)
    return abstract, shardings


def init_params(config: LlamaConfig, options: RuntimeOptions, mesh: Mesh, seed: int = 0):
    """Random parameters (normal(initializer_range), ones for norms), created sharded."""
    model = Llama(config, options)
    _, shardings = param_shardings(config, options, mesh)

    @jax.jit
    def init(key):
        return nn.meta.unbox(model.init(key, jnp.zeros((1, 1), jnp.int32))["params"])

    return jax.jit(init, out_shardings=shardings)(jax.random.key(seed))


def place_params(host_params, config: LlamaConfig, options: RuntimeOptions, mesh: Mesh):
    """numpy tree -> sharded jax arrays in options.param_dtype, one leaf at a time.

    LoRA leaves the host tree lacks (a base checkpoint loaded for LoRA training) are
    created fresh by the caller; here every leaf of the host tree must be expected."""
    abstract, shardings = param_shardings(config, options, mesh)
    dtype = jnp.dtype(options.param_dtype)

    def put(path, leaf, sharding):
        if leaf.shape != tuple(sharding_shape(abstract, path)):
            raise UserError(f"parameter {jax.tree_util.keystr(path)}: shape {leaf.shape}, "
                            f"expected {sharding_shape(abstract, path)}")
        return jax.device_put(jnp.asarray(leaf, dtype) if leaf.dtype != dtype else leaf, sharding)

    return jax.tree_util.tree_map_with_path(put, host_params, _subtree(shardings, host_params))


def sharding_shape(abstract, path):
    node = abstract
    for key in path:
        node = node[key.key]
    return node.shape


def _subtree(full, like):
    """The part of `full` whose keys appear in `like` (a base tree inside a LoRA tree)."""
    if isinstance(like, dict):
        return {k: _subtree(full[k], v) for k, v in like.items()}
    return full


def load_model(path: str | pathlib.Path, dtype: str = "float32", param_dtype: str | None = None,
               mesh: Mesh | None = None, options: RuntimeOptions | None = None,
               with_tokenizer: bool = True, progress: bool = False) -> ModelBundle:
    """An HF directory, a petool model directory, a petool LoRA adapter directory (its
    base model loaded from the path it records) or a training checkpoint
    RUN_DIR/checkpoints/N (petool_jax.run_checkpoint) -> ModelBundle with params on `mesh`."""
    import json

    from petool_jax.convert import read_hf_params
    from petool_jax.run_checkpoint import is_training_checkpoint
    from petool_jax.tokenizer import load_tokenizer

    path = pathlib.Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: model directory not found")
    options = options or RuntimeOptions(dtype=dtype, param_dtype=param_dtype or dtype)
    mesh = mesh or make_mesh(devices=jax.devices()[:1])
    if is_training_checkpoint(path):
        return _load_training_checkpoint(path, options, mesh, with_tokenizer, progress)
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        steps = sorted((int(p.name) for p in (path / "checkpoints").iterdir() if p.name.isdigit()))
        raise UserError(f"{path} is a training run directory; pass its finished model {path / 'model'} or a "
                        f"checkpoint {path / 'checkpoints'}/N (N in {steps or 'none yet'})")
    marker = json.loads((path / "petool_model.json").read_text()) if is_petool_model(path) else {}
    if "base_model" in marker:
        return _load_adapter(path, marker, options, mesh, with_tokenizer, progress)
    base_options = dataclasses.replace(options, lora_rank=0)
    if marker:
        config = read_model_config(path)
        abstract, shardings = param_shardings(config, base_options, mesh)
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract, shardings)
        params = load_params(path, target)
    else:
        config, host_params, _ = read_hf_params(path, progress=progress)
        params = jax.block_until_ready(place_params(host_params, config, base_options, mesh))
        del host_params
        release_freed_host_memory()  # the host copies' pages (see host_memory.py)
    tokenizer = load_tokenizer(path) if with_tokenizer else None
    return ModelBundle(config, base_options, Llama(config, base_options), params, mesh, tokenizer, str(path))


def _load_adapter(path, marker, options, mesh, with_tokenizer, progress) -> ModelBundle:
    """Base weights from marker["base_model"] plus the adapter's lora_a/lora_b leaves."""
    base = load_model(marker["base_model"], mesh=mesh, options=dataclasses.replace(options, lora_rank=0),
                      with_tokenizer=False, progress=progress)
    lora = marker["lora"]
    lora_options = dataclasses.replace(options, lora_rank=int(lora["rank"]), lora_alpha=float(lora["alpha"]))
    adapter = _place_adapter(load_params(path), base.config, lora_options, mesh,
                             jnp.dtype(_stored_dtype(marker, options)))
    params = _deep_merge(base.params, adapter)
    tokenizer = None
    if with_tokenizer:
        from petool_jax.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(path)
    return ModelBundle(base.config, lora_options, Llama(base.config, lora_options), params, mesh, tokenizer,
                       str(path), base_path=marker["base_model"])


def _load_training_checkpoint(path, options, mesh, with_tokenizer, progress) -> ModelBundle:
    """RUN_DIR/checkpoints/N: its trainable leaves over the run's starting model (see
    petool_jax.run_checkpoint). `path` of the bundle is where the model files live."""
    from petool_jax import run_checkpoint
    from petool_jax.tokenizer import load_tokenizer

    info = run_checkpoint.describe(path)
    tokenizer = load_tokenizer(info.files_dir) if with_tokenizer else None
    trained = run_checkpoint.trainable_params(info)
    if not info.lora_rank:
        config = run_checkpoint.model_config(info)
        base_options = dataclasses.replace(options, lora_rank=0)
        params = place_params(trained, config, base_options, mesh)
        return ModelBundle(config, base_options, Llama(config, base_options), params, mesh, tokenizer,
                           info.files_dir)
    base = load_model(info.base_model, mesh=mesh, options=dataclasses.replace(options, lora_rank=0),
                      with_tokenizer=False, progress=progress)
    lora_options = dataclasses.replace(options, lora_rank=info.lora_rank, lora_alpha=info.lora_alpha)
    params = _deep_merge(base.params, _place_adapter(trained, base.config, lora_options, mesh,
                                                     jnp.dtype(info.param_dtype)))
    return ModelBundle(base.config, lora_options, Llama(base.config, lora_options), params, mesh, tokenizer,
                       info.files_dir, base_path=info.base_model)


def _place_adapter(adapter_host, config, lora_options, mesh, dtype):
    """lora_a/lora_b host leaves -> sharded jax arrays in `dtype`."""
    _, shardings = param_shardings(config, lora_options, mesh)

    def put(key_path, leaf):
        node = shardings
        for k in key_path:
            node = node[k.key]
        return jax.device_put(jnp.asarray(leaf, dtype), node)

    return jax.tree_util.tree_map_with_path(put, adapter_host)


def _stored_dtype(marker: dict, options: RuntimeOptions) -> str:
    return marker.get("param_dtype", options.param_dtype)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out
