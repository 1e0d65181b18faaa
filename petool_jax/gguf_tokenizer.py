"""tokenizer.json + tokenizer_config.json from a GGUF's tokenizer metadata.

A GGUF carries the vocabulary, merges, token types, special token ids, BOS/EOS flags and
the chat template under `tokenizer.*` keys. Byte-level BPE vocabularies (`tokenizer.ggml.model
= gpt2`, e.g. SmolLM2, LLaMA-3, Qwen2) are rebuilt here with the `tokenizers` library, splitting
text the way llama.cpp does for the file's `tokenizer.ggml.pre` type. Any other vocabulary
(e.g. LLaMA-2's sentencepiece, `llama`) goes through transformers' own GGUF tokenizer import;
what neither can build is a UserError.
"""

from __future__ import annotations

import json
import pathlib

from petool_jax.errors import UserError
from petool_jax.gguf_file import field_value

# llama.cpp token types (llama_token_type): which tokens match whole in the text.
CONTROL, USER_DEFINED = 3, 4

_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> (regexes applied in turn, as llama.cpp's llama-vocab.cpp does, ignore_merges)
PRE_TOKENIZERS = {
    "default": ((_GPT2_SPLIT,), False),
    "gpt2": ((_GPT2_SPLIT,), False),
    "smollm": ((r"\p{N}", _GPT2_SPLIT), False),  # digits one by one, then GPT-2's split
    "llama-bpe": ((_LLAMA3_SPLIT,), True),
    "llama3": ((_LLAMA3_SPLIT,), True),
    "qwen2": ((_QWEN2_SPLIT,), False),
}


def _byte_level_tokenizer(reader, path):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = field_value(reader, "tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        return None
    splits, ignore_merges = PRE_TOKENIZERS[pre]
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    merges = field_value(reader, "tokenizer.ggml.merges")
    if not tokens or not merges:
        raise UserError(f"{path}: a gpt2 (BPE) tokenizer needs tokenizer.ggml.tokens and tokenizer.ggml.merges")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UserError(f"{path}: tokenizer.ggml.tokens has duplicate entries")
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    model = models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(s), behavior="isolated") for s in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    types = field_value(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    added = [AddedToken(t, special=(kind == CONTROL), normalized=False)
             for t, kind in zip(tokens, types) if kind in (CONTROL, USER_DEFINED)]
    tok.add_special_tokens([a for a in added if a.special])
    tok.add_tokens([a for a in added if not a.special])
    return tok


def _post_processor(tok, bos: str | None, eos: str | None, add_bos: bool, add_eos: bool):
    from tokenizers import processors

    if not (add_bos and bos) and not (add_eos and eos):
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return
    head = f"{bos} " if add_bos and bos else ""
    tail = f" {eos}" if add_eos and eos else ""
    specials = {t for t in (bos if add_bos else None, eos if add_eos else None) if t}
    tok.post_processor = processors.TemplateProcessing(
        single=f"{head}$A{tail}", pair=f"{head}$A{tail} {head}$B{tail}",
        special_tokens=[(t, tok.token_to_id(t)) for t in specials])


def _chat_template(reader):
    """The default template, or a list of named ones when the file has several."""
    default = field_value(reader, "tokenizer.chat_template")
    named = [{"name": k.split(".", 2)[2], "template": field_value(reader, k)}
             for k in reader.fields if k.startswith("tokenizer.chat_template.")]
    if named and default is not None:
        return [{"name": "default", "template": default}] + named
    return default


def _via_transformers(path: pathlib.Path, out_dir: pathlib.Path, model: str, pre: str | None) -> None:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as err:  # noqa: BLE001 - any failure here means: this vocabulary is not importable
        raise UserError(f"{path}: cannot build a tokenizer for tokenizer.ggml.model={model!r} "
                        f"(tokenizer.ggml.pre={pre!r}): {type(err).__name__}: {err}") from None
    tok.save_pretrained(str(out_dir))


def write_tokenizer_files(reader, path: str | pathlib.Path, out_dir: pathlib.Path) -> None:
    path = pathlib.Path(path)
    model = field_value(reader, "tokenizer.ggml.model")
    if model is None:
        raise UserError(f"{path}: no tokenizer metadata (tokenizer.ggml.model); petool needs the tokenizer")
    tokens = field_value(reader, "tokenizer.ggml.tokens") or []
    tok = _byte_level_tokenizer(reader, path) if model == "gpt2" else None
    if tok is None:
        _via_transformers(path, out_dir, model, field_value(reader, "tokenizer.ggml.pre"))
        return

    def token(key):
        i = field_value(reader, f"tokenizer.ggml.{key}")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    bos, eos = token("bos_token_id"), token("eos_token_id")
    add_bos = bool(field_value(reader, "tokenizer.ggml.add_bos_token", False))
    add_eos = bool(field_value(reader, "tokenizer.ggml.add_eos_token", False))
    _post_processor(tok, bos, eos, add_bos, add_eos)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": token("unknown_token_id"),
        "pad_token": token("padding_token_id"),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(field_value(reader, "llama.context_length", 2048)),
    }
    template = _chat_template(reader)
    if template is not None:
        config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
