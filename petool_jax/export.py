"""petool model directory -> HF directory that transformers loads as LlamaForCausalLM:
sharded safetensors (<= 5 GB a shard, with index), config.json, generation_config.json,
tokenizer files and chat template."""

from __future__ import annotations

import json
import pathlib

import numpy as np
from tqdm import tqdm

from petool_jax import hf_keys, lora_adapter, run_checkpoint
from petool_jax.checkpoint import (atomic_output_dir, copy_tokenizer_files, load_params,
                                   read_model_config)
from petool_jax.errors import UserError
from petool_jax.safetensors_io import write_file

DEFAULT_MAX_SHARD_BYTES = 5 * 10**9


def _shards(specs, max_bytes: int) -> list[list]:
    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * np.dtype(spec[2]).itemsize
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def hf_tensor_source(config, params):
    """(specs [(hf name, shape, dtype)], produce(name) -> array in HF layout)."""
    lookup = {}
    for path in hf_keys.petool_paths(config):
        node = params
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise UserError(f"checkpoint lacks parameter {'/'.join(path)}")
            node = node[key]
        lookup[path] = node
    specs, where = [], {}
    for name in hf_keys.expected_hf_keys(config):
        path, layer, transposed = hf_keys.match_hf_key(name)
        array = lookup[path]
        specs.append((name, hf_keys.hf_shape(config, path), np.asarray(array).dtype))
        where[name] = (path, layer, transposed)

    def produce(name):
        path, layer, transposed = where[name]
        array = np.asarray(lookup[path])
        if layer is not None:
            array = array[layer]
        return np.ascontiguousarray(array.T if transposed else array)

    return specs, produce


def write_hf_weights(out: pathlib.Path, config, params, max_shard_bytes: int, progress: bool = True) -> int:
    """Write model.safetensors or model-XXXXX-of-YYYYY.safetensors + index; returns bytes."""
    specs, produce = hf_tensor_source(config, params)
    shards = _shards(specs, max_shard_bytes)
    weight_map, total = {}, 0
    bar = tqdm(total=len(specs), desc="export", unit="tensor", disable=not progress)
    for i, shard in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"

        def produce_and_count(tensor_name):
            bar.update(1)
            return produce(tensor_name)

        write_file(out / name, shard, produce_and_count, metadata={"format": "pt"})
        for tensor_name, shape, dtype in shard:
            weight_map[tensor_name] = name
            total += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    bar.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return total


def generation_config(config) -> dict:
    eos = list(config.eos_token_ids)
    return {"bos_token_id": config.bos_token_id, "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "do_sample": False, "pad_token_id": config.pad_token_id}


def export_to_hf(ckpt_dir: str | pathlib.Path, out_dir: str | pathlib.Path, overwrite: bool = False,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, progress: bool = True,
                 merge_lora: bool = False, peft: bool = False) -> dict:
    """Full HF model (a LoRA adapter directory needs --merge-lora), or with `peft` only the
    adapter in PEFT's format (adapter_model.safetensors + adapter_config.json)."""
    ckpt_dir = pathlib.Path(ckpt_dir)
    files_dir = ckpt_dir
    if run_checkpoint.is_training_checkpoint(ckpt_dir):  # RUN_DIR/checkpoints/N
        info = run_checkpoint.describe(ckpt_dir)
        config, marker = run_checkpoint.model_config(info), run_checkpoint.model_marker(info)
        params, files_dir = run_checkpoint.trainable_params(info), pathlib.Path(info.files_dir)
    else:
        config = read_model_config(ckpt_dir)
        marker = json.loads((ckpt_dir / "petool_model.json").read_text())
        params = load_params(ckpt_dir)
    is_adapter = "base_model" in marker
    if (merge_lora or peft) and not is_adapter:
        raise UserError(f"{ckpt_dir}: --merge-lora/--peft need a LoRA adapter directory (a LoRA run's model/)")
    if is_adapter and not (merge_lora or peft):
        raise UserError(f"{ckpt_dir}: holds a LoRA adapter; export it with --merge-lora or --peft")
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        if peft:
            total = lora_adapter.write_peft_adapter(tmp, config, params, marker)
        else:
            dtype = marker.get("param_dtype", "bfloat16")
            if is_adapter:
                base, dtype = lora_adapter.load_base_host_params(marker["base_model"])
                params = lora_adapter.merge_into_base(base, params, marker["lora"])
            total = write_hf_weights(tmp, config, params, max_shard_bytes, progress)
            (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(dtype), indent=2) + "\n")
        copy_tokenizer_files(files_dir, tmp)
        if not peft and not (tmp / "generation_config.json").is_file():
            (tmp / "generation_config.json").write_text(json.dumps(generation_config(config), indent=2) + "\n")
    return {"bytes": total}
