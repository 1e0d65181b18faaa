"""`--model PATH`: a JAX model (HF or petool directory) through petool_jax.generation.

Prompts go through the model tokenizer's own chat template; one that exceeds
--max-prompt-tokens loses its OLDEST history entries (petoolbench.fit_messages), never the
candidates or the query. Tasks are sorted by prompt length before batching so each batch
pads little, and every batch is written before the next is generated.
"""

from __future__ import annotations

from eval.options import RunOptions
from eval.predictions import prediction_row
from eval.runners.task import EvalTask, chunks
from petool_jax import petoolbench as pb
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
        count = lambda messages: len(self._encode(messages))  # noqa: E731
        for task in tasks:
            messages, n_dropped = pb.fit_messages(task.entry, task.setting, count,
                                                  self.options.max_prompt_tokens, self.options.prompt_format)
            task.prepared = {"ids": self._encode(messages), "n_dropped": n_dropped}
        ordered = sorted(tasks, key=lambda t: len(t.prepared["ids"]))
        return chunks(ordered, batch_size)

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        o = self.options
        generated = self._generation.generate_batch(
            self.bundle, [t.prepared["ids"] for t in batch], max_new_tokens=o.max_new_tokens,
            temperature=o.temperature, top_p=o.top_p, seed=o.seed, batch_size=o.batch_size, progress=False)
        return [
            prediction_row(t.entry["entry_id"], t.setting,
                           self.tokenizer.decode(ids, skip_special_tokens=True),
                           prompt_tokens=len(t.prepared["ids"]), n_dropped=t.prepared["n_dropped"])
            for t, ids in zip(batch, generated)
        ]
