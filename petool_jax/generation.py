"""Batched generation with a KV cache.

Prompts are left-padded into a batch so every row writes its next token at the same cache
slot; each row keeps its own RoPE positions (slot - start) and mask. `prefill` fills a
`KVCache` with all prompt tokens but the last; `decode` runs a lax.while_loop with the
cache donated: each step feeds one token (first the prompt's last, then the one just
sampled) and samples the next, stopping when all rows hit an end token.
`jitted_generation` compiles the pair for one model, length limit and sampling mode;
`generate_batches` runs batches one ahead of the one whose tokens are read back.

Shapes are few on purpose: prompt lengths are rounded up to buckets (four per octave), a
batch has a power-of-two number of rows (at most batch_size), so a whole benchmark compiles
a handful of times. The prefill runs the batch in passes of prefill_rows rows, each pass
over the whole prompt at once, so its matmuls are large, with memory bounded twice: the
rows of a pass are as many as keep its MLP activations under ACTIVATION_BUDGET_BYTES, and
its attention is the blockwise kernel (no T x T array; the causal upper triangle and the
padding before the rows' starts are skipped) where `auto` picks it (from 1,024 keys on the
CPU, attention_choice.py). A pass whose attention is the dense xla kernel instead runs in
query chunks sized so that one chunk's float32 scores stay under SCORES_BUDGET_BYTES.
"""

from __future__ import annotations

import functools
from typing import Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from petool_jax.attention import cache_mask, cache_spec
from petool_jax.attention_choice import resolve_attention
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.loading import ModelBundle, load_model  # noqa: F401  (part of this module's API)
from petool_jax.model import Llama, init_cache
from petool_jax.sharding import batch_sharding, mesh_rules, replicated

MIN_BUCKET = 64
# One prefill pass's MLP activations (rows x slots x intermediate_size float32; the gate, the
# up projection and their product are live at once) stay under this. 16 rows of 2,560 slots,
# bench.eval_process's model (intermediate 1,024): passes of 4 rows, 3.7-3.9 s and 156 MiB of
# XLA temporaries, against 4.7-4.8 s / 80 MiB for 1 row, 4.7-5.5 s / 541 MiB for all 16 and
# 9.6 s for the former chunked prefill of all 16 (quiet 2-vCPU VM).
ACTIVATION_BUDGET_BYTES = 128 * 2**20
# A prefill pass with the dense xla kernel (below 1,024 keys on the CPU, or attention: xla)
# runs in query chunks whose attention scores, [rows, heads, chunk, slots] float32, stay
# under this (XLA also holds their exponentials: about twice this at the peak). When all 16
# rows of 3,700-4,000 tokens ran this way: peak RSS 0.84 GB at 64 MB, 0.73 at 16.
SCORES_BUDGET_BYTES = 16 * 2**20
MIN_CHUNK = 16
# Key windows of a chunked prefill: more windows skip more of the causal upper triangle
# (work (w + 1) / 2w of T x T) but compile one more loop body each.
PREFILL_WINDOWS = 4


class KVCache(NamedTuple):
    """Keys and values of a left-padded batch: k, v [layers, rows, slots, kv_heads, head_dim];
    start [rows]: a row's first real slot (the slots before it are padding it never sees)."""

    k: jax.Array
    v: jax.Array
    start: jax.Array

    def layers(self) -> dict:
        """The {"k", "v"} stacked cache the model reads and writes."""
        return {"k": self.k, "v": self.v}

    def with_layers(self, layers: dict) -> "KVCache":
        return self._replace(k=layers["k"], v=layers["v"])


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


def prefill_chunk(bucket: int, rows: int = 1, heads: int = 1) -> int:
    """Query chunk of a prefill of `bucket` slots: the whole bucket when its scores
    (rows x heads x bucket x bucket float32) fit SCORES_BUDGET_BYTES, else the largest
    power of two dividing the bucket (its octave / 4 or less) whose scores against all
    `bucket` slots fit, at least MIN_CHUNK."""
    if rows * heads * bucket * bucket * 4 <= SCORES_BUDGET_BYTES:
        return bucket
    chunk = 1 << (bucket.bit_length() - 3)  # a bucket is 4-7 quarters of its octave
    while chunk > MIN_CHUNK and rows * heads * chunk * bucket * 4 > SCORES_BUDGET_BYTES:
        chunk //= 2
    return chunk


