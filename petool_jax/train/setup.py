"""What every training run sets up the same way: distributed init, the mesh, the base
model and its trainable/frozen split, and batch placement on the mesh."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from petool_jax.config import RuntimeOptions
from petool_jax.loading import load_model
from petool_jax.sharding import make_mesh
from petool_jax.train import params as P


def maybe_initialize_distributed() -> None:
    """Multi-host: jax.distributed.initialize() when the environment asks for it.

    Set PETOOL_DISTRIBUTED=1 on every host of a TPU pod slice (the TPU runtime supplies the
    coordinator) or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID on GPU
    clusters; single-host runs need nothing."""
    if os.environ.get("PETOOL_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        if not jax.distributed.is_initialized():
            jax.distributed.initialize()


def mesh_from_config(config: dict):
    m = config["mesh"]
    return make_mesh(int(m["data"]), int(m["fsdp"]), int(m["tensor"]))


def runtime_options(config: dict, lora_rank: int) -> RuntimeOptions:
    return RuntimeOptions(dtype=config["dtype"], param_dtype=config["param_dtype"], remat=config["remat"],
                          attention=config["attention"], lora_rank=lora_rank,
                          lora_alpha=float(config["lora"]["alpha"]))


@dataclasses.dataclass
class PolicySetup:
    bundle: object  # ModelBundle of the base model (tokenizer, config, mesh)
    options: RuntimeOptions  # with the LoRA rank of this run
    trainable: dict  # flat {path: array}
    frozen: dict  # flat {path: array}; for LoRA the base weights, in the compute dtype


def load_policy(model_path: str, config: dict, mesh) -> PolicySetup:
    """The starting policy: an HF or petool model (LoRA adapters freshly initialised), or a
    petool adapter directory written by an earlier LoRA run (its adapter is resumed)."""
    from petool_jax.errors import UserError

    rank = int(config["lora"]["rank"])
    options = runtime_options(config, rank)
    # Trainable weights in param_dtype; frozen base weights (LoRA) in the compute dtype.
    base_dtype = config["param_dtype"] if rank == 0 else config["dtype"]
    bundle = load_model(model_path, mesh=mesh, options=dataclasses.replace(options, param_dtype=base_dtype))
    flat = P.flatten(bundle.params)
    adapter = {k: v for k, v in flat.items() if P.is_lora_key(k)}
    if rank == 0:
        if adapter:
            raise UserError(f"{model_path} holds a LoRA adapter; full fine-tuning (lora.rank=0) needs a "
                            "merged model (petool export --merge-lora)")
        return PolicySetup(bundle, options, flat, {})
    if adapter and bundle.options.lora_rank != rank:
        raise UserError(f"{model_path} holds a rank-{bundle.options.lora_rank} adapter but lora.rank={rank}")
    if not adapter:
        adapter = P.init_lora(bundle.config, options, mesh, int(config["seed"]))
    trainable = {k: v.astype(jnp.dtype(config["param_dtype"])) for k, v in adapter.items()}
    frozen = {k: v for k, v in flat.items() if not P.is_lora_key(k)}
    return PolicySetup(bundle, options, trainable, frozen)


def batch_sharding(mesh, ndim: int) -> NamedSharding:
    """[accumulation, micro_batch, ...]: micro-batch rows over data x fsdp."""
    return NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp"), *([None] * (ndim - 2))))


def place_batch(batch: dict, mesh) -> dict:
    """Host arrays -> global jax arrays. Every host builds the same global batch (it is a
    pure function of the step), so each device takes its slice with a callback; this is
    correct on one host and on many."""
    out = {}
    for key, value in batch.items():
        if not isinstance(value, np.ndarray):
            continue
        sharding = batch_sharding(mesh, value.ndim)
        out[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
    return out


def check_micro_batch(config: dict, mesh) -> None:
    from petool_jax.errors import UserError

    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    if config["micro_batch_size"] % dp:
        raise UserError(f"micro_batch_size ({config['micro_batch_size']}) must be a multiple of "
                        f"mesh data*fsdp ({dp})")
