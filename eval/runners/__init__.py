"""Runners turn (entry, setting) tasks into prediction rows.

A runner has `plan(tasks, batch_size) -> iterable of batches` (it may reorder, e.g. by
prompt length) and `run_batch(batch) -> list of rows` (eval.predictions.prediction_row, in
the batch's order). The run loop writes each batch's rows before asking for the next.
`--model` picks one: `rule`, `openai:NAME`, or a model directory (HF or petool).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Task:
    entry: dict
    setting: str
    # Filled by runners that prepare prompts in plan() (token ids, history entries dropped).
    prepared: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.entry["entry_id"], self.setting)


def chunks(items: list, size: int):
    for begin in range(0, len(items), max(1, size)):
        yield items[begin:begin + size]


def make_runner(spec: str, options):
    """The runner for a --model value; heavy imports happen only for the one chosen."""
    if spec == "rule":
        from eval.runners.rule import RuleRunner

        return RuleRunner()
    if spec.startswith("openai:"):
        from eval.runners.openai_api import OpenAIRunner

        return OpenAIRunner(spec.removeprefix("openai:"), options)
    from eval.runners.jax_model import JaxModelRunner

    return JaxModelRunner(spec, options)
