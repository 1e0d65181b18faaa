"""Tokenizers: loading one from a model directory, the ids that end a generation (from the
model's own config, generation config, tokenizer and chat template, whatever the template:
LLaMA-3, ChatML, ...), and training a small byte-level BPE with LLaMA-3's special tokens and
chat template (for tiny models, tests and the demo)."""

from __future__ import annotations

import json
import pathlib
from typing import Iterable

from petool_jax.errors import UserError

# Meta-Llama-3-8B-Instruct's chat template.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                         "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>")
# The tokens that end a generation of the tokenizer trained below (its config lists them as
# eos ids; end_token_ids reads them from there, never from this constant).
LLAMA3_END_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")


def load_tokenizer(model_dir: str | pathlib.Path):
    from transformers import AutoTokenizer

    model_dir = pathlib.Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise UserError(f"{model_dir}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(str(model_dir))


def _eos_ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def generation_config_eos_ids(model_dir) -> set[int]:
    """eos_token_id(s) of MODEL_DIR/generation_config.json, if there is one."""
    if model_dir is None:
        return set()
    path = pathlib.Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return set()
    try:
        return _eos_ids(json.loads(path.read_text()).get("eos_token_id"))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise UserError(f"{path}: bad eos_token_id ({err})") from None


_TURN_SENTINEL = "PETOOL-ASSISTANT-TURN-SENTINEL"


def turn_end_token_id(tokenizer) -> int | None:
    """The special token the chat template writes right after an assistant message (the one
    that closes the turn: <|eot_id|> for LLaMA-3, <|im_end|> for ChatML), or None when the
    template puts no special token there or cannot render a user/assistant exchange."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _TURN_SENTINEL}]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
    except Exception:  # noqa: BLE001 - a template with other rules (roles, tools) simply tells us nothing
        return None
    if not isinstance(text, str) or _TURN_SENTINEL not in text:
        return None
    after = text[text.rindex(_TURN_SENTINEL) + len(_TURN_SENTINEL):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {
        i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)}
    return ids[0] if ids and ids[0] in special else None


def end_token_ids(tokenizer, config=None, model_dirs=()) -> tuple[int, ...]:
    """Token ids that end generation, all read from the model's own files: the config's eos
    ids, generation_config.json's eos ids (in any of `model_dirs`), the tokenizer's eos token,
    and the token the chat template closes an assistant turn with."""
    ids = set(config.eos_token_ids if config is not None else ())
    for model_dir in (model_dirs if isinstance(model_dirs, (list, tuple)) else (model_dirs,)):
        ids |= generation_config_eos_ids(model_dir)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    turn_end = turn_end_token_id(tokenizer)
    if turn_end is not None:
        ids.add(turn_end)
    return tuple(sorted(ids))


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | pathlib.Path) -> dict:
    """Train a byte-level BPE on `texts`, add the LLaMA-3 special tokens after the learned
    vocabulary, and save tokenizer.json + tokenizer_config.json with the LLaMA-3 chat
    template. Returns {"vocab_size", "bos_token_id", "eos_token_ids"}."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(LLAMA3_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(list(LLAMA3_SPECIAL_TOKENS))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|end_of_text|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 131072,
        "chat_template": LLAMA3_CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return {
        "vocab_size": tok.get_vocab_size(),
        "bos_token_id": bos,
        "eos_token_ids": [tok.token_to_id(t) for t in LLAMA3_END_TOKENS],
    }
