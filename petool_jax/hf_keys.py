"""The one table between transformers' LlamaForCausalLM tensor names and petool's
parameter tree. Linear weights are stored transposed ([in, out]); per-layer tensors are
stacked along a leading "layers" axis.
"""

from __future__ import annotations

import re

from petool_jax.config import LlamaConfig
from petool_jax.errors import UserError

# (HF name pattern, petool path, is a per-layer tensor, transposed)
KEY_TABLE: tuple[tuple[str, tuple[str, ...], bool, bool], ...] = (
    (r"model\.embed_tokens\.weight", ("embed", "embedding"), False, False),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.weight", ("layers", "attn", "q_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.weight", ("layers", "attn", "k_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.weight", ("layers", "attn", "v_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.weight", ("layers", "attn", "o_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.weight", ("layers", "mlp", "gate_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.weight", ("layers", "mlp", "up_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.weight", ("layers", "mlp", "down_proj", "kernel"), True, True),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", ("layers", "input_norm", "scale"), True, False),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", ("layers", "post_attn_norm", "scale"), True, False),
    (r"model\.norm\.weight", ("final_norm", "scale"), False, False),
    (r"lm_head\.weight", ("lm_head", "kernel"), False, True),
)
_COMPILED = tuple((re.compile(p), path, per_layer, t) for p, path, per_layer, t in KEY_TABLE)
# Recomputable buffers some exporters include; never weights.
IGNORED_HF_KEYS = re.compile(r".*rotary_emb\.inv_freq$")


def match_hf_key(name: str):
    """(petool path, layer index or None, transposed) for an HF tensor name, or None."""
    for pattern, path, per_layer, transposed in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            return path, (int(m.group(1)) if per_layer else None), transposed
    return None


def hf_shape(config: LlamaConfig, path: tuple[str, ...]) -> tuple[int, ...]:
    """The HF (torch) shape of one tensor for `path` (one layer's, for per-layer ones)."""
    d, q, kv, f, v = config.hidden_size, config.q_dim, config.kv_dim, config.intermediate_size, config.vocab_size
    return {
        ("embed", "embedding"): (v, d),
        ("layers", "attn", "q_proj", "kernel"): (q, d),
        ("layers", "attn", "k_proj", "kernel"): (kv, d),
        ("layers", "attn", "v_proj", "kernel"): (kv, d),
        ("layers", "attn", "o_proj", "kernel"): (d, q),
        ("layers", "mlp", "gate_proj", "kernel"): (f, d),
        ("layers", "mlp", "up_proj", "kernel"): (f, d),
        ("layers", "mlp", "down_proj", "kernel"): (d, f),
        ("layers", "input_norm", "scale"): (d,),
        ("layers", "post_attn_norm", "scale"): (d,),
        ("final_norm", "scale"): (d,),
        ("lm_head", "kernel"): (v, d),
    }[path]


def expected_hf_keys(config: LlamaConfig) -> list[str]:
    """Every tensor name a complete HF checkpoint of this config holds, in a stable order."""
    names = ["model.embed_tokens.weight"]
    per_layer = [(p, path) for p, path, is_layer, _ in KEY_TABLE if is_layer]
    for i in range(config.num_hidden_layers):
        for pattern, _ in per_layer:
            names.append(pattern.replace(r"(\d+)", str(i)).replace("\\", ""))
    names.append("model.norm.weight")
    if not config.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


def petool_paths(config: LlamaConfig) -> list[tuple[str, ...]]:
    paths = [path for _, path, _, _ in KEY_TABLE]
    return [p for p in paths if not (config.tie_word_embeddings and p[0] == "lm_head")]


def petool_shape(config: LlamaConfig, path: tuple[str, ...]) -> tuple[int, ...]:
    shape = hf_shape(config, path)
    _, _, per_layer, transposed = next(e for e in KEY_TABLE if e[1] == path)
    if transposed:
        shape = shape[::-1]
    return ((config.num_hidden_layers,) if per_layer else ()) + shape


def check_tensor_inventory(config, seen, unexpected: list, bad_shapes: list, what: str) -> None:
    """One error listing every missing, unexpected and wrongly shaped tensor of a checkpoint
    (HF safetensors or GGUF): a conversion reports all problems at once, not the first."""
    missing = [k for k in expected_hf_keys(config) if k not in seen]
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {missing[:20]}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {unexpected[:20]}")
    if bad_shapes:
        problems.append("wrong shapes: " + "; ".join(bad_shapes[:20]))
    if problems:
        raise UserError(f"{what}: " + " | ".join(problems))
