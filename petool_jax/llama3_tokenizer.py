"""Meta's LLaMA-3 tokenizer from its original `tokenizer.model` (tiktoken ranks), without tiktoken.

transformers' TikTokenConverter turns the ranks into a fast tokenizer but asks for the
tiktoken package only to read the file, whose format is one `base64(token) rank` per line;
this reads it directly. The 256 special tokens get LLaMA-3's names, and the chat template is
the LLaMA-3 one (petool_jax.tokenizer.LLAMA3_CHAT_TEMPLATE). Used by the tests and the
benchmarks that run on the real vocabulary (../shared/llama3/tokenizer.model).
"""

from __future__ import annotations

import base64
import pathlib

from petool_jax.tokenizer import LLAMA3_CHAT_TEMPLATE

# Named special tokens by offset from 128000; the others are <|reserved_special_token_N|>.
SPECIAL_NAMES = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>",
                 7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>"}


def read_tiktoken_ranks(path: str | pathlib.Path) -> dict[bytes, int]:
    """tiktoken's file format: one `base64(token) rank` per line."""
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def llama3_tokenizer(model_file: str | pathlib.Path, add_bos: bool = False, **tokenizer_kwargs):
    """A PreTrainedTokenizerFast of the LLaMA-3 vocabulary with the LLaMA-3 chat template.

    add_bos=True adds Meta's post-processor: `tokenizer(text)` then starts with
    <|begin_of_text|> as the released tokenizer.json does (what the authors' code relies on)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class Converter(TikTokenConverter):
        load_tiktoken_bpe = staticmethod(read_tiktoken_ranks)

    specials = [SPECIAL_NAMES.get(i, f"<|reserved_special_token_{i}|>") for i in range(256)]
    backend = Converter(str(model_file), extra_special_tokens=specials).converted()
    if add_bos:
        bos = backend.token_to_id("<|begin_of_text|>")
        backend.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", pad_token="<|end_of_text|>",
                                   chat_template=LLAMA3_CHAT_TEMPLATE, **tokenizer_kwargs)
