"""Prompt token ids for one (entry, setting) under `--truncation history|authors`.

history (default): petool_jax.prompt_fit - oldest history entries first, then the longest
  candidate descriptions; the query and the candidates' names always stay.
authors: exactly the authors' run_experiment.py code path - the chat template rendered to
  text (`tokenize=False, add_generation_prompt=True`), then `tokenizer(text,
  truncation=True, max_length=N)`. The tokenizer adds its BOS again (LLaMA-3: two
  <|begin_of_text|>) and the cut is from the right, so a long prompt loses its query and
  the assistant header.

Both return the ids and what was cut, as keys for the prediction row:
cut, lost_query (authors: the query did not survive whole), lost_history (history: all of a
non-empty history went), descriptions_cut (history), over_limit (history: still longer).
"""

from __future__ import annotations

import json
from typing import Callable

from petool_jax import petoolbench as pb
from petool_jax.prompt_fit import fit_prompt

MODES = ("history", "authors")


def _input_ids(encoded) -> list[int]:
    return [int(i) for i in encoded["input_ids"]]


def authors_ids(tokenizer, messages: list[dict], max_tokens: int) -> tuple[list[int], dict]:
    """(ids, facts): the authors' `tokenizer(prompt, truncation=True, max_length=N)`."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = _input_ids(tokenizer(text, truncation=True, max_length=max_tokens))
    full = len(_input_ids(tokenizer(text)))
    lost_query = False
    if full > len(ids):
        query = messages[-1]["content"].strip()
        end = text.rfind(query) + len(query) if query and query in text else len(text)
        # Tokens needed to hold the query whole (the template's special tokens bound it).
        lost_query = len(ids) < len(_input_ids(tokenizer(text[:end])))
    facts = {"cut": full > len(ids), "cut_tokens": full - len(ids), "lost_query": lost_query,
             "lost_history": False, "descriptions_cut": 0, "over_limit": False, "n_dropped": 0}
    return ids, facts


def history_ids(encode: Callable[[list[dict]], list[int]], entry: dict, setting: str, max_tokens: int,
                prompt_format: str) -> tuple[list[int], dict]:
    """(ids, facts) of petool_jax.prompt_fit.fit_prompt with the model's own chat template.
    Every candidate prompt's ids are kept, so the one chosen is not encoded twice (an
    uncut prompt is then encoded once: 1.2 of the 4.7 s spent preparing 120 PEToolBench
    prompts of ~2,500 tokens)."""
    encoded: dict[str, list[int]] = {}

    def count(messages: list[dict]) -> int:
        ids = encoded[json.dumps(messages)] = encode(messages)
        return len(ids)

    messages, fit = fit_prompt(entry, setting, count, max_tokens, prompt_format)
    facts = {"cut": fit.cut, "cut_tokens": 0, "lost_query": False, "lost_history": fit.lost_history,
             "descriptions_cut": fit.n_descriptions_cut, "over_limit": fit.over_limit,
             "n_dropped": fit.n_dropped}
    key = json.dumps(messages)
    return (encoded[key] if key in encoded else encode(messages)), facts


def prompt_ids(mode: str, tokenizer, encode, entry: dict, setting: str, max_tokens: int,
               prompt_format: str) -> tuple[list[int], dict]:
    if mode == "authors":
        return authors_ids(tokenizer, pb.build_messages(entry, setting, 0, prompt_format), max_tokens)
    if mode == "history":
        return history_ids(encode, entry, setting, max_tokens, prompt_format)
    raise ValueError(f"unknown truncation {mode!r}; one of {', '.join(MODES)}")
