"""Randomly initialised HF-format LLaMA checkpoints (for tests, benchmarks and a first
`petool generate` on a fresh machine), written without torch."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np

from petool_jax.checkpoint import atomic_output_dir, copy_tokenizer_files
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.export import DEFAULT_MAX_SHARD_BYTES, generation_config, write_hf_weights
from petool_jax.loading import init_params
from petool_jax.sharding import make_mesh
from petool_jax.tokenizer import train_bpe_tokenizer

# A small text in the shapes the project deals with: plain instructions and JSON tool calls.
TOKENIZER_CORPUS = [
    "Your task is to use a tool that not only meets real-time user instructions but also aligns "
    "with user preferences. These preferences can be inferred from the user's interaction history.",
    '{"tool_name": "<Weather>.<Open Weather>.<Current Weather>", "parameters": {"city": "Paris", "units": "metric"}}',
    '{"instruction": "Find flights from Berlin to Rome on 2024-05-01.", "tool_call": {"tool_name": '
    '"<Travel>.<Skyscanner>.<Search Flights>", "parameters": {"from": "BER", "to": "FCO"}}, "rating": 1}',
    "Available tools you can call with input parameters are listed here: required_parameters, "
    "optional_parameters, tool_description, name, type, description, default, STRING, NUMBER, BOOLEAN.",
    "Generate only the tool call in JSON format without any additional outputs. Hello, how are you today? "
    "The quick brown fox jumps over the lazy dog. 0123456789 user assistant system",
]


def write_random_hf_model(config: LlamaConfig, out_dir: str | pathlib.Path, seed: int = 0,
                          dtype: str = "float32", tokenizer_dir: str | pathlib.Path | None = None,
                          max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, overwrite: bool = False,
                          progress: bool = True) -> LlamaConfig:
    """Write config.json, safetensors and a tokenizer. Without `tokenizer_dir` a byte-level
    BPE of at most config.vocab_size tokens is trained and its special ids go in the config."""
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        if tokenizer_dir is None:
            info = train_bpe_tokenizer(TOKENIZER_CORPUS * 20, min(config.vocab_size, 512), tmp)
            if info["vocab_size"] > config.vocab_size:
                raise ValueError(f"tokenizer has {info['vocab_size']} tokens > vocab_size {config.vocab_size}")
            config = dataclasses.replace(config, bos_token_id=info["bos_token_id"],
                                         eos_token_ids=tuple(info["eos_token_ids"]))
        else:
            copy_tokenizer_files(pathlib.Path(tokenizer_dir), tmp)
        options = RuntimeOptions(dtype=dtype, param_dtype=dtype)
        params = init_params(config, options, make_mesh(devices=jax.devices()[:1]), seed=seed)
        params = jax.tree.map(np.asarray, params)
        write_hf_weights(tmp, config, params, max_shard_bytes, progress=progress)
        (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(dtype), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(generation_config(config), indent=2) + "\n")
    return config
