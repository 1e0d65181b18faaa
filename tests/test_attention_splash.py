"""attention: splash (the TPU Pallas kernel) runs here in Pallas interpret mode: it equals
xla on real tokens (forward and gradients, float32), causal with packed segments and
grouped-query heads, and its shard_map wrapper splits rows and KV heads over the mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from petool_jax import attention_splash as S
from petool_jax.attention import attend, causal_spec, prefix_shared_spec
from petool_jax.sharding import make_mesh, mesh_rules

TOL = 1e-5


def inputs(batch, length, heads, kv_heads, head_dim=32, seed=0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((batch, length, kv_heads, head_dim)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((batch, length, kv_heads, head_dim)), jnp.float32)
    seg = np.ones((batch, length), np.int32)
    seg[0, length // 3:2 * length // 3] = 2  # row 0: two packed examples and right padding
    seg[0, length - 6:] = 0
    return q, k, v, jnp.asarray(seg)


def test_splash_equals_xla_forward_and_gradients():
    q, k, v, seg = inputs(1, 100, 4, 2)  # GQA; 100 tokens padded to one 128 block
    spec = causal_spec(seg)
    dense = spec.dense(1, 100, 100)
    real = np.asarray(seg) > 0
    w = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32) * real[:, :, None, None]
    want = attend(q, k, v, dense)
    got = S.splash_attend(q, k, v, spec)
    assert float(jnp.max(jnp.abs((want - got)[real]))) < TOL
    gx = jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v, dense) * w), (0, 1, 2))(q, k, v)
    gs = jax.grad(lambda q, k, v: jnp.sum(S.splash_attend(q, k, v, spec) * w), (0, 1, 2))(q, k, v)
    for a, b in zip(gx, gs):
        assert float(jnp.max(jnp.abs(a - b))) < TOL


def reference_local(q_BxKxGxTxH, k_BxKxTxH, v_BxKxTxH, segments_BxT, interpret, seen=None):
    """Stand-in for the kernel: the same mask (causal, same segment id), in plain jnp."""
    if seen is not None:
        seen.append((q_BxKxGxTxH.shape, segments_BxT.shape))
    length = segments_BxT.shape[1]
    mask = jnp.tril(jnp.ones((length, length), bool))[None] & (segments_BxT[:, :, None] == segments_BxT[:, None, :])
    scores = jnp.einsum("bkgth,bksh->bkgts", q_BxKxGxTxH, k_BxKxTxH)
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    return jnp.einsum("bkgts,bksh->bkgth", jax.nn.softmax(scores, -1), v_BxKxTxH)


def test_shard_map_wrapper_splits_rows_and_kv_heads():
    """data 2 x fsdp 2 x tensor 2: each device computes 1 of 4 rows and 1 of 2 KV heads."""
    mesh = make_mesh(2, 2, 2)
    q, k, v, seg = inputs(4, 40, 4, 2)
    spec = causal_spec(seg)
    real = np.asarray(seg) > 0
    seen = []
    local = lambda *a, interpret: reference_local(*a, interpret, seen=seen)  # noqa: E731
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    with mesh_rules(mesh):
        placed = [jax.device_put(x, rows) for x in (q, k, v, seg)]
        got = jax.jit(lambda q, k, v, s: S.splash_attend(q, k, v, causal_spec(s), local=local))(*placed)
    assert seen == [((1, 1, 2, 128, 32), (1, 128))]  # local rows, local KV head, padded length
    want = attend(q, k, v, spec.dense(4, 40, 40))
    assert float(jnp.max(jnp.abs((np.asarray(got) - want)[real]))) < TOL


@pytest.mark.slow  # ~15 s; the wrapper's sharding is checked with a stand-in above
def test_the_real_kernel_under_a_mesh():
    mesh = make_mesh(1, 2, 2, devices=jax.devices()[:4])
    q, k, v, seg = inputs(2, 64, 4, 2, head_dim=16)
    spec = causal_spec(seg)
    real = np.asarray(seg) > 0
    with mesh_rules(mesh):
        got = jax.jit(lambda q, k, v, s: S.splash_attend(q, k, v, causal_spec(s)))(q, k, v, seg)
    want = attend(q, k, v, spec.dense(2, 64, 64))
    assert float(jnp.max(jnp.abs((np.asarray(got) - want)[real]))) < TOL


def test_splash_refuses_what_it_cannot_apply():
    q, k, v, seg = inputs(1, 16, 2, 1)
    with pytest.raises(ValueError, match="splash applies causal and segment masks only, not 'prefix'"):
        S.splash_attend(q, k, v, prefix_shared_spec(seg, jnp.zeros_like(seg)))
    assert [S.splash_block(n) for n in (128, 256, 384, 512, 1536)] == [128, 256, 128, 512, 512]


@pytest.mark.slow  # ~30-75 s: two layers through the interpreted kernel
def test_model_runs_splash():
    from petool_jax.config import RuntimeOptions, load_model_config
    from petool_jax.model import Llama

    config = load_model_config("tiny")
    tokens = jnp.asarray(np.random.default_rng(3).integers(1, 500, (1, 30)), jnp.int32)
    seg = jnp.asarray([[1] * 12 + [2] * 14 + [0] * 4], jnp.int32)
    xla = Llama(config, RuntimeOptions(attention="xla"))
    params = xla.init(jax.random.PRNGKey(0), tokens)["params"]
    want, _ = xla.apply({"params": params}, tokens, segment_ids_BxT=seg)
    got, _ = Llama(config, RuntimeOptions(attention="splash")).apply({"params": params}, tokens, segment_ids_BxT=seg)
    real = np.asarray(seg) > 0
    assert float(jnp.max(jnp.abs((want - got)[real]))) < TOL
