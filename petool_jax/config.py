"""Model configuration: the LLaMA-3 architecture numbers (from an HF config.json) and the
run-time options (dtypes, remat, attention kernel, LoRA) that do not change the weights.

Every architecture field below is read by the model; HF fields that would change the maths
but are not supported (biases, other activations, other RoPE types) are rejected, so a
config never silently means something else here than in transformers.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import yaml

from petool_jax.errors import UserError

SUPPORTED_ROPE_TYPES = ("default", "llama3")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
ATTENTION_IMPLS = ("auto", "xla", "blockwise", "cudnn", "splash")
PRESET_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "model"


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture; hashable so it can be a static jit argument."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    # ("llama3", factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) or None
    rope_scaling: tuple | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def num_params(self) -> int:
        """Parameter count of the base model (no LoRA)."""
        d, layers = self.hidden_size, self.num_hidden_layers
        per_layer = d * (self.q_dim + 2 * self.kv_dim) + self.q_dim * d
        per_layer += 3 * d * self.intermediate_size + 2 * d
        head = 0 if self.tie_word_embeddings else d * self.vocab_size
        return self.vocab_size * d + layers * per_layer + d + head

    # ---- HF config.json <-> LlamaConfig -------------------------------------------------
    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config") -> "LlamaConfig":
        model_type = hf.get("model_type")
        archs = hf.get("architectures") or ["LlamaForCausalLM"]
        if model_type != "llama" or "LlamaForCausalLM" not in archs:
            raise UserError(
                f"{source}: unsupported architecture (model_type={model_type!r}, "
                f"architectures={archs}); petool supports the LLaMA-3 family (model_type 'llama')"
            )
        for key, expected in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
            if hf.get(key, expected) != expected:
                raise UserError(f"{source}: {key}={hf[key]!r} is not supported (LLaMA-3 uses {expected!r})")
        required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads")
        missing = [k for k in required if k not in hf]
        if missing:
            raise UserError(f"{source}: missing keys {missing}")
        heads = hf["num_attention_heads"]
        # transformers >= 5 nests rope settings in `rope_parameters`; released LLaMA-3
        # configs use top-level `rope_theta` + `rope_scaling`. Accept both.
        rope = dict(hf.get("rope_parameters") or {})
        if hf.get("rope_scaling"):
            rope.update(hf["rope_scaling"])
        if "rope_theta" in rope and "rope_theta" in hf and float(rope["rope_theta"]) != float(hf["rope_theta"]):
            raise UserError(f"{source}: rope_theta {hf['rope_theta']} disagrees with "
                            f"rope_parameters.rope_theta {rope['rope_theta']}")
        rope_theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise UserError(f"{source}: rope type {rope_type!r} is not supported ({SUPPORTED_ROPE_TYPES})")
        rope_scaling = None
        if rope_type == "llama3":
            try:
                rope_scaling = ("llama3", float(rope["factor"]), float(rope["low_freq_factor"]),
                                float(rope["high_freq_factor"]),
                                int(rope["original_max_position_embeddings"]))
            except KeyError as err:
                raise UserError(f"{source}: llama3 rope scaling lacks {err.args[0]!r}") from None
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(heads),
            num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=int(hf.get("max_position_embeddings", 8192)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            initializer_range=float(hf.get("initializer_range", 0.02)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
        )

    def to_hf_dict(self, torch_dtype: str = "bfloat16") -> dict[str, Any]:
        """config.json in the form Meta's released LLaMA-3 checkpoints use."""
        hf: dict[str, Any] = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": (list(self.eos_token_ids) if len(self.eos_token_ids) != 1
                             else self.eos_token_ids[0]) if self.eos_token_ids else None,
            "pad_token_id": self.pad_token_id,
            "pretraining_tp": 1,
            "use_cache": True,
            "torch_dtype": torch_dtype,
        }
        if self.rope_scaling is not None:
            _, factor, low, high, original = self.rope_scaling
            hf["rope_scaling"] = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                                  "high_freq_factor": high,
                                  "original_max_position_embeddings": original}
        return hf


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How the model runs; none of this changes the weights' meaning."""

    dtype: str = "float32"  # activations / matmul inputs
    param_dtype: str = "float32"  # parameters as stored for this run
    remat: str = "none"  # none | full | dots | dots_no_batch
    # auto | xla | blockwise | cudnn (GPU, causal only) | splash (TPU): attention_choice.py
    attention: str = "auto"
    lora_rank: int = 0  # 0 = no adapter (full fine-tuning or inference)
    lora_alpha: float = 16.0
    scan_unroll: int = 1

    def __post_init__(self):
        if self.remat not in REMAT_POLICIES:
            raise UserError(f"remat policy {self.remat!r} is not one of {REMAT_POLICIES}")
        if self.attention not in ATTENTION_IMPLS:
            raise UserError(f"attention {self.attention!r} is not one of {ATTENTION_IMPLS}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise UserError(f"{name} {getattr(self, name)!r} must be float32, bfloat16 or float16")

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0


def read_hf_config(path: str | pathlib.Path) -> LlamaConfig:
    """LlamaConfig from an HF config.json (or a directory holding one)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise UserError(f"{path}: no config.json")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err})") from None
    return LlamaConfig.from_hf_dict(hf, source=str(path))


def load_model_config(name_or_path: str) -> LlamaConfig:
    """A preset name (configs/model/NAME.yaml), a YAML/JSON file, or an HF model directory."""
    path = pathlib.Path(name_or_path)
    if not path.exists() and (PRESET_DIR / f"{name_or_path}.yaml").is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if path.is_dir() or path.suffix == ".json":
        return read_hf_config(path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return LlamaConfig.from_hf_dict(yaml.safe_load(path.read_text()), source=str(path))
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise UserError(f"unknown model {name_or_path!r}: not a file or directory, nor a preset {presets}")
