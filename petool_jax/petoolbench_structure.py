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

import re

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


# --- non-functional attributes a reader of the entry can observe ---------------------------
# The paper builds each user's tools by similarity of non-functional attributes (pricing,
# authentication, documentation, ease of use, reliability). What of these an entry SHOWS is
# little: for a candidate its document (parameter names, required count, tool name), for a
# history tool only its calls (parameter names and count, tool name). These four attributes
# are read the same way from both, so history tools and candidates can be compared: the
# rule baseline's attribute evidence, and synthesis making hidden preferences inferable.

ATTRIBUTES = ("authentication", "parameters", "naming", "versioned")
_CREDENTIAL = re.compile(r"(api[_-]?key|apikey|token|secret|auth|password|access[_-]?key)", re.I)
_VERSIONED = re.compile(r"_v\d+$|\bv\d+$", re.I)


def _naming(names: list[str]) -> str:
    """The parameter naming convention a provider uses: camel, snake, kebab, lower or none."""
    styles = []
    for name in names:
        if re.search(r"[a-z][A-Z]", name):
            styles.append("camel")
        elif "_" in name:
            styles.append("snake")
        elif "-" in name:
            styles.append("kebab")
        else:
            styles.append("lower")
    if not styles:
        return "none"
    # Most common; ties by name so the answer never depends on parameter order.
    return min(set(styles), key=lambda s: (-styles.count(s), s))


def _bucket(count: int) -> str:
    return "0" if count == 0 else "1-2" if count <= 2 else "3+"


def _attributes(tool_name: str, names: list[str], count: int) -> dict:
    return {
        "authentication": "credential" if any(_CREDENTIAL.search(n) for n in names) else "none",
        "parameters": _bucket(count),
        "naming": _naming(names),
        "versioned": "yes" if _VERSIONED.search(tool_of(tool_name)[1]) else "no",
    }


def call_attributes(call: dict) -> dict:
    """Observable attributes of a history call's tool: its parameters as passed, its name."""
    params = call.get("parameters") if isinstance(call.get("parameters"), dict) else {}
    names = [str(k) for k in params]
    return _attributes(str(call.get("tool_name", "")), names, len(names))


def candidate_attributes(candidate: dict) -> dict:
    """Observable attributes of a candidate API: its documented parameters (count: required)."""
    def names(key: str) -> list[str]:
        return [p["name"] for p in candidate.get(key) or [] if isinstance(p, dict) and isinstance(p.get("name"), str)]

    required = names("required_parameters")
    return _attributes(str(candidate.get("tool_name", "")), required + names("optional_parameters"), len(required))
