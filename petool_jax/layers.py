"""Building blocks with logical axis names on every parameter: RMSNorm, a linear layer
with an optional LoRA adapter, and the token embedding."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from petool_jax.config import RuntimeOptions


def _dtype(name: str):
    return jnp.dtype(name)


class RMSNorm(nn.Module):
    eps: float
    options: RuntimeOptions

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (x.shape[-1],), _dtype(self.options.param_dtype))
        # As transformers: normalise in float32, cast back, then multiply by the weight.
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(_dtype(self.options.dtype)) * normed.astype(_dtype(self.options.dtype))


class Linear(nn.Module):
    """y = x @ kernel (+ (x @ lora_a @ lora_b) * alpha / rank when options.lora_rank > 0).

    kernel is [in, out] (the transpose of torch's weight). lora_b starts at zero, so a
    fresh adapter leaves the output bitwise unchanged.
    """

    features: int
    axes: tuple[str, str]
    init_std: float
    options: RuntimeOptions
    adaptable: bool = True  # False for the output head (LoRA targets the decoder's linears)

    @nn.compact
    def __call__(self, x):
        opts = self.options
        dtype, param_dtype = _dtype(opts.dtype), _dtype(opts.param_dtype)
        kernel = self.param("kernel",
                            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), self.axes),
                            (x.shape[-1], self.features), param_dtype)
        y = jnp.einsum("...i,io->...o", x.astype(dtype), kernel.astype(dtype))
        if opts.lora_rank > 0 and self.adaptable:
            lora_a = self.param(
                "lora_a",
                nn.with_logical_partitioning(nn.initializers.normal(1.0 / opts.lora_rank),
                                             (self.axes[0], "lora_rank")),
                (x.shape[-1], opts.lora_rank), param_dtype)
            lora_b = self.param(
                "lora_b", nn.with_logical_partitioning(nn.initializers.zeros, ("lora_rank", self.axes[1])),
                (opts.lora_rank, self.features), param_dtype)
            delta = jnp.einsum("...i,ir->...r", x.astype(dtype), lora_a.astype(dtype))
            delta = jnp.einsum("...r,ro->...o", delta, lora_b.astype(dtype))
            y = y + delta * jnp.asarray(opts.lora_scale, dtype)
        return y


class Embed(nn.Module):
    vocab_size: int
    features: int
    init_std: float
    options: RuntimeOptions

    def setup(self):
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(nn.initializers.normal(self.init_std), ("vocab", "embed")),
            (self.vocab_size, self.features), _dtype(self.options.param_dtype))

    def __call__(self, tokens):
        return jnp.take(self.embedding, tokens, axis=0).astype(_dtype(self.options.dtype))

    def attend(self, x):
        """Logits through the tied embedding matrix (LLaMA-3.2)."""
        return jnp.einsum("...d,vd->...v", x, self.embedding.astype(_dtype(self.options.dtype)))
