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
from petool_jax.train.config import TrainConfig


def maybe_initialize_distributed() -> None:
    """Multi-host: jax.distributed.initialize() when the environment asks for it.

    Every host runs the same command. On a TPU pod slice set PETOOL_DISTRIBUTED=1 (the TPU
    runtime supplies the coordinator, the process count and this host's id). Elsewhere (GPU
    clusters, several CPU processes) set JAX_COORDINATOR_ADDRESS=host:port (process 0's
    address), JAX_NUM_PROCESSES and JAX_PROCESS_ID; JAX itself reads only the address, so
    the other two are passed here. Single-host runs need nothing."""
    from petool_jax.errors import UserError

    if os.environ.get("PETOOL_DISTRIBUTED") != "1" and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return
    if jax.distributed.is_initialized():
        return
    kwargs = {}
    for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        value = os.environ.get(name)
        if value is not None:
            try:
                kwargs[key] = int(value)
            except ValueError:
                raise UserError(f"environment variable {name}={value!r} is not an integer") from None
    jax.distributed.initialize(**kwargs)


def mesh_from_config(config: TrainConfig):
    return make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)


def runtime_options(config: TrainConfig, lora_rank: int) -> RuntimeOptions:
    return RuntimeOptions(dtype=config.dtype, param_dtype=config.param_dtype, remat=config.remat,
                          attention=config.attention, lora_rank=lora_rank, lora_alpha=config.lora.alpha)


@dataclasses.dataclass
class PolicySetup:
    bundle: object  # ModelBundle of the base model (tokenizer, config, mesh)
    options: RuntimeOptions  # with the LoRA rank of this run
    trainable: dict  # flat {path: array}
    frozen: dict  # flat {path: array}; for LoRA the base weights, in the compute dtype


def load_policy(model_path: str, config: TrainConfig, mesh) -> PolicySetup:
    """The starting policy: an HF or petool model (LoRA adapters freshly initialised), or a
    petool adapter directory written by an earlier LoRA run (its adapter is resumed)."""
    from petool_jax.errors import UserError

    rank = config.lora.rank
    options = runtime_options(config, rank)
    # Trainable weights in param_dtype; frozen base weights (LoRA) in the compute dtype.
    base_dtype = config.param_dtype if rank == 0 else config.dtype
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
        adapter = P.init_lora(bundle.config, options, mesh, config.seed)
    trainable = {k: v.astype(jnp.dtype(config.param_dtype)) for k, v in adapter.items()}
    frozen = {k: v for k, v in flat.items() if not P.is_lora_key(k)}
    return PolicySetup(bundle, options, trainable, frozen)


def microbatch_sharding(mesh, ndim: int) -> NamedSharding:
    """[accumulation, micro_batch, ...]: micro-batch rows over data x fsdp (sharding.batch_sharding
    splits the leading axis instead)."""
    return NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp"), *([None] * (ndim - 2))))


def local_micro_rows(mesh, micro_batch_size: int) -> tuple[int, ...]:
    """The micro-batch rows (0 .. micro_batch_size-1) that this process's devices hold, the
    same in every accumulation slice: all of them on one host; on a pod slice its share."""
    indices = microbatch_sharding(mesh, 2).addressable_devices_indices_map((1, micro_batch_size))
    rows: set[int] = set()
    for index in indices.values():
        rows.update(range(micro_batch_size)[index[1]])
    return tuple(sorted(rows))


def place_batch(batch: dict, mesh) -> dict:
    """Host arrays -> global jax arrays [accumulation, micro_batch, ...].

    A batch with `local_rows` (built by a Batcher for this process's rows only, see
    local_micro_rows) holds [accumulation, len(local_rows), ...]: each local device gets
    its slice of those rows and the global array is assembled from the hosts' pieces, so a
    host builds and transfers only its own rows. A batch without it is the whole global
    batch; each device then takes its slice with a callback."""
    local = batch.get("local_rows")
    out = {}
    for key, value in batch.items():
        if not isinstance(value, np.ndarray):
            continue
        sharding = microbatch_sharding(mesh, value.ndim)
        if local is None:
            out[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
        else:
            out[key] = _assemble(value, sharding, local, batch["micro_batch_size"])
    return out


def _assemble(value: np.ndarray, sharding: NamedSharding, local: tuple[int, ...], micro: int):
    shape = (value.shape[0], micro, *value.shape[2:])
    where = {row: i for i, row in enumerate(local)}  # global micro row -> row of `value`
    pieces = []
    for device, index in sharding.addressable_devices_indices_map(shape).items():
        rows = range(micro)[index[1]]
        if rows.step != 1 or rows.start not in where or rows.stop - 1 not in where:
            raise ValueError(f"device {device} holds micro rows {rows}, not all built on this process ({local})")
        first = where[rows.start]
        piece = value[index[0], first:first + len(rows)][(slice(None), slice(None), *index[2:])]
        pieces.append(jax.device_put(piece, device))
    return jax.make_array_from_single_device_arrays(shape, sharding, pieces)


def check_micro_batch(config: TrainConfig, mesh) -> None:
    from petool_jax.errors import UserError

    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.micro_batch_size % dp:
        raise UserError(f"micro_batch_size ({config.micro_batch_size}) must be a multiple of "
                        f"mesh data*fsdp ({dp})")
