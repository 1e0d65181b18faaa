"""The evaluation work item: one (entry, setting) pair, and batching of such items."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalTask:
    """One prompt to answer: an entry in one setting (p, r, c)."""

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
