"""GGUF (llama.cpp) LLaMA checkpoint -> petool model directory.

Everything is checked from the header first (architecture, config, every tensor's name,
shape and type); then each petool parameter is assembled from its GGUF tensors, one
dequantized tensor at a time, and written before the next, so peak memory is about one
float32 copy of the largest (stacked) parameter plus the memory-mapped file. The output
is written to a temporary directory renamed into place at the end.

llama.cpp's converter permutes the rows of the Q and K projections (it pairs RoPE's
rotated halves differently); `unpermute_qk` undoes that exactly as transformers does.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
from tqdm import tqdm

from petool_jax import hf_keys
from petool_jax.checkpoint import atomic_output_dir, save_param, write_model_files
from petool_jax.config import LlamaConfig
from petool_jax.errors import UserError
from petool_jax.gguf_file import check_tensor_types, dequantized, field_value, open_gguf

ARCHITECTURE = "llama"
# GGUF tensor name -> HF LlamaForCausalLM name ("{i}" is the layer).
_NAME_TABLE = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", "model.layers.{i}.input_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    (r"blk\.(\d+)\.attn_k\.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    (r"blk\.(\d+)\.attn_v\.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    (r"blk\.(\d+)\.attn_output\.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_up\.weight", "model.layers.{i}.mlp.up_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", "model.layers.{i}.mlp.down_proj.weight"),
)
_NAME_PATTERNS = tuple((re.compile(p), hf) for p, hf in _NAME_TABLE)
# Metadata that would change the maths in ways petool's LLaMA does not implement.
_UNSUPPORTED_KEYS = {
    "llama.expert_count": "mixture-of-experts (Mixtral-style) models",
    "llama.rope.scaling.type": "RoPE scaling stored in GGUF metadata",
}


def hf_name(gguf_name: str) -> str | None:
    for pattern, template in _NAME_PATTERNS:
        m = pattern.fullmatch(gguf_name)
        if m:
            return template.format(i=m.group(1)) if m.groups() else template
    return None


def unpermute_qk(weight_OxI: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert_hf_to_gguf `permute` of Q/K rows (n_head = KV heads for K)."""
    half = weight_OxI.shape[0] // n_head // 2
    w = weight_OxI.reshape(n_head, half, 2, *weight_OxI.shape[1:])
    return w.swapaxes(1, 2).reshape(weight_OxI.shape)


def _f32(value) -> float:
    """A float32 metadata value as the decimal it was written from (1e-05, not 9.9999997e-06)."""
    return float(str(np.float32(value)))


