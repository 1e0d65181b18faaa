"""LLaMA-3 family decoder in Flax (linen), numerically matching transformers'
LlamaForCausalLM. Layers are stacked with nn.scan (parameters carry a leading "layers"
axis), optionally rematerialised; an optional KV cache (a pytree of stacked arrays) makes
the same module serve training, prefill and decoding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from petool_jax.attention import MaskSpec, attend, causal_spec
from petool_jax.attention_blockwise import blockwise_attend
from petool_jax.attention_choice import check_kernel, resolve_attention
from petool_jax.attention_splash import splash_attend
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.layers import Embed, Linear, RMSNorm
from petool_jax.rope import apply_rope, rope_tables

REMAT_POLICY_FNS = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Attention(nn.Module):
    config: LlamaConfig
    options: RuntimeOptions
    kernel: str = "xla"  # as Llama resolved options.attention for this call

    @nn.compact
    def __call__(self, x_BxTxD, cos, sin, mask_BxTxS, cache, layer, cache_index):
        """cache: the whole stacked KV cache ({"k", "v"}: [layers, B, S, kv_heads, head_dim])
        or None; `layer` indexes this layer's slice of it."""
        cfg, opts = self.config, self.options
        batch, length, _ = x_BxTxD.shape
        std = cfg.initializer_range
        q = Linear(cfg.q_dim, ("embed", "q_heads"), std, opts, name="q_proj")(x_BxTxD)
        k = Linear(cfg.kv_dim, ("embed", "kv_heads"), std, opts, name="k_proj")(x_BxTxD)
        v = Linear(cfg.kv_dim, ("embed", "kv_heads"), std, opts, name="v_proj")(x_BxTxD)
        q_BxTxNxH = apply_rope(q.reshape(batch, length, cfg.num_attention_heads, cfg.head_dim), cos, sin)
        k_BxTxKxH = apply_rope(k.reshape(batch, length, cfg.num_key_value_heads, cfg.head_dim), cos, sin)
        v_BxTxKxH = v.reshape(batch, length, cfg.num_key_value_heads, cfg.head_dim)
        if cache is not None:
            # Write only this step's keys/values into the stacked cache (in place: the cache
            # is a loop carry, never copied per layer), then read this layer's slice.
            start = (layer, 0, cache_index, 0, 0)
            cache = {
                "k": jax.lax.dynamic_update_slice(cache["k"], k_BxTxKxH.astype(cache["k"].dtype)[None], start),
                "v": jax.lax.dynamic_update_slice(cache["v"], v_BxTxKxH.astype(cache["v"].dtype)[None], start),
            }
            k_BxTxKxH = jax.lax.dynamic_index_in_dim(cache["k"], layer, 0, keepdims=False)
            v_BxTxKxH = jax.lax.dynamic_index_in_dim(cache["v"], layer, 0, keepdims=False)
        if self.kernel == "blockwise":
            out = blockwise_attend(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, mask_BxTxS)
        elif self.kernel == "splash":
            out = splash_attend(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, mask_BxTxS)
        else:
            out = attend(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, mask_BxTxS, impl=self.kernel)
        out = out.reshape(batch, length, cfg.q_dim)
        return Linear(cfg.hidden_size, ("q_heads", "embed"), std, opts, name="o_proj")(out), cache


class MLP(nn.Module):
    config: LlamaConfig
    options: RuntimeOptions

    @nn.compact
    def __call__(self, x):
        cfg, opts = self.config, self.options
        std = cfg.initializer_range
        gate = Linear(cfg.intermediate_size, ("embed", "mlp"), std, opts, name="gate_proj")(x)
        up = Linear(cfg.intermediate_size, ("embed", "mlp"), std, opts, name="up_proj")(x)
        hidden = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "act_length", "act_mlp"))
        return Linear(cfg.hidden_size, ("mlp", "embed"), std, opts, name="down_proj")(hidden)


