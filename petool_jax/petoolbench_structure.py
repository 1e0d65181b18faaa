"""Who is who in a PEToolBench entry's history: the preferred tool, its rivals, what is visible.

The preferred tool of an entry is the tool (provider, `<Category>.<Tool>`) of its
ground-truth API; its rivals are the other tools in `apis_same_func` (the functionally
equivalent APIs). In the released test file the preferred tool shows up in the history
(a call of ANY of its APIs) in only 46% of p entries and 39% of r/c entries: elsewhere the
preference must be inferred from the non-functional attributes the user's other tools
share. `preferred_visible` is that split, used by the demo report and `petool synth compare`.

Core module: imports only petool_jax.petoolbench (no synth, no eval), so eval, synth and
the demo can all use it.
"""

from __future__ import annotations

from petool_jax.petoolbench import INSTRUCTION_KEYS, history_of, split_tool_name


def tool_of(full_name: str) -> tuple[str, str]:
    """`<Category>.<Tool>.<API>` -> (category, tool): the provider a call goes to."""
    category, tool, _ = split_tool_name(full_name)
    return category, tool


def preferred_tool(entry: dict) -> tuple[str, str]:
    """(category, tool) of the ground-truth call."""
    return tool_of(entry["api_call_ground_truth"]["tool_name"])


def rival_tools(entry: dict) -> set[tuple[str, str]]:
    """(category, tool) of every same-functionality API's tool other than the preferred one."""
    mine = preferred_tool(entry)
    out = set()
    for doc in entry.get("apis_same_func") or []:
        if isinstance(doc, dict) and isinstance(doc.get("category_name"), str) and isinstance(doc.get("tool_name"), str):
            tool = (doc["category_name"], doc["tool_name"])
            if tool != mine:
                out.add(tool)
    return out


def history_tools(entry: dict, setting: str) -> list[tuple[str, str] | None]:
    """(category, tool) of each history call of the setting, in order (None for a malformed item)."""
    out: list[tuple[str, str] | None] = []
    for item in history_of(entry, setting):
        call = item.get("tool_call") if isinstance(item, dict) else None
        name = call.get("tool_name") if isinstance(call, dict) else None
        out.append(tool_of(name) if isinstance(name, str) else None)
    return out


def preferred_visible(entry: dict, setting: str) -> bool:
    """True when the setting's history holds a call of the preferred tool (any of its APIs)."""
    if setting not in INSTRUCTION_KEYS:
        raise ValueError(f"unknown setting {setting!r}; settings are {', '.join(INSTRUCTION_KEYS)}")
    if INSTRUCTION_KEYS[setting] not in entry:
        return False
    return preferred_tool(entry) in history_tools(entry, setting)
