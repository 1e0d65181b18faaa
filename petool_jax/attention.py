"""Attention masks and the attention kernel (grouped-query).

Masks are boolean [B, Tq, Tk] (True = may attend). One place builds each kind:
training (causal, optional packed segments), cached decoding (left-padded rows), and
callers such as prefix-shared DPO may pass their own.

The `cudnn` kernel applies the causal mask only: any other mask (packed segments, DPO's
prefix sharing) would be dropped silently, so every caller that needs one refuses that
kernel up front (`require_mask_kernel`) and the model refuses an explicit mask with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from petool_jax.errors import UserError

# Kernels that apply only the causal mask and ignore every other mask.
CAUSAL_ONLY_IMPLS = ("cudnn",)


def require_mask_kernel(impl: str, who: str) -> None:
    """Refuse a causal-only kernel for a computation whose mask is more than causal."""
    if impl in CAUSAL_ONLY_IMPLS:
        raise UserError(f"{who} needs its attention mask (segments / prefix sharing), but attention={impl} "
                        f"applies only the causal mask and would give wrong results; use attention=xla")


def causal_mask(segment_ids_BxT: jnp.ndarray | None, length: int, batch: int) -> jnp.ndarray:
    """Causal by index; with segment ids (0 = padding) tokens only see their own segment."""
    idx = jnp.arange(length)
    mask_TxT = idx[None, :] <= idx[:, None]
    mask = jnp.broadcast_to(mask_TxT, (batch, length, length))
    if segment_ids_BxT is not None:
        same = segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :]
        mask = mask & same & (segment_ids_BxT[:, None, :] != 0)
    return mask


def prefix_shared_mask(pair_ids_BxT: jnp.ndarray, branch_ids_BxT: jnp.ndarray) -> jnp.ndarray:
    """DPO pairs packed as `prompt | chosen | rejected`: branch 0 is the shared prompt, 1 the
    chosen and 2 the rejected response. A token sees earlier tokens of its own pair that are
    in the prompt or in its own branch, so the two responses never see each other."""
    length = pair_ids_BxT.shape[1]
    idx = jnp.arange(length)
    causal = idx[None, None, :] <= idx[None, :, None]
    same_pair = (pair_ids_BxT[:, :, None] == pair_ids_BxT[:, None, :]) & (pair_ids_BxT[:, None, :] != 0)
    branch_q, branch_k = branch_ids_BxT[:, :, None], branch_ids_BxT[:, None, :]
    return causal & same_pair & ((branch_k == 0) | (branch_k == branch_q))


def cache_mask(start_B: jnp.ndarray, cache_index, q_len: int, cache_len: int) -> jnp.ndarray:
    """Mask for a left-padded batch writing q_len tokens at slot `cache_index`.

    Row b's real tokens start at slot start_B[b]; query t sits at slot cache_index + t and
    may see slots start_B[b] .. cache_index + t.
    """
    slots = jnp.arange(cache_len)[None, None, :]
    q_slots = (cache_index + jnp.arange(q_len))[None, :, None]
    return (slots <= q_slots) & (slots >= start_B[:, None, None])


def attend(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS, impl: str = "xla"):
    """softmax(q k^T / sqrt(H)) v with grouped-query heads; softmax in float32."""
    batch, q_len, num_heads, head_dim = q_BxTxNxH.shape
    num_kv = k_BxSxKxH.shape[2]
    if impl == "cudnn":
        # cuDNN flash attention: causal training without packing only (the mask is then
        # exactly causal; right padding never influences real tokens). The mask argument is
        # NOT applied here: callers with any other mask refuse this kernel (see the top).
        out = jax.nn.dot_product_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, is_causal=True,
                                           implementation="cudnn")
        return out
    # The G query heads sharing a KV head are folded into the query axis (Q = G*T) so both
    # products are plain 4-D batched matmuls over (B, K): on XLA:CPU the equivalent 5-D
    # einsums ("btkgh,bskh->bkgts") and the 5-D mask/softmax ran 2-2.7x slower (forward) and
    # ~2x slower (backward) at T=1024, with bitwise-equal results.
    groups = num_heads // num_kv
    kv_len = k_BxSxKxH.shape[1]
    q_BxKxQxH = (q_BxTxNxH.reshape(batch, q_len, num_kv, groups, head_dim).transpose(0, 2, 3, 1, 4)
                 .reshape(batch, num_kv, groups * q_len, head_dim))
    k_BxKxSxH = k_BxSxKxH.transpose(0, 2, 1, 3)
    v_BxKxSxH = v_BxSxKxH.transpose(0, 2, 1, 3)
    scores_BxKxQxS = jnp.einsum("bkqh,bksh->bkqs", q_BxKxQxH, k_BxKxSxH, preferred_element_type=jnp.float32)
    scores_BxKxQxS = scores_BxKxQxS * (head_dim ** -0.5)
    mask_Bx1xQxS = jnp.broadcast_to(mask_BxTxS[:, None, None], (batch, 1, groups, q_len, kv_len)).reshape(
        batch, 1, groups * q_len, kv_len)
    big_neg = jnp.finfo(jnp.float32).min
    scores_BxKxQxS = jnp.where(mask_Bx1xQxS, scores_BxKxQxS, big_neg)
    probs = jax.nn.softmax(scores_BxKxQxS, axis=-1).astype(v_BxSxKxH.dtype)
    out_BxKxQxH = jnp.einsum("bkqs,bksh->bkqh", probs, v_BxKxSxH)
    return (out_BxKxQxH.reshape(batch, num_kv, groups, q_len, head_dim).transpose(0, 3, 1, 2, 4)
            .reshape(batch, q_len, num_heads, head_dim))
