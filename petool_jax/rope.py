"""Rotary position embeddings as transformers computes them for LLaMA-3 (rotate-half
layout, inverse frequencies in fp32, LLaMA-3.1 "llama3" frequency scaling)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from petool_jax.config import LlamaConfig


def inverse_frequencies(config: LlamaConfig) -> np.ndarray:
    """inv_freq[head_dim // 2] in float32, after llama3 scaling when the config has it."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    inv_freq = inv_freq.astype(np.float32)
    if config.rope_scaling is None:
        return inv_freq
    _, factor, low_freq_factor, high_freq_factor, original_max = config.rope_scaling
    # Long wavelengths are divided by `factor`, short ones kept, the band between blended
    # (the same piecewise rule as transformers' _compute_llama3_parameters).
    low_freq_wavelen = original_max / low_freq_factor
    high_freq_wavelen = original_max / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_tables(config: LlamaConfig, positions_BxT: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin, each [B, T, head_dim], float32."""
    inv_freq = jnp.asarray(inverse_frequencies(config))
    freqs_BxTxH = positions_BxT.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([freqs_BxTxH, freqs_BxTxH], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_BxTxNxH: jnp.ndarray, cos_BxTxH: jnp.ndarray, sin_BxTxH: jnp.ndarray) -> jnp.ndarray:
    """x * cos + rotate_half(x) * sin, with the tables cast to x's dtype as transformers does."""
    cos = cos_BxTxH[:, :, None, :].astype(x_BxTxNxH.dtype)
    sin = sin_BxTxH[:, :, None, :].astype(x_BxTxNxH.dtype)
    half = x_BxTxNxH.shape[-1] // 2
    rotated = jnp.concatenate([-x_BxTxNxH[..., half:], x_BxTxNxH[..., :half]], axis=-1)
    return x_BxTxNxH * cos + rotated * sin
