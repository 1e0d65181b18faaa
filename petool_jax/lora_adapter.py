"""LoRA adapters on export: merged into the base weights, or written in PEFT's format.

petool stores an adapted linear as lora_a [in, r] and lora_b [r, out] beside the kernel
[in, out]: y = x W + scale * x A B with scale = alpha / r. PEFT stores lora_A.weight [r, in]
and lora_B.weight [out, r] (torch layout): the transposes of A and B.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from petool_jax import hf_keys
from petool_jax.checkpoint import is_petool_model, load_params
from petool_jax.safetensors_io import write_file

# petool module name -> PEFT target module name
TARGETS = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "o_proj",
           "gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj"}


def load_base_host_params(base_path: str):
    """(numpy params, dtype name) of the adapter's base model (HF or petool directory)."""
    from petool_jax.convert import read_hf_params

    if is_petool_model(base_path):
        params = load_params(base_path)
    else:
        _, params, _ = read_hf_params(base_path, progress=False)
    dtype = params["embed"]["embedding"].dtype.name
    return params, dtype


def merge_into_base(base: dict, adapter: dict, lora: dict) -> dict:
    """kernel + (alpha / rank) * lora_a @ lora_b for every adapted linear, computed in fp32
    and cast back to the base weight's dtype."""
    scale = float(lora["alpha"]) / int(lora["rank"])
    merged = _copy_tree(base)
    for group in ("attn", "mlp"):
        for name, module in adapter["layers"][group].items():
            kernel = merged["layers"][group][name]["kernel"]
            delta = np.einsum("lir,lro->lio", module["lora_a"].astype(np.float32),
                              module["lora_b"].astype(np.float32)) * scale
            merged["layers"][group][name]["kernel"] = (kernel.astype(np.float32) + delta).astype(kernel.dtype)
    return merged


def _copy_tree(tree):
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def write_peft_adapter(out: pathlib.Path, config, adapter: dict, marker: dict) -> int:
    """adapter_model.safetensors + adapter_config.json that peft.PeftModel loads."""
    lora = marker["lora"]
    tensors = {}
    for path in hf_keys.petool_paths(config):
        if path[0] != "layers" or path[-1] != "kernel":
            continue
        _, group, name, _ = path
        module = adapter["layers"][group].get(name)
        if module is None:
            continue
        pattern = next(p for p, q, _, _ in hf_keys.KEY_TABLE if q == path)
        for layer in range(config.num_hidden_layers):
            hf_name = pattern.replace(r"(\d+)", str(layer)).replace("\\", "")[: -len(".weight")]
            prefix = f"base_model.model.{hf_name}"
            tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(module["lora_a"][layer].T)
            tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(module["lora_b"][layer].T)
    specs = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    write_file(out / "adapter_model.safetensors", specs, tensors.__getitem__, metadata={"format": "pt"})
    targets = sorted({TARGETS[n] for g in adapter["layers"].values() for n in g})
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(lora["rank"]),
        "lora_alpha": float(lora["alpha"]), "lora_dropout": 0.0, "bias": "none",
        "target_modules": targets, "fan_in_fan_out": False, "inference_mode": True,
        "base_model_name_or_path": marker["base_model"],
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    return sum(v.nbytes for v in tensors.values())
