"""attention: blockwise equals xla (forward and gradients, float32, within 1e-5) for every
mask kind, grouped-query heads and lengths that are not a multiple of the block; it never
builds a [B, T, T] array; its compiled SFT step needs far less XLA temporary memory."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petool_jax import attention_blockwise as AB
from petool_jax.attention import attend, cache_spec, causal_spec, prefix_shared_spec
from petool_jax.attention_blockwise import blockwise_attend
from petool_jax.config import RuntimeOptions, load_model_config
from petool_jax.model import Llama

TOL = 1e-5


def qkv(batch, q_len, heads, kv_heads, head_dim=16, kv_len=None, seed=0):
    rng = np.random.default_rng(seed)
    kv_len = kv_len or q_len
    q = jnp.asarray(rng.standard_normal((batch, q_len, heads, head_dim)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((batch, kv_len, kv_heads, head_dim)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((batch, kv_len, kv_heads, head_dim)), jnp.float32)
    return q, k, v


def packed_segments(batch, length):
    """Row 0: three packed examples then right padding; row 1: one example, padding."""
    seg = np.ones((batch, length), np.int32)
    seg[0, length // 4:length // 2] = 2
    seg[0, length // 2:length - 5] = 3
    seg[0, length - 5:] = 0
    seg[1, length - 9:] = 0
    return jnp.asarray(seg)


def dpo_ids(batch, length):
    """One pair per row: prompt (branch 0) | chosen (1) | rejected (2), then padding."""
    pair = np.ones((batch, length), np.int32)
    branch = np.zeros((batch, length), np.int32)
    branch[:, length // 2:3 * length // 4] = 1
    branch[:, 3 * length // 4:length - 3] = 2
    pair[:, length - 3:] = 0
    return jnp.asarray(pair), jnp.asarray(branch)


def specs(batch, length):
    seg = packed_segments(batch, length)
    pair, branch = dpo_ids(batch, length)
    return {"causal": causal_spec(), "packed": causal_spec(seg), "dpo_prefix": prefix_shared_spec(pair, branch)}


def compare(q, k, v, spec, block_q, block_k):
    """Max |blockwise - xla| of the outputs and of the gradients of a weighted sum, over the
    rows that see at least one key (rows seeing none are padding; see attention_blockwise)."""
    batch, q_len, kv_len = q.shape[0], q.shape[1], k.shape[1]
    dense = spec.dense(batch, q_len, kv_len)
    seen = np.asarray(dense).any(-1)
    w = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32) * seen[:, :, None, None]
    xla = lambda q, k, v: jnp.sum(attend(q, k, v, dense) * w)  # noqa: E731
    blk = lambda q, k, v: jnp.sum(blockwise_attend(q, k, v, spec, block_q, block_k) * w)  # noqa: E731
    out_diff = float(jnp.max(jnp.abs((attend(q, k, v, dense) - blockwise_attend(q, k, v, spec, block_q, block_k))[seen])))
    gx = jax.grad(xla, (0, 1, 2))(q, k, v)
    gb = jax.jit(jax.grad(blk, (0, 1, 2)))(q, k, v)
    return out_diff, [float(jnp.max(jnp.abs(a - b))) for a, b in zip(gx, gb)]


@pytest.mark.parametrize("kind,heads,kv_heads,length,block_q,block_k", [
    ("causal", 4, 2, 37, 8, 16),  # GQA, odd length, rectangular blocks
    ("packed", 6, 1, 50, 16, 16),  # MQA, 50 = 3 blocks + 2
    ("dpo_prefix", 4, 4, 64, 16, 32),  # exact multiple
    ("packed", 4, 2, 50, 64, 64),  # one block (shorter than the block size)
])
def test_blockwise_equals_xla(kind, heads, kv_heads, length, block_q, block_k):
    q, k, v = qkv(2, length, heads, kv_heads)
    out_diff, grad_diffs = compare(q, k, v, specs(2, length)[kind], block_q, block_k)
    assert out_diff < TOL
    assert max(grad_diffs) < TOL, grad_diffs
    assert out_diff > 0 or length <= block_q  # really a different computation from xla's


@pytest.mark.parametrize("offset,q_len", [(0, 40), (47, 1)])
def test_blockwise_kv_cache_equals_xla(offset, q_len):
    """Prefill / decode into a left-padded cache: offset = the cache slot of query 0."""
    cache_len = 48 + 13
    q, k, v = qkv(3, q_len, 4, 2, kv_len=cache_len)
    spec = cache_spec(jnp.asarray([5, 0, 20]), offset)
    dense = spec.dense(3, q_len, cache_len)
    seen = np.asarray(dense).any(-1)
    want = attend(q, k, v, dense)
    run = jax.jit(lambda q, k, v, o: blockwise_attend(q, k, v, cache_spec(jnp.asarray([5, 0, 20]), o), 8, 16))
    got = run(q, k, v, jnp.int32(offset))  # a traced offset, as in decoding
    assert float(jnp.max(jnp.abs((want - got)[seen]))) < TOL
    assert np.all(np.asarray(got)[~seen] == 0)  # rows that see nothing: 0, never NaN


def test_key_blocks_above_the_diagonal_are_skipped():
    plan = AB.Plan(bq=16, bk=16, nq=4, nk=4, kv_len=64, scale=1.0, has_segments=False, has_branches=False,
                   has_start=True)
    meta = {"offset": jnp.int32(0), "start": jnp.asarray([40, 20])}
    # query block 3 sees key blocks 1..3 (block 0 lies before every row's start)
    assert [int(x) for x in AB.key_block_range(plan, meta, 3)] == [1, 4]
    assert [int(x) for x in AB.key_block_range(plan, meta, 0)] == [1, 1]  # nothing to do
    assert int(AB.query_block_range(plan, meta, 2)) == 2
    assert int(AB.query_block_range(plan, meta, 0)) == 4  # key block 0: nobody sees it


def all_shapes(jaxpr):
    """Every intermediate's shape in a jaxpr, sub-jaxprs (loops, custom VJP) included."""
    shapes = []
    for eqn in jaxpr.eqns:
        shapes += [tuple(var.aval.shape) for var in eqn.outvars if hasattr(var.aval, "shape")]
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                shapes += all_shapes(inner)
    return shapes


