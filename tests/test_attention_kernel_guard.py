"""The cuDNN kernel applies only the causal mask: what reaches jax.nn.dot_product_attention,
and that DPO (prefix-shared pairs, whose mask is more than causal) refuses that kernel
instead of computing silently wrong log-probs.

No GPU runs here: jax.nn.dot_product_attention is replaced by a recorder that runs the XLA
implementation, so the dispatch is checked on CPU. The GPU comparison at the bottom runs
only where a CUDA device is present."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petool_jax.attention import prefix_shared_mask
from petool_jax.app.cli import main as petool
from petool_jax.config import RuntimeOptions, load_model_config
from petool_jax.errors import UserError
from petool_jax.model import Llama


@pytest.fixture
def recorded(monkeypatch):
    """Every call of jax.nn.dot_product_attention, answered by the XLA implementation."""
    calls = []
    original = jax.nn.dot_product_attention

    def recorder(query, key, value, bias=None, mask=None, **kwargs):
        calls.append({"bias": bias, "mask": mask, **kwargs})
        kwargs["implementation"] = "xla"
        return original(query, key, value, bias, mask, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", recorder)
    return calls


def tiny(attention):
    config = load_model_config("tiny")
    model = Llama(config, RuntimeOptions(attention=attention))
    tokens = jnp.asarray(np.random.RandomState(0).randint(1, 500, (2, 24)), jnp.int32)
    params = Llama(config, RuntimeOptions()).init(jax.random.PRNGKey(0), tokens)["params"]
    return model, params, tokens


def test_causal_training_reaches_cudnn_as_causal_and_equals_xla(recorded):
    model, params, tokens = tiny("cudnn")
    # Unpacked SFT rows: one segment, right padding (segment 0) at the end of row 1.
    segments = np.ones((2, 24), np.int32)
    segments[1, 17:] = 0
    logits, _ = model.apply({"params": params}, tokens, segment_ids_BxT=jnp.asarray(segments))
    xla, _ = Llama(model.config, RuntimeOptions()).apply({"params": params}, tokens,
                                                          segment_ids_BxT=jnp.asarray(segments))
    assert recorded  # the layer scan traces the kernel call once
    for call in recorded:
        assert call["implementation"] == "cudnn" and call["is_causal"] is True
        assert call["mask"] is None and call["bias"] is None  # the kernel gets no other mask
    real = segments > 0  # padding positions differ by design; real tokens must not
    np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(xla)[real], atol=1e-5, rtol=0)


def test_an_explicit_mask_never_reaches_the_causal_only_kernel(recorded):
    model, params, tokens = tiny("cudnn")
    pair_ids = jnp.ones((2, 24), jnp.int32)
    branch_ids = jnp.asarray(np.repeat([[0] * 12 + [1] * 6 + [2] * 6], 2, axis=0), jnp.int32)
    with pytest.raises(ValueError, match="attention=cudnn ignores an explicit mask; use attention=xla"):
        model.apply({"params": params}, tokens, mask_BxTxS=prefix_shared_mask(pair_ids, branch_ids))
    assert recorded == []


def test_dpo_pair_logps_refuse_cudnn(recorded):
    from petool_jax.train.dpo import pair_logps
    from petool_jax.train.dpo_data import PairBatcher

    model, params, _ = tiny("cudnn")
    rng = np.random.RandomState(1)
    batcher = PairBatcher([rng.randint(1, 500, 20).tolist()], [[5, 6, 7]], [[8, 9]], batch_size=1,
                          micro_batch_size=1, max_seq_len=64, seed=0, packing=False, pairs_per_row=1)
    mb = {k: v[0] for k, v in batcher.batch(0).items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match="use attention=xla"):
        pair_logps(model, params, mb)
    assert recorded == []


def test_dpo_with_cudnn_is_refused_before_loading_anything(tmp_path, capsys):
    from petool_jax.train.config import load_train_config
    from petool_jax.train.dpo import check_attention

    missing = tmp_path / "no-such-model"  # the check must come before the model is read
    args = ["train", "dpo", f"model={missing}", f"data.train={tmp_path / 'none.json'}",
            f"output_dir={tmp_path / 'out'}", "attention=cudnn"]
    assert petool(args) == 2
    err = capsys.readouterr().err
    assert "DPO (prefix-shared pairs) needs its attention mask" in err and "use attention=xla" in err
    assert "no-such-model" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="attention=cudnn applies only the causal mask"):
        check_attention(load_train_config(None, args[2:]))
    check_attention(load_train_config(None, args[2:-1] + ["attention=xla"]))  # xla keeps the mask: accepted


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a CUDA device for cuDNN")
def test_cudnn_causal_equals_xla_in_bfloat16_on_gpu():
    """The one path that still takes cuDNN (causal, unpacked SFT); DPO never reaches it.
    Skipped on CPU: it has not been run in a session without a GPU."""
    config = load_model_config("tiny")
    tokens = jnp.asarray(np.random.RandomState(0).randint(1, 500, (2, 128)), jnp.int32)
    params = Llama(config, RuntimeOptions()).init(jax.random.PRNGKey(0), tokens)["params"]
    out = {}
    for impl in ("xla", "cudnn"):
        model = Llama(config, RuntimeOptions(attention=impl, dtype="bfloat16"))
        out[impl] = np.asarray(jax.nn.log_softmax(model.apply({"params": params}, tokens)[0].astype(jnp.float32)))
    np.testing.assert_allclose(out["cudnn"], out["xla"], atol=1e-3 * np.abs(out["xla"]).max(), rtol=0)
