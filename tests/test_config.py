"""Model presets and the RoPE frequencies against transformers' own computation."""

import numpy as np
import pytest

from petool_jax.config import LlamaConfig, RuntimeOptions, load_model_config
from petool_jax.errors import UserError
from petool_jax.rope import inverse_frequencies

# Parameter counts of the released checkpoints.
PRESET_PARAMS = {"llama3-8b-instruct": 8_030_261_248, "llama3.1-8b-instruct": 8_030_261_248,
                 "llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824}


@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_preset_parameter_counts(name):
    assert load_model_config(name).num_params() == PRESET_PARAMS[name]


@pytest.mark.parametrize("name", ["llama3-8b-instruct", "llama3.1-8b-instruct", "llama3.2-1b"])
def test_inverse_frequencies_match_transformers(name):
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = load_model_config(name)
    hf_config = transformers.LlamaConfig(**config.to_hf_dict())
    rope_type = hf_config.rope_parameters["rope_type"]
    if rope_type == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        ref, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(hf_config)
    else:
        ref, _ = ROPE_INIT_FUNCTIONS[rope_type](hf_config, "cpu")
    np.testing.assert_allclose(inverse_frequencies(config), ref.numpy(), rtol=1e-6, atol=0)
    if config.rope_scaling:  # the scaling changed the low frequencies
        plain = inverse_frequencies(LlamaConfig(**{**config.__dict__, "rope_scaling": None}))
        assert (inverse_frequencies(config) < plain).sum() > 0


def test_hf_dict_round_trip():
    config = load_model_config("llama3.1-8b-instruct")
    assert LlamaConfig.from_hf_dict(config.to_hf_dict()) == config


def test_unknown_preset_and_bad_options():
    with pytest.raises(UserError, match="unknown model 'llama9'.*'tiny'"):
        load_model_config("llama9")
    with pytest.raises(UserError, match="remat policy 'some' is not one of"):
        RuntimeOptions(remat="some")
    with pytest.raises(UserError, match="missing keys \\['intermediate_size'\\]"):
        LlamaConfig.from_hf_dict({"model_type": "llama", "vocab_size": 8, "hidden_size": 8,
                                  "num_hidden_layers": 1, "num_attention_heads": 1})
