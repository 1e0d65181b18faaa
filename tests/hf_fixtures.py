"""Tiny random transformers LLaMA checkpoints (the numeric reference) and a tokenizer."""

from __future__ import annotations

import pathlib

from petool_jax.random_model import TOKENIZER_CORPUS
from petool_jax.tokenizer import train_bpe_tokenizer

VOCAB = 512
# name -> LlamaConfig overrides. initializer_range 0.1 spreads the logits so that greedy
# decoding has no near-ties that fp32 rounding could flip.
VARIANTS = {
    "llama3": dict(rope_theta=500000.0, tie_word_embeddings=False, num_key_value_heads=4),
    "llama3.1": dict(rope_theta=500000.0, tie_word_embeddings=False, num_key_value_heads=2,
                     rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "llama3.2": dict(rope_theta=500000.0, tie_word_embeddings=True, num_key_value_heads=2,
                     rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "gqa": dict(rope_theta=10000.0, tie_word_embeddings=False, num_key_value_heads=1, rms_norm_eps=1e-6),
}


def make_tokenizer(out_dir: pathlib.Path) -> dict:
    return train_bpe_tokenizer(TOKENIZER_CORPUS * 20, VOCAB, out_dir)


def make_hf_model(out_dir: pathlib.Path, variant: str = "llama3", dtype: str = "float32", seed: int = 0,
                  max_shard_size: str | None = None, num_layers: int = 2):
    """Save a random LlamaForCausalLM (+ tokenizer) to out_dir; return the torch model."""
    import torch
    import transformers

    out_dir = pathlib.Path(out_dir)
    info = make_tokenizer(out_dir)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
        num_attention_heads=4, head_dim=16, max_position_embeddings=1024, initializer_range=0.1,
        bos_token_id=info["bos_token_id"], eos_token_id=info["eos_token_ids"],
        **{"rms_norm_eps": 1e-5, **VARIANTS[variant]})
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    # Norm weights start at exactly 1; perturb them so a mixed-up norm cannot hide.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    model = model.to(getattr(torch, dtype))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out_dir, safe_serialization=True, **kwargs)
    return model
