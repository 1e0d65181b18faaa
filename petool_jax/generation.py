"""Batched generation with a KV cache.

Prompts are left-padded into a batch so every row writes its next token at the same cache
slot; each row keeps its own RoPE positions (slot - start) and mask. A jitted prefill fills
the cache; a jitted decode runs a lax.while_loop with the cache donated, stopping when all
rows hit an end token. Prompt lengths are rounded up to a few buckets and the batch size is
fixed, so a whole benchmark compiles a handful of times.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from petool_jax.attention import cache_mask
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.loading import ModelBundle, load_model  # noqa: F401  (part of this module's API)
from petool_jax.model import Llama, init_cache
from petool_jax.sharding import batch_sharding, mesh_rules, replicated

MIN_BUCKET = 64


def prompt_bucket(length: int) -> int:
    """Smallest power of two >= length (at least MIN_BUCKET)."""
    bucket = MIN_BUCKET
    while bucket < length:
        bucket *= 2
    return bucket


def _sample(logits_BxV, key, temperature, top_p, greedy: bool):
    if greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV / temperature
    # Nucleus: keep the smallest set of tokens whose probability reaches top_p.
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    keep_sorted = (cum - jax.nn.softmax(sorted_logits, axis=-1)) < top_p
    threshold = jnp.min(jnp.where(keep_sorted, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits >= threshold, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.lru_cache(maxsize=None)
def _compiled(config: LlamaConfig, options: RuntimeOptions, max_new_tokens: int, greedy: bool):
    model = Llama(config, options)
    dtype = jnp.dtype(options.dtype)

    @jax.jit
    def prefill(params, tokens_BxT, start_B):
        batch, length = tokens_BxT.shape
        cache = init_cache(config, batch, length + max_new_tokens, dtype)
        positions = jnp.maximum(jnp.arange(length)[None, :] - start_B[:, None], 0)
        mask = cache_mask(start_B, 0, length, length + max_new_tokens)
        logits, cache = model.apply({"params": params}, tokens_BxT, positions, mask, cache=cache,
                                    cache_index=0)
        return logits[:, -1].astype(jnp.float32), cache

    @functools.partial(jax.jit, donate_argnums=(1,))
    def decode(params, cache, last_logits_BxV, start_B, prompt_len, active_B, stop_ids, key,
               temperature, top_p):
        batch = last_logits_BxV.shape[0]
        cache_len = cache["k"].shape[2]
        key, sub = jax.random.split(key)
        first = _sample(last_logits_BxV, sub, temperature, top_p, greedy)
        out = jnp.full((batch, max_new_tokens), -1, jnp.int32)

        def cond(state):
            step, _, done, *_ = state
            return (step < max_new_tokens) & ~jnp.all(done)

        def body(state):
            step, token, done, out, cache, key = state
            out = out.at[:, step].set(jnp.where(done, -1, token))
            done = done | jnp.isin(token, stop_ids)
            slot = prompt_len + step
            positions = (slot - start_B)[:, None]
            mask = cache_mask(start_B, slot, 1, cache_len)
            logits, cache = model.apply({"params": params}, token[:, None], positions, mask,
                                        cache=cache, cache_index=slot)
            key, sub = jax.random.split(key)
            token = _sample(logits[:, -1].astype(jnp.float32), sub, temperature, top_p, greedy)
            return step + 1, token, done, out, cache, key

        state = (jnp.int32(0), first, ~active_B, out, cache, key)
        _, _, _, out, cache, _ = jax.lax.while_loop(cond, body, state)
        return out, cache  # returning the cache lets XLA alias it to the donated input

    return prefill, decode


def generate_batch(bundle: ModelBundle, prompts: list[list[int]], max_new_tokens: int = 256,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                   progress: bool = True, stop_ids: tuple[int, ...] | None = None) -> list[list[int]]:
    """Generated ids per prompt (end token excluded), in input order.

    Prompts are sorted by length so each batch pads little; batches are padded to
    `batch_size` rows (rounded up to the mesh's data-parallel size) for a fixed shape.
    """
    from petool_jax.tokenizer import end_token_ids

    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt")
    if stop_ids is None:
        stop_ids = end_token_ids(bundle.tokenizer, bundle.config) if bundle.tokenizer else bundle.config.eos_token_ids
    greedy = temperature <= 0.0
    prefill, decode = _compiled(bundle.config, bundle.options, max_new_tokens, greedy)
    mesh = bundle.mesh
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = -(-batch_size // dp) * dp
    pad_id = bundle.config.pad_token_id or 0
    stop = jnp.asarray(np.asarray(stop_ids or (-2,), np.int32))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[list[int] | None] = [None] * len(prompts)
    key = jax.random.key(seed)
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress)
    for begin in range(0, len(order), rows):
        idx = order[begin:begin + rows]
        length = prompt_bucket(max(len(prompts[i]) for i in idx))
        tokens = np.full((rows, length), pad_id, np.int32)
        start = np.full((rows,), length - 1, np.int32)
        active = np.zeros((rows,), bool)
        for r, i in enumerate(idx):
            tokens[r, length - len(prompts[i]):] = prompts[i]
            start[r] = length - len(prompts[i])
            active[r] = True
        tokens_d = jax.device_put(tokens, batch_sharding(mesh, 2))
        start_d = jax.device_put(start, batch_sharding(mesh, 1))
        active_d = jax.device_put(active, batch_sharding(mesh, 1))
        key, sub = jax.random.split(key)
        with mesh_rules(mesh):
            last_logits, cache = prefill(bundle.params, tokens_d, start_d)
            out, _ = decode(bundle.params, cache, last_logits, start_d, jnp.int32(length), active_d,
                            jax.device_put(stop, replicated(mesh)), sub,
                            jnp.float32(max(temperature, 1e-6)), jnp.float32(top_p))
        out = np.asarray(out)
        for r, i in enumerate(idx):
            row = out[r].tolist()
            ids = []
            for t in row:
                if t < 0 or t in stop_ids:
                    break
                ids.append(t)
            results[i] = ids
        bar.update(len(idx))
    bar.close()
    return results
