"""Attention masks and the XLA attention kernel (grouped-query).

Masks are boolean [B, Tq, Tk] (True = may attend). One place builds each kind:
training (causal, optional packed segments), cached decoding (left-padded rows), and
callers such as prefix-shared DPO may pass their own.

`MaskSpec` is what a mask is made from (segment / pair+branch ids, the cache's row starts)
rather than the dense array, which is itself O(T^2): the blockwise and splash kernels build
each block's mask from it inside their loops; the xla kernel gets `spec.dense(...)`, the
same boolean array the dense builders below give.

The `cudnn` kernel applies the causal mask only: any other mask (packed segments, DPO's
prefix sharing) would be dropped silently, so every caller that needs one refuses that
kernel up front (`require_mask_kernel`) and the model refuses an explicit mask with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from petool_jax.errors import UserError

# Kernels that apply only the causal mask and ignore every other mask.
CAUSAL_ONLY_IMPLS = ("cudnn",)

# Mask kinds, from the least to the most a kernel must apply (attention_choice.py picks a
# kernel per kind): causal only; causal + packed segments; DPO's prefix sharing (pair +
# branch ids); a KV cache (causal by slot from an offset, left-padded row starts).
MASK_KINDS = ("causal", "segments", "prefix", "cache")

# The mask kinds each kernel applies exactly. cudnn gets only is_causal=True; with explicit
# `attention: cudnn` it still runs unpacked SFT rows (segment ids 1..1 then 0 padding on the
# right, which a causal mask already hides from real tokens): callers refuse packing.
KERNEL_MASKS = {"xla": MASK_KINDS, "blockwise": MASK_KINDS, "cudnn": ("causal",),
                "splash": ("causal", "segments")}
KERNEL_APPLIES = {"cudnn": "only the causal mask", "splash": "only causal and packed-segment masks"}


def require_mask_kernel(impl: str, who: str, kind: str = "prefix") -> None:
    """Refuse a kernel that cannot apply the mask a computation needs (`auto` always can)."""
    if impl != "auto" and kind not in KERNEL_MASKS[impl]:
        raise UserError(f"{who} needs its attention mask (segments / prefix sharing), but attention={impl} "
                        f"applies {KERNEL_APPLIES[impl]} and would give wrong results; use attention=xla "
                        f"(or auto / blockwise)")


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


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """A causal mask by slot, described instead of materialized.

    Query t sits at slot q_offset + t, key s at slot s; a query sees keys at slots <= its
    own, and further: with segments_BxT (self-attention, 0 = padding) only keys of its own
    non-zero segment; with branches_BxT too (DPO prefix sharing; segments are the pair
    ids) only keys in branch 0 or its own branch; with start_B only keys at slots >= its
    row's start (a left-padded KV cache). A pytree: the arrays are leaves, `kind` is static.
    """

    kind: str
    q_offset: Any = None  # int32 scalar (traced in a cached call); None = 0
    segments_BxT: Any = None
    branches_BxT: Any = None
    start_B: Any = None

    def dense(self, batch: int, q_len: int, kv_len: int) -> jnp.ndarray:
        """The [B, Tq, Tk] boolean mask, exactly as the dense builders give it."""
        if self.kind == "cache":
            return cache_mask(self.start_B, self.q_offset, q_len, kv_len)
        if self.kind == "prefix":
            return prefix_shared_mask(self.segments_BxT, self.branches_BxT)
        return causal_mask(self.segments_BxT, q_len, batch)


jax.tree_util.register_dataclass(MaskSpec, data_fields=["q_offset", "segments_BxT", "branches_BxT", "start_B"],
                                 meta_fields=["kind"])


def causal_spec(segment_ids_BxT: jnp.ndarray | None = None) -> MaskSpec:
    """Training: causal, with packed segments when segment ids are given (as causal_mask)."""
    return MaskSpec("causal" if segment_ids_BxT is None else "segments", segments_BxT=segment_ids_BxT)


def prefix_shared_spec(pair_ids_BxT: jnp.ndarray, branch_ids_BxT: jnp.ndarray) -> MaskSpec:
    """DPO's prefix-shared pairs (as prefix_shared_mask)."""
    return MaskSpec("prefix", segments_BxT=pair_ids_BxT, branches_BxT=branch_ids_BxT)


def cache_spec(start_B: jnp.ndarray, cache_index) -> MaskSpec:
    """A left-padded batch writing at slot `cache_index` of a KV cache (as cache_mask)."""
    return MaskSpec("cache", q_offset=jnp.asarray(cache_index, jnp.int32), start_B=start_B)


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
