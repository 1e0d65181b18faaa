"""Tokenizers for the authors'-protocol tests: a small BPE with LLaMA-3's special tokens and
chat template (always available), and Meta's LLaMA-3 tokenizer from ../shared/llama3 built
the way Meta-Llama-3-8B-Instruct's tokenizer.json is (its post-processor adds
<|begin_of_text|>, which is why the authors' `tokenizer(prompt)` call doubles the BOS)."""

from __future__ import annotations

import base64
import hashlib

from eval_fixtures import rental_entry, seloger_entry, weather_entry
from petool_jax import petoolbench as pb

SPECIALS = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>",
            7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>"}


def small_tokenizer(out_dir):
    from petool_jax.tokenizer import load_tokenizer, train_bpe_tokenizer

    texts = [e[k] + e["query"] for e in (rental_entry(), weather_entry(), seloger_entry())
             for k in pb.INSTRUCTION_KEYS.values()]
    train_bpe_tokenizer(texts * 3, 400, out_dir)
    return load_tokenizer(out_dir)


def _ranks(path) -> dict[bytes, int]:
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def llama3_tokenizer(shared_dir):
    """Meta's LLaMA-3 tokenizer with its BOS-adding post-processor and chat template."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from petool_jax.tokenizer import LLAMA3_CHAT_TEMPLATE

    class Converter(TikTokenConverter):
        load_tiktoken_bpe = staticmethod(_ranks)

    path = shared_dir / "llama3" / "tokenizer.model"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.startswith("82e9d319") and digest.endswith("1b55")
    specials = [SPECIALS.get(i, f"<|reserved_special_token_{i}|>") for i in range(256)]
    backend = Converter(str(path), extra_special_tokens=specials).converted()
    bos = backend.token_to_id("<|begin_of_text|>")
    assert bos == 128000
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", pad_token="<|end_of_text|>",
                                   chat_template=LLAMA3_CHAT_TEMPLATE, model_max_length=1_000_000)
