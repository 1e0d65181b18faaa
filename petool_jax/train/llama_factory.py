"""`data.prompt_format: llama_factory`: training examples rendered as the authors' LLaMA-Factory
run rendered them (template `llama3`, alpaca-format files, src/llamafactory/data/template.py
and converter.py), token for token, with the same label mask.

What LLaMA-Factory does, and this renderer repeats:
- the alpaca converter joins `instruction` and `input` with "\\n" into ONE user turn (empty
  parts left out); no system message (llama3's default_system is empty);
- the template's slots are encoded one by one with `tokenizer.encode(slot,
  add_special_tokens=False)`, the prefix is the tokenizer's BOS id, and message content is
  used as is (the Jinja chat template of LLaMA-3-Instruct `trim`s it, dropping e.g. the
  newline that ends the authors' instructions);
- the answer is `content<|eot_id|>`; the label mask covers exactly those ids.
Over-long examples are NOT cut as LLaMA-Factory cuts them (the prompt's tail, i.e. the
query); as every petool format, they lose their oldest history entries (README deviations).
"""

from __future__ import annotations

from petool_jax.errors import UserError

PREFIX_BOS = "bos"
SYSTEM_SLOT = "<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>"
USER_SLOT = ("<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n")
ASSISTANT_SLOT = "{content}<|eot_id|>"
REQUIRED_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


class LlamaFactoryRenderer:
    """Same interface as petool_jax.chat.ChatRenderer: prompt_ids, full_ids, encode."""

    def __init__(self, tokenizer):
        vocab = tokenizer.get_vocab()
        missing = [t for t in REQUIRED_TOKENS if t not in vocab]
        if missing:
            raise UserError(f"data.prompt_format=llama_factory renders LLaMA-Factory's llama3 template, but the "
                            f"tokenizer has no {missing[0]} token (use system_user or alpaca_user)")
        self.tokenizer = tokenizer

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """prefix (BOS) + [system slot] + user slot, each slot encoded on its own."""
        ids = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        for message in messages:
            if message["role"] == "system":
                if message["content"]:
                    ids += self._encode(SYSTEM_SLOT.replace("{content}", message["content"]))
            elif message["role"] == "user":
                ids += self._encode(USER_SLOT.replace("{content}", message["content"]))
            else:
                raise ValueError(f"unexpected role {message['role']!r} in a training prompt")
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        return self._encode(ASSISTANT_SLOT.replace("{content}", answer))

    def full_ids(self, messages: list[dict], answer: str) -> list[int]:
        return self.prompt_ids(messages) + self.answer_ids(answer)

    def encode(self, messages: list[dict], answer: str) -> tuple[list[int], list[int]]:
        """(token ids, label mask): 1 on the answer's ids and its <|eot_id|>, 0 on the prompt."""
        prompt, answer_ids = self.prompt_ids(messages), self.answer_ids(answer)
        return prompt + answer_ids, [0] * len(prompt) + [1] * len(answer_ids)


def make_renderer(tokenizer, prompt_format: str):
    """The renderer a prompt format trains with: LLaMA-Factory's for llama_factory, the
    tokenizer's own chat template otherwise."""
    if prompt_format == "llama_factory":
        return LlamaFactoryRenderer(tokenizer)
    from petool_jax.chat import ChatRenderer

    return ChatRenderer(tokenizer)