def prefill_rows(rows: int, bucket: int, intermediate_size: int, multiple: int = 1) -> int:
    """Rows of one prefill pass: the most rows, a divisor of `rows` and a multiple of
    `multiple` (the mesh's data-parallel size, which divides `rows`), whose MLP activations
    (3 x pass rows x bucket x intermediate_size float32) fit ACTIVATION_BUDGET_BYTES; else
    `multiple`."""
    per_row = 3 * bucket * intermediate_size * 4
    fitting = [g for g in range(multiple, rows + 1, multiple)
               if rows % g == 0 and g * per_row <= ACTIVATION_BUDGET_BYTES]
    return max(fitting, default=multiple)


def batch_rows(n_prompts: int, batch_size: int, multiple: int = 1) -> int:
    """Rows of a batch holding n_prompts: the smallest power of two >= n_prompts (padding
    rows cost as much as real ones), at most batch_size, a multiple of `multiple` (the
    mesh's data-parallel size)."""
    rows = 1
    while rows < min(n_prompts, batch_size):
        rows *= 2
    rows = min(rows, batch_size)
    return -(-rows // multiple) * multiple


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of prompts, shortest first, grouped into batches of batch_size; the rest
    (the longest prompts) in power-of-two groups (e.g. 9 -> 8 + 1), so no batch carries
    padding rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    full = len(order) - len(order) % max(1, batch_size)
    groups = [order[b:b + batch_size] for b in range(0, full, batch_size)]
    rest = order[full:]
    while rest:
        size = 1 << (len(rest).bit_length() - 1)
        groups.append(rest[:size])
        rest = rest[size:]
    return groups


def sample_tokens(logits_BxV, key, temperature, top_p, greedy: bool):
    """Next token per row: argmax, or nucleus sampling at `temperature`."""
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


def prefill(model: Llama, params, tokens_BxT, start_B, cache_len: int, row_multiple: int = 1) -> KVCache:
    """A KVCache of `cache_len` slots holding tokens_BxT at slots [0, T).

    The logits are never used, so XLA drops the vocabulary projection. The rows run in
    passes of prefill_rows rows (a lax.fori_loop writing each pass into the batch's cache);
    a pass is one model call over all T slots when its attention kernel never builds T x T
    scores (blockwise, the `auto` choice from 1,024 keys on the CPU), else
    prefill_chunked's query chunks. `row_multiple`: the mesh's data-parallel size. The rows
    are sharded over it in contiguous blocks, and a pass takes the same number of rows
    from every block, so that each pass runs on all devices without moving rows."""
    config = model.config
    batch, length = tokens_BxT.shape
    dtype = jnp.dtype(model.options.dtype)
    group = prefill_rows(batch, length, config.intermediate_size, row_multiple)
    passes, per_block = batch // group, group // row_multiple
    kernel = resolve_attention(model.options.attention, jax.default_backend(), length, "cache")
    chunk = prefill_chunk(length, group, config.num_attention_heads) if kernel == "xla" else length
    # Row r = (block d, pass g, j) with r = d * (batch / row_multiple) + g * per_block + j.
    tokens_DxPxJxT = tokens_BxT.reshape(row_multiple, passes, per_block, length)
    start_DxPxJ = start_B.reshape(row_multiple, passes, per_block)

    def one_pass(g, cache):
        tokens = jax.lax.dynamic_index_in_dim(tokens_DxPxJxT, g, axis=1, keepdims=False).reshape(group, length)
        start = jax.lax.dynamic_index_in_dim(start_DxPxJ, g, axis=1, keepdims=False).reshape(group)
        if chunk == length:
            positions = jnp.maximum(jnp.arange(length)[None, :] - start[:, None], 0)
            layers = init_cache(config, group, length, dtype)
            _, layers = model.apply({"params": params}, tokens, positions, cache_spec(start, 0), cache=layers,
                                    cache_index=0)
        else:
            layers = prefill_chunked(model, params, tokens, start, chunk)
        return {name: jax.lax.dynamic_update_slice(
                    cache[name], layers[name].reshape(config.num_hidden_layers, row_multiple, 1, per_block,
                                                      *layers[name].shape[2:]), (0, 0, g, 0, 0, 0, 0))
                for name in cache}

    shape = (config.num_hidden_layers, row_multiple, passes, per_block, cache_len, config.num_key_value_heads,
             config.head_dim)
    cache = jax.lax.fori_loop(0, passes, one_pass, {name: jnp.zeros(shape, dtype) for name in ("k", "v")})
    k, v = (cache[name].reshape(config.num_hidden_layers, batch, *shape[4:]) for name in ("k", "v"))
    return KVCache(k, v, start_B)


def prefill_chunked(model: Llama, params, tokens_BxT, start_B, chunk: int) -> dict:
    """The stacked {"k", "v"} cache of tokens_BxT ([B, T] slots), in query chunks of `chunk`
    slots looped (lax.fori_loop) inside at most PREFILL_WINDOWS key windows: a chunk of
    window w attends to the slots [0, end of window w) only. Attention work is
    (w + 1) / 2w of one T x T pass (62.5% at 4 windows), memory one chunk's scores, and
    compilation one loop body per window."""
    config = model.config
    batch, length = tokens_BxT.shape
    n_chunks = length // chunk
    per_window = -(-n_chunks // PREFILL_WINDOWS)
    layers = init_cache(config, batch, 0, jnp.dtype(model.options.dtype))
    for first in range(0, n_chunks, per_window):
        count = min(per_window, n_chunks - first)
        hi = (first + count) * chunk
        # The window's slots: those written so far, then zeros for this window's chunks.
        grow = ((0, 0), (0, 0), (0, hi - layers["k"].shape[2]), (0, 0), (0, 0))
        layers = {name: jnp.pad(kv, grow) for name, kv in layers.items()}

        def body(i, layers, first=first, hi=hi):
            lo = (first + i) * chunk
            tokens = jax.lax.dynamic_slice_in_dim(tokens_BxT, lo, chunk, axis=1)
            positions = jnp.maximum(lo + jnp.arange(chunk)[None, :] - start_B[:, None], 0)
            mask = cache_mask(start_B, lo, chunk, hi)
            _, layers = model.apply({"params": params}, tokens, positions, mask, cache=layers, cache_index=lo)
            return layers

        layers = jax.lax.fori_loop(0, count, body, layers)
    return layers


def decode(model: Llama, params, cache: KVCache, last_B, prompt_len, active_B, stop_ids, key, temperature,
           top_p, max_new_tokens: int, greedy: bool):
    """(generated [rows, max_new_tokens], -1 after a row's end token or for inactive rows;
    the updated cache). Step i feeds the token at slot prompt_len + i (the prompt's last
    token, then each sampled one) and samples generated token i."""
    batch = last_B.shape[0]
    cache_len = cache.k.shape[2]
    out = jnp.full((batch, max_new_tokens), -1, jnp.int32)

    def cond(state):
        step, _, done, *_ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(state):
        step, token, done, out, layers, key = state
        slot = prompt_len + step
        positions = (slot - cache.start)[:, None]
        mask = cache_mask(cache.start, slot, 1, cache_len)
        logits, layers = model.apply({"params": params}, token[:, None], positions, mask,
                                     cache=layers, cache_index=slot)
        key, sub = jax.random.split(key)
        token = sample_tokens(logits[:, -1].astype(jnp.float32), sub, temperature, top_p, greedy)
        out = out.at[:, step].set(jnp.where(done, -1, token))
        done = done | jnp.isin(token, stop_ids)
        return step + 1, token, done, out, layers, key

    state = (jnp.int32(0), last_B, ~active_B, out, cache.layers(), key)
    _, _, _, out, layers, _ = jax.lax.while_loop(cond, body, state)
    return out, cache.with_layers(layers)


class JittedGeneration(NamedTuple):
    """prefill(params, tokens_BxT, start_B) -> KVCache with max_new_tokens free slots;
    decode(params, cache, last_B, prompt_len, active_B, stop_ids, key, temperature, top_p)
    -> (generated, cache), the cache donated."""

    prefill: object
    decode: object


@functools.lru_cache(maxsize=None)
def jitted_generation(config: LlamaConfig, options: RuntimeOptions, max_new_tokens: int,
                      greedy: bool, row_multiple: int = 1) -> JittedGeneration:
    """prefill / decode jitted for one model, new-token limit, sampling mode and
    data-parallel size (cached: every batch of a run reuses them; jax compiles once per
    batch shape)."""
    model = Llama(config, options)

    @jax.jit
    def jit_prefill(params, tokens_BxT, start_B):
        return prefill(model, params, tokens_BxT, start_B, tokens_BxT.shape[1] + max_new_tokens, row_multiple)

    @functools.partial(jax.jit, donate_argnums=(1,))
    def jit_decode(params, cache, last_B, prompt_len, active_B, stop_ids, key, temperature, top_p):
        # returning the cache lets XLA alias it to the donated input
        return decode(model, params, cache, last_B, prompt_len, active_B, stop_ids, key, temperature, top_p,
                      max_new_tokens, greedy)

    return JittedGeneration(jit_prefill, jit_decode)


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


def generate_batches(bundle: ModelBundle, batches: Iterable[list[list[int]]], max_new_tokens: int = 256,
                     temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                     stop_ids: tuple[int, ...] | None = None) -> Iterator[list[list[int]]]:
    """Generated ids (end token excluded) of each batch of prompts, batch by batch, in order.

    One batch runs ahead: batch i + 1 is packed, traced, compiled where its shape is new
    and dispatched before batch i's tokens are read back, so that host work and compilation
    overlap the computation instead of waiting for it (JAX dispatches asynchronously). Each
    batch is padded to batch_rows rows (a power of two up to `batch_size`, rounded up to the
    mesh's data-parallel size); pass batches from plan_batches so that none pads rows."""
    from petool_jax.tokenizer import end_token_ids

    if stop_ids is None:
        stop_ids = (end_token_ids(bundle.tokenizer, bundle.config, (bundle.path, bundle.base_path))
                    if bundle.tokenizer else bundle.config.eos_token_ids)
    greedy = temperature <= 0.0
    mesh = bundle.mesh
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    jitted = jitted_generation(bundle.config, bundle.options, max_new_tokens, greedy, dp)
    pad_id = bundle.config.pad_token_id or 0
    stop = jnp.asarray(np.asarray(stop_ids or (-2,), np.int32))
    key = jax.random.key(seed)

    def launch(prompts: list[list[int]], key):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("empty prompt" if prompts else "empty batch")
        tokens, last, start, active = pack_batch(prompts, batch_rows(len(prompts), batch_size, dp), pad_id)
        rows_1d = batch_sharding(mesh, 1)
        with mesh_rules(mesh):
            cache = jitted.prefill(bundle.params, jax.device_put(tokens, batch_sharding(mesh, 2)),
                                   jax.device_put(start, rows_1d))
            out, _ = jitted.decode(bundle.params, cache, jax.device_put(last, rows_1d), jnp.int32(tokens.shape[1]),
                                   jax.device_put(active, rows_1d), jax.device_put(stop, replicated(mesh)), key,
                                   jnp.float32(max(temperature, 1e-6)), jnp.float32(top_p))
        return len(prompts), out

    def collect(launched) -> list[list[int]]:
        n, out = launched
        results = []
        for row in np.asarray(out)[:n].tolist():
            ids = []
            for t in row:
                if t < 0 or t in stop_ids:
                    break
                ids.append(t)
            results.append(ids)
        return results

    pending = None
    for prompts in batches:
        key, sub = jax.random.split(key)
        launched = launch(prompts, sub)
        if pending is not None:
            yield collect(pending)
        pending = launched
    if pending is not None:
        yield collect(pending)


def generate_batch(bundle: ModelBundle, prompts: list[list[int]], max_new_tokens: int = 256,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                   progress: bool = True, stop_ids: tuple[int, ...] | None = None) -> list[list[int]]:
    """Generated ids per prompt (end token excluded), in input order.

    Prompts are sorted by length and grouped by plan_batches, so each batch pads little,
    then run by generate_batches."""
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt")
    groups = plan_batches([len(p) for p in prompts], batch_size)
    results: list[list[int] | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress)
    generated = generate_batches(bundle, ([prompts[i] for i in idx] for idx in groups),
                                 max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                 batch_size=batch_size, stop_ids=stop_ids)
    for idx, ids in zip(groups, generated):
        for i, one in zip(idx, ids):
            results[i] = one
        bar.update(len(idx))
    bar.close()
    return results
