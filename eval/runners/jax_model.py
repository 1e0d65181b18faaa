"""`--model PATH`: a JAX model (HF or petool directory) through petool_jax.generation.

Prompts go through the model tokenizer's own chat template; one that exceeds
--max-prompt-tokens is cut as --truncation says (eval/truncation.py: by default its OLDEST
history entries, then its longest candidate descriptions, never the query; `authors`: the
authors' right cut). Tasks are sorted by prompt length before batching so each batch pads
little, and every batch is written before the next is generated.
"""

from __future__ import annotations

from eval import truncation
from eval.options import RunOptions
from eval.predictions import prediction_row
from eval.runners.task import EvalTask, chunks
from eval.scoring import TRUNCATION_FLAGS
from petool_jax.chat import ChatRenderer


class JaxModelRunner:
    def __init__(self, path: str, options: RunOptions):
        from petool_jax import generation

        self.name = path
        self.options = options
        self._generation = generation
        self.bundle = generation.load_model(path, dtype=options.dtype)
        self.tokenizer = self.bundle.tokenizer

    def _encode(self, messages: list[dict]) -> list[int]:
        return ChatRenderer(self.tokenizer).prompt_ids(messages)

    def plan(self, tasks: list[EvalTask], batch_size: int):
        o = self.options
        for task in tasks:
            ids, facts = truncation.prompt_ids(o.truncation, self.tokenizer, self._encode, task.entry, task.setting,
                                               o.max_prompt_tokens, o.prompt_format)
            task.prepared = {"ids": ids, "n_dropped": facts["n_dropped"], "truncation": facts}
        ordered = sorted(tasks, key=lambda t: len(t.prepared["ids"]))
        return chunks(ordered, batch_size)

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        o = self.options
        generated = self._generation.generate_batch(
            self.bundle, [t.prepared["ids"] for t in batch], max_new_tokens=o.max_new_tokens,
            temperature=o.temperature, top_p=o.top_p, seed=o.seed, batch_size=o.batch_size, progress=False)
        rows = []
        for t, ids in zip(batch, generated):
            row = prediction_row(t.entry["entry_id"], t.setting, self.tokenizer.decode(ids, skip_special_tokens=True),
                                 prompt_tokens=len(t.prepared["ids"]), n_dropped=t.prepared["n_dropped"])
            facts = t.prepared.get("truncation") or {}
            row.update({k: facts[k] for k in TRUNCATION_FLAGS if k in facts}, shortened=bool(facts.get("cut")))
            rows.append(row)
        return rows
