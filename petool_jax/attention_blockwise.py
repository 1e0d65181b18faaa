"""Memory-efficient ("flash") attention in plain JAX: online softmax over key blocks, one
query block at a time, with a custom VJP that recomputes each block from the saved
log-sum-exp (the FlashAttention-2 backward). Memory per layer is O(T x block) in the
forward and the backward pass; the [B, heads, T, T] scores never exist.

The mask is never materialized: each [B, bq, bk] block is built inside the loop from a
MaskSpec (slots, segment / pair+branch ids, the cache's row starts). Key blocks wholly
above the causal diagonal (and, for a KV cache, wholly before every row's start) are
skipped, not masked: about half the work of a causal T x T pass.

Equal to the xla kernel within float32 rounding for every row that sees at least one key.
A row that sees no key at all (padding: segment 0, or cache slots before a row's start)
gets 0 here where xla averages every value uniformly; such rows are never read (padding
keys are invisible to real tokens and padding positions carry no loss).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from petool_jax.attention import MaskSpec

BLOCK_Q = 256
BLOCK_K = 256
BIG_NEG = float(jnp.finfo(jnp.float32).min)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Static shapes of one call (hashable: a nondiff argument of the custom VJP)."""

    bq: int
    bk: int
    nq: int
    nk: int
    kv_len: int  # real keys; slots >= kv_len are block padding
    scale: float
    has_segments: bool
    has_branches: bool
    has_start: bool


def _pad_to(x, axis: int, length: int):
    pad = length - x.shape[axis]
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def _blocks(x_BxL, n: int, size: int):
    """[B, n*size, ...] -> [n, B, size, ...] (padded with zeros)."""
    x = _pad_to(x_BxL, 1, n * size)
    x = x.reshape(x.shape[0], n, size, *x.shape[2:])
    return jnp.moveaxis(x, 1, 0)


def _block_mask(plan: Plan, meta: dict, i, j, batch: int, groups: int):
    """[B, 1, G*bq, bk]: may query block i see key block j (built from the spec's parts)."""
    q_slot = meta["offset"] + i * plan.bq + jnp.arange(plan.bq)
    k_slot = j * plan.bk + jnp.arange(plan.bk)
    mask = (k_slot[None, :] <= q_slot[:, None])[None]  # [1, bq, bk]
    if plan.nk * plan.bk != plan.kv_len:
        mask = mask & (k_slot < plan.kv_len)[None, None, :]
    if plan.has_segments:
        qs, ks = meta["q_seg"][i], meta["k_seg"][j]  # [B, bq], [B, bk]
        mask = mask & (qs[:, :, None] == ks[:, None, :]) & (ks[:, None, :] != 0)
    if plan.has_branches:
        qb, kb = meta["q_branch"][i], meta["k_branch"][j]
        mask = mask & ((kb[:, None, :] == 0) | (kb[:, None, :] == qb[:, :, None]))
    if plan.has_start:
        mask = mask & (k_slot[None, None, :] >= meta["start"][:, None, None])
    mask = jnp.broadcast_to(mask[:, None, None], (batch, 1, groups, plan.bq, plan.bk))
    return mask.reshape(batch, 1, groups * plan.bq, plan.bk)


