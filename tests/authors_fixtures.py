"""Tokenizers for the authors'-protocol tests: a small BPE with LLaMA-3's special tokens and
chat template (always available), and Meta's LLaMA-3 tokenizer from ../shared/llama3 built
the way Meta-Llama-3-8B-Instruct's tokenizer.json is (its post-processor adds
<|begin_of_text|>, which is why the authors' `tokenizer(prompt)` call doubles the BOS)."""

from __future__ import annotations

import hashlib

from eval_fixtures import rental_entry, seloger_entry, weather_entry
from petool_jax import petoolbench as pb



def small_tokenizer(out_dir):
    from petool_jax.tokenizer import load_tokenizer, train_bpe_tokenizer

    texts = [e[k] + e["query"] for e in (rental_entry(), weather_entry(), seloger_entry())
             for k in pb.INSTRUCTION_KEYS.values()]
    train_bpe_tokenizer(texts * 3, 400, out_dir)
    return load_tokenizer(out_dir)


def llama3_tokenizer(shared_dir):
    """Meta's LLaMA-3 tokenizer with its BOS-adding post-processor and chat template."""
    from petool_jax.llama3_tokenizer import llama3_tokenizer as build

    path = shared_dir / "llama3" / "tokenizer.model"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.startswith("82e9d319") and digest.endswith("1b55")
    tokenizer = build(path, add_bos=True, model_max_length=1_000_000)
    assert tokenizer.convert_tokens_to_ids("<|begin_of_text|>") == 128000
    return tokenizer