class DecoderLayer(nn.Module):
    config: LlamaConfig
    options: RuntimeOptions
    kernel: str = "xla"

    @nn.compact
    def __call__(self, carry, cos, sin, mask, cache_index):
        """carry: x, or (x, stacked KV cache, layer index) when decoding with a cache."""
        cfg, opts = self.config, self.options
        x, cache, layer = carry if isinstance(carry, tuple) else (carry, None, None)
        x = nn.with_logical_constraint(x, ("batch", "act_length", "act_embed"))
        h, cache = Attention(cfg, opts, self.kernel, name="attn")(
            RMSNorm(cfg.rms_norm_eps, opts, name="input_norm")(x), cos, sin, mask, cache, layer, cache_index)
        x = x + h
        x = x + MLP(cfg, opts, name="mlp")(RMSNorm(cfg.rms_norm_eps, opts, name="post_attn_norm")(x))
        return ((x, cache, layer + 1) if cache is not None else x), None


class Llama(nn.Module):
    """tokens [B, T] -> logits [B, T, V] (in options.dtype) and the updated cache."""

    config: LlamaConfig
    options: RuntimeOptions = RuntimeOptions()

    @nn.compact
    def __call__(self, tokens_BxT, positions_BxT=None, mask_BxTxS=None, segment_ids_BxT=None,
                 cache: dict[str, Any] | None = None, cache_index=None, gather_BxN=None):
        """mask_BxTxS: None (causal, packed by segment_ids_BxT if given), a dense boolean
        [B, T, S] array (always run by the xla kernel), or an attention.MaskSpec
        (causal_spec / prefix_shared_spec / cache_spec: what the mask is made from), which
        options.attention (auto by default, see attention_choice.py) may run blockwise,
        never materializing [B, T, S]. A cached call (prefill, decode) needs a mask: a
        dense attention.cache_mask (xla, as always) or attention.cache_spec.
        gather_BxN: only compute logits at these positions (-> [B, N, V]); losses that
        need a few positions of a long sequence (DPO responses) skip the rest of the head."""
        cfg, opts = self.config, self.options
        batch, length = tokens_BxT.shape
        if positions_BxT is None:
            positions_BxT = jnp.broadcast_to(jnp.arange(length), (batch, length))
        if mask_BxTxS is None:
            if cache is not None:
                raise ValueError("a cached call needs an explicit mask (see attention.cache_mask / cache_spec)")
            mask_BxTxS = causal_spec(segment_ids_BxT)
        kind = mask_BxTxS.kind if isinstance(mask_BxTxS, MaskSpec) else "dense"
        if cache is None:
            # A kernel that would drop this mask (e.g. DPO's prefix sharing): refuse, never guess.
            check_kernel(opts.attention, kind)
        kv_len = length if cache is None else cache["k"].shape[2]
        kernel = resolve_attention(opts.attention, jax.default_backend(), kv_len, kind)
        if kernel == "xla" and kind != "dense":
            mask_BxTxS = mask_BxTxS.dense(batch, length, kv_len)
        elif kernel == "cudnn":
            mask_BxTxS = None  # cuDNN applies the causal mask itself (see attention.py)
        cos, sin = rope_tables(cfg, positions_BxT)
        embed = Embed(cfg.vocab_size, cfg.hidden_size, cfg.initializer_range, opts, name="embed")
        x = embed(tokens_BxT)

        layer_cls = DecoderLayer
        if opts.remat != "none":
            layer_cls = nn.remat(DecoderLayer, policy=REMAT_POLICY_FNS[opts.remat], prevent_cse=False)
        layers = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.num_hidden_layers,
            unroll=opts.scan_unroll,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg, opts, kernel, name="layers")
        new_cache = None
        if cache is None:
            x, _ = layers(x, cos, sin, mask_BxTxS, cache_index)
        else:  # the cache rides in the scan carry, so each layer updates it in place
            (x, new_cache, _), _ = layers((x, cache, jnp.int32(0)), cos, sin, mask_BxTxS, cache_index)

        if gather_BxN is not None:
            x = jnp.take_along_axis(x, gather_BxN[:, :, None], axis=1)
        x = RMSNorm(cfg.rms_norm_eps, opts, name="final_norm")(x)
        if cfg.tie_word_embeddings:
            logits = embed.attend(x)
        else:
            logits = Linear(cfg.vocab_size, ("embed", "vocab"), cfg.initializer_range, opts,
                            adaptable=False, name="lm_head")(x)
        return logits, new_cache


def init_cache(config: LlamaConfig, batch: int, length: int, dtype) -> dict[str, jnp.ndarray]:
    """Zeroed KV cache: k and v, each [layers, B, S, kv_heads, head_dim]."""
    shape = (config.num_hidden_layers, batch, length, config.num_key_value_heads, config.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