def key_block_range(plan: Plan, meta: dict, i):
    """Key blocks [lo, hi) that query block i can see: up to the diagonal, from the
    earliest row start."""
    last_q_slot = meta["offset"] + (i + 1) * plan.bq - 1
    hi = jnp.clip(last_q_slot // plan.bk + 1, 0, plan.nk)
    lo = jnp.clip(jnp.min(meta["start"]) // plan.bk, 0, hi) if plan.has_start else jnp.int32(0)
    return lo, hi


def query_block_range(plan: Plan, meta: dict, j):
    """Query blocks [lo, nq) that can see key block j (empty when the block lies wholly
    before every row's start)."""
    lo = jnp.clip((j * plan.bk - meta["offset"]) // plan.bq, 0, plan.nq)
    if plan.has_start:
        lo = jnp.where((j + 1) * plan.bk <= jnp.min(meta["start"]), plan.nq, lo)
    return lo


def _scores(plan: Plan, q_i, k_j):
    return jnp.einsum("bkqh,bksh->bkqs", q_i, k_j, preferred_element_type=jnp.float32) * plan.scale


def _forward(plan: Plan, q_blocks, k_blocks, v_blocks, meta):
    """Per query block: (out [B, K, G*bq, H] f32, lse [B, K, G*bq] f32)."""
    batch, groups = q_blocks.shape[1], q_blocks.shape[3] // plan.bq

    def one_query_block(_, i):
        q_i = q_blocks[i]
        shape = q_i.shape[:3]

        def step(j, carry):
            m, l, acc = carry
            s = _scores(plan, q_i, k_blocks[j])
            mask = _block_mask(plan, meta, i, j, batch, groups)
            s = jnp.where(mask, s, BIG_NEG)
            m_new = jnp.maximum(m, s.max(axis=-1))
            p = jnp.where(mask, jnp.exp(s - m_new[..., None]), 0.0)
            corr = jnp.exp(m - m_new)
            l = l * corr + p.sum(axis=-1)
            pv = jnp.einsum("bkqs,bksh->bkqh", p.astype(v_blocks.dtype), v_blocks[j],
                            preferred_element_type=jnp.float32)
            return m_new, l, acc * corr[..., None] + pv

        init = (jnp.full(shape, BIG_NEG, jnp.float32), jnp.zeros(shape, jnp.float32),
                jnp.zeros((*shape, q_i.shape[-1]), jnp.float32))
        lo, hi = key_block_range(plan, meta, i)
        m, l, acc = jax.lax.fori_loop(lo, hi, step, init)
        seen = l > 0
        out = jnp.where(seen[..., None], acc / jnp.where(seen, l, 1.0)[..., None], 0.0)
        lse = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), jnp.inf)
        return None, (out, lse)

    _, (out, lse) = jax.lax.scan(one_query_block, None, jnp.arange(plan.nq))
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(plan: Plan, q_blocks, k_blocks, v_blocks, meta):
    out, _ = _forward(plan, q_blocks, k_blocks, v_blocks, meta)
    return out.astype(q_blocks.dtype)


def _flash_fwd(plan, q_blocks, k_blocks, v_blocks, meta):
    out, lse = _forward(plan, q_blocks, k_blocks, v_blocks, meta)
    out = out.astype(q_blocks.dtype)
    return out, (q_blocks, k_blocks, v_blocks, meta, out, lse)


def _flash_bwd(plan, residuals, d_out):
    """Per key block j, over the query blocks that see it: recompute p from the saved
    lse, accumulate dk_j and dv_j, and add each block's dq into the full dq."""
    q_blocks, k_blocks, v_blocks, meta, out, lse = residuals
    batch, groups = q_blocks.shape[1], q_blocks.shape[3] // plan.bq
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)  # [nq, B, K, G*bq]

    def one_key_block(dq, j):
        k_j, v_j = k_blocks[j], v_blocks[j]

        def step(i, carry):
            dq, dk, dv = carry
            q_i, do_i = q_blocks[i], d_out[i]
            s = _scores(plan, q_i, k_j)
            mask = _block_mask(plan, meta, i, j, batch, groups)
            p = jnp.where(mask, jnp.exp(s - lse[i][..., None]), 0.0)
            dv = dv + jnp.einsum("bkqs,bkqh->bksh", p.astype(do_i.dtype), do_i, preferred_element_type=jnp.float32)
            dp = jnp.einsum("bkqh,bksh->bkqs", do_i, v_j, preferred_element_type=jnp.float32)
            ds = (p * (dp - delta[i][..., None])).astype(q_i.dtype)
            dk = dk + jnp.einsum("bkqs,bkqh->bksh", ds, q_i, preferred_element_type=jnp.float32) * plan.scale
            dq_i = jnp.einsum("bkqs,bksh->bkqh", ds, k_j, preferred_element_type=jnp.float32) * plan.scale
            dq = jax.lax.dynamic_update_index_in_dim(dq, dq[i] + dq_i, i, 0)
            return dq, dk, dv

        zeros = jnp.zeros(k_j.shape, jnp.float32)
        dq, dk, dv = jax.lax.fori_loop(query_block_range(plan, meta, j), plan.nq, step, (dq, zeros, zeros))
        return dq, (dk, dv)

    dq = jnp.zeros(q_blocks.shape, jnp.float32)
    dq, (dk, dv) = jax.lax.scan(one_key_block, dq, jnp.arange(plan.nk))
    meta_cotangent = jax.tree.map(lambda _: None, meta)
    return (dq.astype(q_blocks.dtype), dk.astype(k_blocks.dtype), dv.astype(v_blocks.dtype), meta_cotangent)


_flash.defvjp(_flash_fwd, _flash_bwd)


def blockwise_attend(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, spec: MaskSpec, block_q: int | None = None,
                     block_k: int | None = None):
    """softmax(q k^T / sqrt(H)) v under `spec`, grouped-query heads, blocks of
    block_q queries x block_k keys (default BLOCK_Q x BLOCK_K; smaller when the sequence is
    shorter; lengths that are not a multiple are padded, the padding masked)."""
    block_q, block_k = block_q or BLOCK_Q, block_k or BLOCK_K
    batch, q_len, num_heads, head_dim = q_BxTxNxH.shape
    kv_len, num_kv = k_BxSxKxH.shape[1], k_BxSxKxH.shape[2]
    groups = num_heads // num_kv
    bq, bk = min(block_q, q_len), min(block_k, kv_len)
    nq, nk = -(-q_len // bq), -(-kv_len // bk)
    plan = Plan(bq, bk, nq, nk, kv_len, head_dim ** -0.5, spec.segments_BxT is not None,
                spec.branches_BxT is not None, spec.start_B is not None)
    # [n, B, K, G*bq, H]: the G query heads of a KV head folded into the query axis, so
    # both products are 4-D batched matmuls over (B, K) as in the xla kernel.
    q = _blocks(q_BxTxNxH.reshape(batch, q_len, num_kv, groups, head_dim), nq, bq)  # [nq, B, bq, K, G, H]
    q = q.transpose(0, 1, 3, 4, 2, 5).reshape(nq, batch, num_kv, groups * bq, head_dim)
    k = _blocks(k_BxSxKxH, nk, bk).transpose(0, 1, 3, 2, 4)  # [nk, B, K, bk, H]
    v = _blocks(v_BxSxKxH, nk, bk).transpose(0, 1, 3, 2, 4)
    meta = {"offset": jnp.asarray(0 if spec.q_offset is None else spec.q_offset, jnp.int32)}
    if plan.has_segments:
        meta["q_seg"] = _blocks(spec.segments_BxT, nq, bq)
        meta["k_seg"] = _blocks(spec.segments_BxT, nk, bk)
    if plan.has_branches:
        meta["q_branch"] = _blocks(spec.branches_BxT, nq, bq)
        meta["k_branch"] = _blocks(spec.branches_BxT, nk, bk)
    if plan.has_start:
        meta["start"] = spec.start_B.astype(jnp.int32)
    out = _flash(plan, q, k, v, meta)  # [nq, B, K, G*bq, H]
    out = out.reshape(nq, batch, num_kv, groups, bq, head_dim).transpose(1, 0, 4, 2, 3, 5)
    return out.reshape(batch, nq * bq, num_heads, head_dim)[:, :q_len]