def test_no_t_by_t_array_forward_or_backward():
    length, block = 96, 16
    q, k, v = qkv(2, length, 4, 2)
    spec = specs(2, length)["dpo_prefix"]
    loss = lambda q, k, v: jnp.sum(blockwise_attend(q, k, v, spec, block, block) ** 2)  # noqa: E731
    jaxpr = jax.make_jaxpr(jax.grad(loss, (0, 1, 2)))(q, k, v).jaxpr
    shapes = all_shapes(jaxpr)
    assert any(s[-2:] == (2 * block, block) for s in shapes)  # per-block scores [B, K, G*bq, bk]
    assert not [s for s in shapes if s.count(length) >= 2], "a T x T array was built"
    xla_shapes = all_shapes(jax.make_jaxpr(jax.grad(
        lambda q, k, v: jnp.sum(attend(q, k, v, spec.dense(2, length, length)) ** 2)))(q, k, v).jaxpr)
    assert [s for s in xla_shapes if s.count(length) >= 2]  # the check would see one


# --- the model ---------------------------------------------------------------------------------


def tiny_model(attention, **overrides):
    config = dataclasses.replace(load_model_config("tiny"), **overrides)
    return config, Llama(config, RuntimeOptions(attention=attention))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 so a short test sequence spans several (the default is 512)."""
    monkeypatch.setattr(AB, "BLOCK_Q", 16)
    monkeypatch.setattr(AB, "BLOCK_K", 16)


def test_model_sft_loss_and_gradients_equal_xla(small_blocks):
    """Packed rows (segments), GQA (the tiny preset), a length of 53: logits at real tokens
    and the gradient of a masked loss w.r.t. every parameter."""
    config, blockwise = tiny_model("blockwise")
    assert config.num_attention_heads != config.num_key_value_heads
    _, xla = tiny_model("xla")
    length = 53
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 500, (2, length)), jnp.int32)
    seg = packed_segments(2, length)
    params = xla.init(jax.random.PRNGKey(0), tokens)["params"]
    real = np.asarray(seg) > 0

    def loss(model, params):
        logits, _ = model.apply({"params": params}, tokens, segment_ids_BxT=seg)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
        return -jnp.sum(logp[..., 7] * real), logits

    (lx, logits_x), gx = jax.value_and_grad(lambda p: loss(xla, p), has_aux=True)(params)
    (lb, logits_b), gb = jax.jit(jax.value_and_grad(lambda p: loss(blockwise, p), has_aux=True))(params)
    assert float(jnp.max(jnp.abs((logits_x - logits_b)[real]))) < TOL
    assert abs(float(lx - lb)) < TOL * abs(float(lx))
    worst = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(gx), jax.tree.leaves(gb)))
    assert worst < TOL


@pytest.mark.slow  # ~25-35 s; the prefix mask is covered per kernel above
def test_model_dpo_pair_logps_and_gradients_equal_xla(small_blocks):
    from petool_jax.train.dpo import pair_logps
    from petool_jax.train.dpo_data import PairBatcher

    rng = np.random.default_rng(1)
    batcher = PairBatcher([rng.integers(1, 500, 40).tolist(), rng.integers(1, 500, 23).tolist()],
                          [[5, 6, 7], [9, 9]], [[8, 9], [4, 4, 4, 4]], batch_size=2, micro_batch_size=2,
                          max_seq_len=64, seed=0, packing=True, pairs_per_row=2)
    mb = {k: jnp.asarray(v[0]) for k, v in batcher.batch(0).items() if isinstance(v, np.ndarray)}
    _, xla = tiny_model("xla")
    _, blockwise = tiny_model("blockwise")
    params = xla.init(jax.random.PRNGKey(0), mb["tokens"])["params"]

    def total(model, params):
        chosen, rejected = pair_logps(model, params, mb)
        return jnp.sum(chosen - 0.5 * rejected), (chosen, rejected)

    (_, (cx, rx)), gx = jax.value_and_grad(lambda p: total(xla, p), has_aux=True)(params)
    (_, (cb, rb)), gb = jax.jit(jax.value_and_grad(lambda p: total(blockwise, p), has_aux=True))(params)
    np.testing.assert_allclose(np.asarray(cb), np.asarray(cx), atol=TOL, rtol=TOL)
    np.testing.assert_allclose(np.asarray(rb), np.asarray(rx), atol=TOL, rtol=TOL)
    worst = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(gx), jax.tree.leaves(gb)))
    assert worst < TOL


@pytest.mark.slow  # ~25 s; the cache mask is covered per kernel above
def test_model_prefill_with_cache_spec_equals_dense_mask(small_blocks):
    """The prefill API for generation: pass attention.cache_spec instead of cache_mask."""
    from petool_jax.attention import cache_mask
    from petool_jax.model import init_cache

    config, blockwise = tiny_model("blockwise")
    _, xla = tiny_model("xla")
    tokens = jnp.asarray(np.random.default_rng(2).integers(1, 500, (2, 40)), jnp.int32)
    params = xla.init(jax.random.PRNGKey(0), tokens)["params"]
    start = jnp.asarray([6, 0])
    positions = jnp.maximum(jnp.arange(40)[None, :] - start[:, None], 0)
    cache = init_cache(config, 2, 48, jnp.float32)
    _, dense_cache = xla.apply({"params": params}, tokens, positions, cache_mask(start, 0, 40, 48),
                               cache=cache, cache_index=0)
    _, spec_cache = blockwise.apply({"params": params}, tokens, positions, cache_spec(start, 0),
                                    cache=cache, cache_index=0)
    for name in ("k", "v"):
        # keys/values at real slots (>= start) depend only on real tokens
        for row, s in enumerate([6, 0]):
            np.testing.assert_allclose(np.asarray(spec_cache[name])[:, row, s:40],
                                       np.asarray(dense_cache[name])[:, row, s:40], atol=TOL, rtol=0)


# --- memory: the compiled SFT step -------------------------------------------------------------


def sft_temp_bytes(attention: str, seq: int) -> int:
    """XLA temporaries of petool's compiled SFT step (remat=full, the training default;
    logits only at the loss positions) on a one-layer model whose MLP is small, so that
    attention is most of what grows with T. Compiled, never run."""
    from bench.train import build_petool_sft, small_config

    config = small_config(vocab_size=512, num_hidden_layers=1, intermediate_size=256)
    sft = build_petool_sft(config, micro=1, seq=seq, remat="full", attention=attention, gather=True)
    return sft.memory["temp_size_in_bytes"]


def test_sft_step_temporaries_at_8192_tokens():
    """Measured: xla 3,216 MiB, blockwise 164 MiB (19.7x)."""
    xla, blockwise = sft_temp_bytes("xla", 8192), sft_temp_bytes("blockwise", 8192)
    # xla holds [4 heads, T, T] float32 scores (1 GiB) several times over
    assert xla > 2 * 2 ** 30
    assert xla >= 4 * blockwise, (xla, blockwise)


@pytest.mark.slow
def test_sft_step_temporaries_at_2048_tokens():
    """Measured: xla 231 MiB, blockwise 44 MiB (5.3x; the 512-token blocks are a quarter of T)."""
    xla, blockwise = sft_temp_bytes("xla", 2048), sft_temp_bytes("blockwise", 2048)
    assert xla >= 4 * blockwise, (xla, blockwise)
