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
