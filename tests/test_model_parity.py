"""Whole-model logits parity with transformers (torch, CPU, fp32)."""

import numpy as np
import pytest
import torch

from hf_fixtures import VARIANTS, make_hf_model
from petool_jax.loading import load_model

# 200 tokens: longer than the 64-token original_max_position_embeddings of the scaled
# variants, so the llama3 frequency scaling is exercised where it matters.
PROMPT_LEN = 200


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_transformers(tmp_path, variant):
    hf_model = make_hf_model(tmp_path, variant)
    tokens = np.random.RandomState(1).randint(0, 500, size=(2, PROMPT_LEN))
    with torch.no_grad():
        ref = hf_model(torch.tensor(tokens)).logits.numpy()
    bundle = load_model(tmp_path, dtype="float32", with_tokenizer=False)
    logits, _ = bundle.model.apply({"params": bundle.params}, tokens)
    np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 1.0  # logits are not all ~0 (the comparison means something)


def test_config_fields_reach_the_model(tmp_path):
    """Changing rope_theta or rms_norm_eps in config.json changes the logits."""
    import json

    make_hf_model(tmp_path, "gqa")
    tokens = np.arange(40)[None, :] % 500
    base = load_model(tmp_path, with_tokenizer=False)
    ref = np.asarray(base.model.apply({"params": base.params}, tokens)[0])
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in (("rope_theta", 500.0), ("rms_norm_eps", 0.5)):
        changed = json.loads(json.dumps(config))
        if key == "rope_theta" and "rope_parameters" in changed:  # transformers >= 5 layout
            changed["rope_parameters"]["rope_theta"] = value
        else:
            changed[key] = value
        (tmp_path / "config.json").write_text(json.dumps(changed))
        other = load_model(tmp_path, with_tokenizer=False)
        out = np.asarray(other.model.apply({"params": other.params}, tokens)[0])
        assert np.abs(out - ref).max() > 1e-3, key
    (tmp_path / "config.json").write_text(json.dumps(config))


def test_remat_policies_and_bf16(tmp_path):
    """Every remat policy gives the same loss and gradients; bf16 compute stays close."""
    import dataclasses

    import jax

    make_hf_model(tmp_path, "llama3.1")
    tokens = np.random.RandomState(2).randint(0, 500, size=(2, 48))
    base = load_model(tmp_path, with_tokenizer=False)

    def loss_and_grads(bundle):
        def loss(params):
            logits, _ = bundle.model.apply({"params": params}, tokens[:, :-1])
            logp = jax.nn.log_softmax(logits.astype(np.float32))
            return -np.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()
        return jax.jit(jax.value_and_grad(loss))(bundle.params)

    ref_loss, ref_grads = loss_and_grads(base)
    for policy in ("full", "dots", "dots_no_batch"):
        bundle = dataclasses.replace(base, model=base.model.clone(options=dataclasses.replace(base.options, remat=policy)))
        loss, grads = loss_and_grads(bundle)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(a, b, atol=1e-6)
    bf16 = load_model(tmp_path, dtype="bfloat16", with_tokenizer=False)
    assert bf16.params["layers"]["attn"]["q_proj"]["kernel"].dtype == jnp_bf16()
    bf16_loss, _ = loss_and_grads(bf16)
    assert abs(float(bf16_loss) - float(ref_loss)) < 0.05 * float(ref_loss)


def jnp_bf16():
    import jax.numpy as jnp

    return jnp.bfloat16
