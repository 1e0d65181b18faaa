"""Chat rendering: messages -> token ids with the tokenizer's own chat template.

One place for training (prompt + answer with an assistant-only mask), evaluation and
generation (the prompt with the generation header), and the benchmarks.
"""

from __future__ import annotations

from petool_jax.errors import UserError


def token_ids(encoded) -> list[int]:
    """A plain id list from what `apply_chat_template(tokenize=True)` returns: a list, or a
    BatchEncoding / dict, depending on the transformers version."""
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    return list(encoded)


class ChatRenderer:
    """Renders messages (and an answer) with the tokenizer's chat template."""

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template")
        self.tokenizer = tokenizer

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The conversation so far plus the assistant header: what a model continues."""
        return token_ids(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def full_ids(self, messages: list[dict], answer: str) -> list[int]:
        conversation = messages + [{"role": "assistant", "content": answer}]
        return token_ids(self.tokenizer.apply_chat_template(conversation, tokenize=True))

    def encode(self, messages: list[dict], answer: str) -> tuple[list[int], list[int]]:
        """(token ids, assistant mask) of the whole conversation."""
        prompt = self.prompt_ids(messages)
        full = self.full_ids(messages, answer)
        if full[:len(prompt)] != prompt or len(full) == len(prompt):
            raise UserError("the chat template does not render the generation prompt as a prefix of the "
                            "conversation; cannot derive the assistant mask")
        return full, [0] * len(prompt) + [1] * (len(full) - len(prompt))


def single_turn_messages(prompt: str, system: str | None = None) -> list[dict]:
    """[system?, user]: a plain prompt as a chat."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
