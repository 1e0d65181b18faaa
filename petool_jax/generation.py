"""Batched generation with a KV cache.

Prompts are left-padded into a batch so every row writes its next token at the same cache
slot; each row keeps its own RoPE positions (slot - start) and mask. A jitted prefill fills
the cache with all prompt tokens but the last, in causal chunks; a jitted decode runs a
lax.while_loop with the cache donated: each step feeds one token (first the prompt's last,
then the one just sampled) and samples the next, stopping when all rows hit an end token.
Prompt lengths are rounded up to a few buckets and the batch size is fixed, so a whole
benchmark compiles a handful of times.
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
# A prefill of at most MAX_CHUNK slots runs in one piece; a longer one in 4-7 chunks of at
# most CHUNK_CAP slots (more for the rare prompts beyond 8k tokens), bounding the attention
# scores of one chunk to batch x heads x CHUNK_CAP x slots.
MAX_CHUNK = 512
CHUNK_CAP = 1024


def prompt_bucket(length: int) -> int:
    """Smallest of 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, ... that is >= length.

    Four sizes per octave: a prompt pads by at most 25% (about 9% on PEToolBench, against
    about 50% with powers of two), and its length range compiles a handful of times."""
    octave = MIN_BUCKET
    while octave * 2 < length:
        octave *= 2
    for quarters in (4, 5, 6, 7, 8):
        if octave * quarters // 4 >= length:
            return octave * quarters // 4
    raise AssertionError("unreachable")


def prefill_chunk(bucket: int) -> int:
    """Chunk size for a prefill of `bucket` slots: the whole bucket up to MAX_CHUNK, else
    the bucket's octave / 4 (a bucket is 4-7 such quarters, so it divides evenly), at most
    CHUNK_CAP."""
    if bucket <= MAX_CHUNK:
        return bucket
    return min(1 << (bucket.bit_length() - 3), CHUNK_CAP)


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
        """Cache slots [0, T) from tokens_BxT; the logits are never used, so XLA drops the
        vocabulary projection. Chunk i of n attends to slots [0, end of chunk i) only:
        (n + 1) / 2n of the attention work of one T x T pass (57-63% for n = 4-7), and at
        most 1/n of its memory."""
        batch, length = tokens_BxT.shape
        cache = init_cache(config, batch, length + max_new_tokens, dtype)
        chunk = prefill_chunk(length)
        for lo in range(0, length, chunk):
            hi = lo + chunk
            view = {name: kv[:, :, :hi] for name, kv in cache.items()}
            positions = jnp.maximum(jnp.arange(lo, hi)[None, :] - start_B[:, None], 0)
            mask = cache_mask(start_B, lo, chunk, hi)
            _, view = model.apply({"params": params}, tokens_BxT[:, lo:hi], positions, mask, cache=view,
                                  cache_index=lo)
            cache = {name: kv.at[:, :, lo:hi].set(view[name][:, :, lo:hi]) for name, kv in cache.items()}
        return cache

    @functools.partial(jax.jit, donate_argnums=(1,))
    def decode(params, cache, last_B, start_B, prompt_len, active_B, stop_ids, key, temperature, top_p):
        """Step i feeds the token at slot prompt_len + i (the prompt's last token, then each
        sampled one) and samples generated token i."""
        batch = last_B.shape[0]
        cache_len = cache["k"].shape[2]
        out = jnp.full((batch, max_new_tokens), -1, jnp.int32)

        def cond(state):
            step, _, done, *_ = state
            return (step < max_new_tokens) & ~jnp.all(done)

        def body(state):
            step, token, done, out, cache, key = state
            slot = prompt_len + step
            positions = (slot - start_B)[:, None]
            mask = cache_mask(start_B, slot, 1, cache_len)
            logits, cache = model.apply({"params": params}, token[:, None], positions, mask,
                                        cache=cache, cache_index=slot)
            key, sub = jax.random.split(key)
            token = _sample(logits[:, -1].astype(jnp.float32), sub, temperature, top_p, greedy)
            out = out.at[:, step].set(jnp.where(done, -1, token))
            done = done | jnp.isin(token, stop_ids)
            return step + 1, token, done, out, cache, key

        state = (jnp.int32(0), last_B, ~active_B, out, cache, key)
        _, _, _, out, cache, _ = jax.lax.while_loop(cond, body, state)
        return out, cache  # returning the cache lets XLA alias it to the donated input

    return prefill, decode


def pack_batch(prompts: list[list[int]], rows: int, pad_id: int):
    """numpy arrays for prefill + decode: tokens [rows, bucket] (all but each prompt's last
    token, right-aligned so every row's last token sits at slot `bucket`), last [rows],
    start [rows] (a row's first real slot) and active [rows] (False for padding rows)."""
    length = prompt_bucket(max(len(p) for p in prompts) - 1)
    tokens = np.full((rows, length), pad_id, np.int32)
    last = np.full((rows,), pad_id, np.int32)
    start = np.full((rows,), length, np.int32)  # padding rows see only their own slot
    active = np.zeros((rows,), bool)
    for r, prompt in enumerate(prompts):
        head = prompt[:-1]
        tokens[r, length - len(head):] = head
        last[r] = prompt[-1]
        start[r] = length - len(head)
        active[r] = True
    return tokens, last, start, active


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
        stop_ids = (end_token_ids(bundle.tokenizer, bundle.config, (bundle.path, bundle.base_path))
                    if bundle.tokenizer else bundle.config.eos_token_ids)
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
        tokens, last, start, active = pack_batch([prompts[i] for i in idx], rows, pad_id)
        length = tokens.shape[1]
        rows_1d = batch_sharding(mesh, 1)
        key, sub = jax.random.split(key)
        with mesh_rules(mesh):
            start_d = jax.device_put(start, rows_1d)
            cache = prefill(bundle.params, jax.device_put(tokens, batch_sharding(mesh, 2)), start_d)
            out, _ = decode(bundle.params, cache, jax.device_put(last, rows_1d), start_d, jnp.int32(length),
                            jax.device_put(active, rows_1d), jax.device_put(stop, replicated(mesh)), sub,
                            jnp.float32(max(temperature, 1e-6)), jnp.float32(top_p))
        out = np.asarray(out)
        for r, i in enumerate(idx):
            ids = []
            for t in out[r].tolist():
                if t < 0 or t in stop_ids:
                    break
                ids.append(t)
            results[i] = ids
        bar.update(len(idx))
    bar.close()
    return results
