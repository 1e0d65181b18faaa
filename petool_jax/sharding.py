"""The device mesh (data, fsdp, tensor) and the ONE table from logical axis names to mesh
axes. Parameters and activations name their axes logically (see layers.py, model.py);
this table decides where each lands."""

from __future__ import annotations

import contextlib
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from petool_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),
    ("norm", None),
    ("lora_rank", None),
    # activations
    ("batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
)


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices=None) -> Mesh:
    """A mesh over `devices` (default: all); one axis may be -1 = the rest."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise UserError(f"mesh: at most one axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise UserError(f"mesh: {len(devices)} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) > len(devices):
        raise UserError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but only {len(devices)} devices exist")
    # Explicit sizes smaller than the device count use the first devices (e.g. a 1-device
    # reference run on a machine with 8).
    devices = devices[:math.prod(sizes)]
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def logical_to_sharding(boxed_tree, mesh: Mesh):
    """NamedShardings for a tree of nn.LogicallyPartitioned leaves (e.g. eval_shape(init))."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, LOGICAL_AXIS_RULES)


def check_divisible(abstract_tree, shardings) -> None:
    """Raise (naming the parameter) when a dimension does not split evenly over its mesh axes."""
    flat_a = jax.tree_util.tree_leaves_with_path(abstract_tree)
    flat_s = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    for (path, leaf), sharding in zip(flat_a, flat_s):
        for dim, axes in zip(leaf.shape, sharding.spec):
            if axes is None:
                continue
            axes = (axes,) if isinstance(axes, str) else axes
            parts = math.prod(sharding.mesh.shape[a] for a in axes)
            if dim % parts:
                name = jax.tree_util.keystr(path)
                raise UserError(f"parameter {name} dim {dim} does not divide over mesh axes {axes} ({parts})")


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) axis over data and fsdp; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


@contextlib.contextmanager
def mesh_rules(mesh: Mesh):
    """The mesh and the logical-axis table in effect, so the model's activation
    constraints (nn.with_logical_constraint) resolve to this mesh while tracing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        yield
