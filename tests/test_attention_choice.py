"""attention: auto picks the kernel per backend, key length and mask kind (a pure function);
explicit kernels that would drop a mask are refused; the model follows the choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petool_jax import attention_choice
from petool_jax.attention import require_mask_kernel
from petool_jax.attention_choice import BLOCKWISE_MIN_LENGTH, check_kernel, resolve_attention
from petool_jax.config import RuntimeOptions, load_model_config
from petool_jax.errors import UserError
from petool_jax.model import Llama

LONG, SHORT = BLOCKWISE_MIN_LENGTH, BLOCKWISE_MIN_LENGTH - 1


@pytest.mark.parametrize("backend,kv_len,kind,want", [
    # GPU: cuDNN where it applies (plain causal), else by length
    ("gpu", 512, "causal", "cudnn"), ("gpu", 16384, "causal", "cudnn"),
    ("gpu", SHORT, "segments", "xla"), ("gpu", LONG, "segments", "blockwise"),
    ("gpu", LONG, "prefix", "blockwise"), ("gpu", LONG, "cache", "blockwise"), ("gpu", 64, "cache", "xla"),
    # TPU: splash for causal and packed segments, else by length
    ("tpu", 128, "causal", "splash"), ("tpu", 8192, "segments", "splash"),
    ("tpu", SHORT, "prefix", "xla"), ("tpu", LONG, "prefix", "blockwise"), ("tpu", LONG, "cache", "blockwise"),
    # CPU: by length for every kind
    ("cpu", SHORT, "causal", "xla"), ("cpu", LONG, "causal", "blockwise"), ("cpu", 16384, "segments", "blockwise"),
    ("cpu", SHORT, "prefix", "xla"), ("cpu", 4096, "prefix", "blockwise"), ("cpu", LONG, "cache", "blockwise"),
    # an explicit dense [B, T, S] mask always runs xla
    ("cpu", 16384, "dense", "xla"), ("gpu", 16384, "dense", "xla"), ("tpu", 128, "dense", "xla"),
])
def test_auto_resolution(backend, kv_len, kind, want):
    assert resolve_attention("auto", backend, kv_len, kind) == want


def test_threshold_is_the_measured_crossover():
    assert BLOCKWISE_MIN_LENGTH == 1024  # bench/results/scaling_attention*.json, BENCHMARKS.md


@pytest.mark.parametrize("requested,backend,kind,want", [
    ("xla", "cpu", "segments", "xla"), ("blockwise", "cpu", "causal", "blockwise"),
    ("blockwise", "gpu", "prefix", "blockwise"), ("cudnn", "gpu", "causal", "cudnn"),
    ("splash", "tpu", "segments", "splash"),
    # a cached call (prefill) with a training-only kernel configured takes the auto choice
    ("cudnn", "gpu", "cache", "blockwise"), ("splash", "tpu", "cache", "blockwise"),
])
def test_explicit_requests(requested, backend, kind, want):
    assert resolve_attention(requested, backend, 8192, kind) == want


@pytest.mark.parametrize("requested,kind", [("cudnn", "prefix"), ("splash", "prefix"), ("cudnn", "dense"),
                                            ("splash", "dense")])
def test_a_kernel_that_would_drop_the_mask_is_refused(requested, kind):
    with pytest.raises(ValueError, match=f"attention={requested} ignores an explicit mask; use attention=xla"):
        check_kernel(requested, kind)


@pytest.mark.parametrize("requested,kind", [("auto", "prefix"), ("cudnn", "segments"), ("splash", "segments"),
                                            ("blockwise", "dense"), ("splash", "cache")])
def test_kernels_that_apply_the_mask_are_accepted(requested, kind):
    check_kernel(requested, kind)


def test_dpo_refuses_splash_and_accepts_auto():
    with pytest.raises(UserError, match="attention=splash applies only causal and packed-segment masks"):
        require_mask_kernel("splash", "DPO (prefix-shared pairs)")
    for ok in ("auto", "xla", "blockwise"):
        require_mask_kernel(ok, "DPO (prefix-shared pairs)")


def test_auto_is_the_default_and_names_are_checked():
    from petool_jax.train.config import DEFAULTS

    assert RuntimeOptions().attention == "auto" and DEFAULTS["attention"] == "auto"
    with pytest.raises(UserError, match=r"attention 'flash' is not one of \('auto', 'xla', 'blockwise', 'cudnn', "
                                        r"'splash'\)"):
        RuntimeOptions(attention="flash")


def test_model_follows_auto_by_length(monkeypatch):
    """On the CPU, auto runs blockwise from the threshold on and xla below it (threshold
    lowered to 32 so the check runs on a tiny model)."""
    import petool_jax.model as model_module

    calls = []
    real = model_module.blockwise_attend
    monkeypatch.setattr(model_module, "blockwise_attend", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    monkeypatch.setattr(attention_choice, "BLOCKWISE_MIN_LENGTH", 32)
    config = load_model_config("tiny")
    model = Llama(config)
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 500, (1, 40)), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), tokens[:, :8])["params"]
    short, _ = model.apply({"params": params}, tokens[:, :31])
    assert calls == []
    long, _ = model.apply({"params": params}, tokens)
    assert calls and calls[0][1] == 40
    # the first 31 positions are causal prefixes: both kernels must agree on them
    np.testing.assert_allclose(np.asarray(long[:, :31]), np.asarray(short), atol=1e-5, rtol=0)