def config_from_gguf(reader, path) -> LlamaConfig:
    """LlamaConfig (HF field names) from the GGUF metadata; other architectures are UserErrors."""
    arch = field_value(reader, "general.architecture")
    if arch != ARCHITECTURE:
        raise UserError(f"{path}: GGUF architecture {arch!r} is not supported; petool converts "
                        f"{ARCHITECTURE!r} (LLaMA-family) GGUF files")
    for key, what in _UNSUPPORTED_KEYS.items():
        value = field_value(reader, key)
        if value not in (None, 0, "none"):
            raise UserError(f"{path}: {key}={value!r}: {what} are not supported")
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        raise UserError(f"{path}: tensor rope_freqs.weight (LLaMA-3.1 RoPE frequency factors) is not "
                        "supported by the GGUF import; convert the HF checkpoint with --hf instead")

    def need(key):
        value = field_value(reader, f"{ARCHITECTURE}.{key}")
        if value is None:
            raise UserError(f"{path}: metadata key {ARCHITECTURE}.{key} is missing")
        return value

    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    vocab = field_value(reader, f"{ARCHITECTURE}.vocab_size") or (len(tokens) if tokens else None) \
        or (int(embed.shape[1]) if embed is not None else None)
    if vocab is None:
        raise UserError(f"{path}: cannot tell the vocabulary size (no llama.vocab_size, tokens or token_embd)")
    head_dim = field_value(reader, f"{ARCHITECTURE}.attention.key_length") or \
        field_value(reader, f"{ARCHITECTURE}.rope.dimension_count") or hidden // heads
    eos = field_value(reader, "tokenizer.ggml.eos_token_id")
    hf = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(field_value(reader, f"{ARCHITECTURE}.attention.head_count_kv", heads)),
        "head_dim": int(head_dim),
        "rms_norm_eps": _f32(field_value(reader, f"{ARCHITECTURE}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _f32(field_value(reader, f"{ARCHITECTURE}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(field_value(reader, f"{ARCHITECTURE}.context_length", 2048)),
        # llama.cpp writes no output.weight when the head shares the embedding.
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": field_value(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos,
        "pad_token_id": field_value(reader, "tokenizer.ggml.padding_token_id"),
    }
    return LlamaConfig.from_hf_dict(hf, source=str(path))


def _plan(reader, config: LlamaConfig, path) -> dict[tuple[str, ...], list]:
    """{petool path: [(tensor, layer, transposed, hf name)]}; every problem listed at once."""
    by_path: dict[tuple[str, ...], list] = {}
    seen, unexpected, bad_shapes = set(), [], []
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        match = hf_keys.match_hf_key(name) if name else None
        if match is None or (match[1] is not None and match[1] >= config.num_hidden_layers):
            unexpected.append(tensor.name)
            continue
        seen.add(name)
        param_path, layer, transposed = match
        shape = tuple(int(d) for d in reversed(tensor.shape))
        if shape != hf_keys.hf_shape(config, param_path):
            bad_shapes.append(f"{tensor.name}: {list(shape)}, expected {list(hf_keys.hf_shape(config, param_path))}")
        by_path.setdefault(param_path, []).append((tensor, layer, transposed, name))
    hf_keys.check_tensor_inventory(config, seen, unexpected, bad_shapes, f"{path}: cannot convert GGUF")
    return by_path


def _hf_tensor(tensor, hf: str, config: LlamaConfig) -> np.ndarray:
    weight = dequantized(tensor)
    if hf.endswith("q_proj.weight"):
        weight = unpermute_qk(weight, config.num_attention_heads)
    elif hf.endswith("k_proj.weight"):
        weight = unpermute_qk(weight, config.num_key_value_heads)
    return weight


def iter_gguf_params(reader, config: LlamaConfig, plan, progress: bool = True):
    """Yield (petool path, float32 array in petool layout) one parameter at a time."""
    bar = tqdm(total=sum(len(v) for v in plan.values()), desc="dequantize", unit="tensor",
               disable=not progress)
    for param_path in hf_keys.petool_paths(config):
        dest = np.empty(hf_keys.petool_shape(config, param_path), np.float32)
        for tensor, layer, transposed, hf in plan[param_path]:
            weight = _hf_tensor(tensor, hf, config)
            np.copyto(dest if layer is None else dest[layer], weight.T if transposed else weight)
            del weight
            bar.update(1)
        yield param_path, dest
    bar.close()


def _generation_config(reader, config: LlamaConfig) -> dict:
    """generation_config.json: every id llama.cpp treats as an end of generation."""
    eos = list(config.eos_token_ids)
    for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        extra = field_value(reader, key)
        if extra is not None and extra not in eos:
            eos.append(int(extra))
    out = {"bos_token_id": config.bos_token_id, "eos_token_id": eos[0] if len(eos) == 1 else eos,
           "do_sample": False}
    if config.pad_token_id is not None:
        out["pad_token_id"] = config.pad_token_id
    return out


def convert_gguf_checkpoint(gguf_path: str | pathlib.Path, out_dir: str | pathlib.Path,
                            overwrite: bool = False, progress: bool = True, extra: dict | None = None) -> dict:
    """Convert a LLaMA GGUF; return {"tensors", "bytes", "dtype", "types"} (types: count per ggml type).
    `extra` goes into petool_model.json (e.g. where the file came from)."""
    from petool_jax.gguf_tokenizer import write_tokenizer_files

    gguf_path = pathlib.Path(gguf_path)
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir} already exists (pass --overwrite to replace it)")
    reader = open_gguf(gguf_path)
    config = config_from_gguf(reader, gguf_path)
    check_tensor_types(reader, gguf_path)
    plan = _plan(reader, config, gguf_path)
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    total = 0
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_tokenizer_files(reader, gguf_path, tmp)  # tokenizer problems surface before the weights
        for param_path, array in iter_gguf_params(reader, config, plan, progress):
            save_param(tmp, param_path, array)
            total += array.nbytes
            del array
        (tmp / "generation_config.json").write_text(json.dumps(_generation_config(reader, config), indent=2) + "\n")
        write_model_files(tmp, config, "float32", tokenizer_src=None,
                          extra={"source": str(gguf_path.resolve()), "source_format": "gguf",
                                 "gguf_tensor_types": types, **(extra or {})})
    return {"tensors": len(reader.tensors), "bytes": total, "dtype": "float32", "types": types}
