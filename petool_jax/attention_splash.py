"""TPU splash attention (the Pallas kernel that ships with JAX,
jax.experimental.pallas.ops.tpu.splash_attention): causal, with packed segment ids, grouped
query heads, sharded over the mesh's heads with shard_map.

Layout: each KV head and its G query heads form one multi-query problem (q [G, T, H],
k and v [T, H]), the kernel's MQA form; batch rows and KV heads are vmapped over. Inside
shard_map each device holds its rows (mesh axes data, fsdp) and its KV heads (tensor), so
the kernel itself runs unsharded (head_shards = q_seq_shards = 1) on local data.

Off TPU the kernel runs in Pallas interpret mode (slow; used by the tests on the CPU).
Sequences are padded to a multiple of the block (128 at least): padded keys sit after
every real token, so the causal mask hides them from real queries.

Segment ids here follow splash's rule (a query sees keys of the same id): padding (id 0)
sees padding, where the xla kernel lets padding see nothing; real tokens see the same keys
in both, and padding rows are never read.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from petool_jax.attention import MaskSpec

MIN_BLOCK = 128
MAX_BLOCK = 512


def splash_block(length: int) -> int:
    """The largest of 512, 256, 128 that divides `length` (a multiple of 128)."""
    for block in (MAX_BLOCK, 256, MIN_BLOCK):
        if length % block == 0:
            return block
    raise ValueError(f"splash: length {length} is not a multiple of {MIN_BLOCK}")


def make_kernel(groups: int, length: int, interpret: bool):
    """The MQA splash kernel for G query heads over `length` (padded) tokens, causal."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    block = splash_block(length)
    mask = sm.MultiHeadMask([sm.CausalMask((length, length)) for _ in range(groups)])
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    # Built per call, not cached: the kernel holds mask arrays made under the trace that asked
    # for it, and a cached one met in a later trace (the model's layer scan) is a leaked tracer.
    return sk.make_splash_mqa(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def local_splash(q_BxKxGxTxH, k_BxKxTxH, v_BxKxTxH, segments_BxT, interpret: bool):
    """The kernel on one device's rows and KV heads (all arrays already padded)."""
    from jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel import SegmentIds

    groups, length = q_BxKxGxTxH.shape[2], q_BxKxGxTxH.shape[3]
    kernel = make_kernel(groups, length, interpret)

    def one(q_GxTxH, k_TxH, v_TxH, seg_T):
        return kernel(q_GxTxH, k_TxH, v_TxH, segment_ids=SegmentIds(q=seg_T, kv=seg_T))

    per_head = jax.vmap(one, in_axes=(0, 0, 0, None))  # over KV heads
    return jax.vmap(per_head)(q_BxKxGxTxH, k_BxKxTxH, v_BxKxTxH, segments_BxT)  # over rows


def current_mesh():
    """The mesh set by sharding.mesh_rules (jax.set_mesh), or None outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def splash_attend(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, spec: MaskSpec, interpret: bool | None = None,
                  local=local_splash):
    """softmax(q k^T / sqrt(H)) v, causal (packed by spec.segments_BxT), by the splash kernel.
    `local` is the per-device computation (tests substitute a stand-in where the kernel
    cannot run)."""
    if spec.kind not in ("causal", "segments"):
        raise ValueError(f"splash applies causal and segment masks only, not {spec.kind!r}")
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    batch, length, num_heads, head_dim = q_BxTxNxH.shape
    num_kv = k_BxTxKxH.shape[2]
    groups = num_heads // num_kv
    padded = -(-length // MIN_BLOCK) * MIN_BLOCK
    pad = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
    # The kernel takes no softmax scale: scale q as the xla kernel scales the scores.
    q = jnp.pad(q_BxTxNxH * jnp.asarray(head_dim ** -0.5, q_BxTxNxH.dtype), pad)
    q = q.reshape(batch, padded, num_kv, groups, head_dim).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, H]
    k = jnp.pad(k_BxTxKxH, pad).transpose(0, 2, 1, 3)  # [B, K, T, H]
    v = jnp.pad(v_BxTxKxH, pad).transpose(0, 2, 1, 3)
    segments = spec.segments_BxT if spec.segments_BxT is not None else jnp.ones((batch, length), jnp.int32)
    segments = jnp.pad(segments.astype(jnp.int32), [(0, 0), (0, padded - length)])
    run = functools.partial(local, interpret=interpret)
    mesh = current_mesh()
    if mesh is not None and not all(size == 1 for size in mesh.shape.values()):
        rows, heads = ("data", "fsdp"), "tensor"
        run = jax.shard_map(run, mesh=mesh, in_specs=(PartitionSpec(rows, heads), PartitionSpec(rows, heads),
                                                      PartitionSpec(rows, heads), PartitionSpec(rows)),
                            out_specs=PartitionSpec(rows, heads), check_vma=False)
    out = run(q, k, v, segments)  # [B, K, G, T, H]
    out = out.transpose(0, 3, 1, 2, 4).reshape(batch, padded, num_heads, head_dim)
    return out[:, :length]

