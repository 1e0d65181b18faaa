"""Tokenizers: loading one from a model directory, and training a small byte-level BPE
with LLaMA-3's special tokens and chat template (for tiny models, tests and the demo)."""

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
# Any of these ends a generation (LLaMA-3 uses all three).
LLAMA3_END_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")


def load_tokenizer(model_dir: str | pathlib.Path):
    from transformers import AutoTokenizer

    model_dir = pathlib.Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise UserError(f"{model_dir}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(str(model_dir))


def end_token_ids(tokenizer, config=None) -> tuple[int, ...]:
    """Token ids that end generation: the config's eos ids plus LLaMA-3's end tokens."""
    ids = set(config.eos_token_ids if config is not None else ())
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in LLAMA3_END_TOKENS if t in vocab)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
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
