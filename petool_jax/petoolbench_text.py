"""Text pieces of PEToolBench prompts that are not in the released entries.

- The authors' no-history prompt (`wo_history` in their run_experiment.py, template
  FORMAT_ENTRY_INPUT_WO_HISTORY in their prompt_template.py): the release holds no
  `instruction_wo_history` key, so it is rendered here from the entry's candidates,
  byte for byte as their `str.format` renders it.
- Capping candidate descriptions: the last resort for a prompt whose candidate list alone
  is longer than the token budget. Only description strings are cut (the tool's
  `tool_description` and each parameter's `description`), never a name, type or default.
"""

from __future__ import annotations

import json

CANDIDATES_MARKER = "Available tools you can call with input parameters are listed here:\n"
# Their FORMAT_ENTRY_INPUT_WO_HISTORY with its one field, {apis_candidate}, between the parts.
WO_HISTORY_HEAD = (
    "\nYour task is to use a tool that meets real-time user instructions.\n" + CANDIDATES_MARKER
)
WO_HISTORY_TAIL = (
    "\n\nGenerate your tool call in the following format:\n"
    '{"tool_name": the tool\'s name, "parameters": input parameters in JSON string format on a single line}\n'
    "Example output #1:\n"
    '{"tool_name": "<Search>.<Arxiv Search>.<Get Arxiv Article Information>", "parameters": '
    '{"query": "machine learning", "sort_by": "date", "limit": 3}\n'
    "Example output #2:\n"
    '{"tool_name": "<Travel>.<flight | flight aggregator>.<flight>", "parameters": {}}\n'
    "\nRemember:\nGenerate only the tool call in JSON format without any additional outputs.\n"
    "You will now receive a user instruction; please generate the tool call. \nBegin!\n\n"
)
ELLIPSIS = "..."


def candidates_text(raw) -> str:
    """`apis_candidate` as the prompts show it: the release's JSON string as is (it is the
    exact text inside every released instruction), a list serialised the release's way."""
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)


def no_history_instruction(apis_candidate) -> str:
    """The authors' wo_history system prompt for an entry's `apis_candidate`."""
    return WO_HISTORY_HEAD + candidates_text(apis_candidate) + WO_HISTORY_TAIL


def _cap(text, cap: int) -> tuple[object, bool]:
    if isinstance(text, str) and len(text) > cap:
        return text[:cap] + ELLIPSIS, True
    return text, False


def cap_candidate_descriptions(tools: list, cap: int) -> tuple[list, int]:
    """Copies of `tools` with every description longer than `cap` characters cut to `cap`
    plus "..."; returns (tools, number of descriptions cut)."""
    out, n_cut = [], 0
    for tool in tools:
        if not isinstance(tool, dict):
            out.append(tool)
            continue
        tool = dict(tool)
        if "tool_description" in tool:
            tool["tool_description"], cut = _cap(tool["tool_description"], cap)
            n_cut += cut
        for key in ("required_parameters", "optional_parameters"):
            params = tool.get(key)
            if not isinstance(params, list):
                continue
            capped = []
            for param in params:
                if isinstance(param, dict) and "description" in param:
                    param = dict(param)
                    param["description"], cut = _cap(param["description"], cap)
                    n_cut += cut
                capped.append(param)
            tool[key] = capped
        out.append(tool)
    return out, n_cut


def longest_description(tools: list) -> int:
    """Length of the longest description string among `tools` (0 when there is none)."""
    lengths = [0]
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("tool_description"), str):
            lengths.append(len(tool["tool_description"]))
        for key in ("required_parameters", "optional_parameters"):
            for param in tool.get(key) or []:
                if isinstance(param, dict) and isinstance(param.get("description"), str):
                    lengths.append(len(param["description"]))
    return max(lengths)


def locate_candidates(text: str) -> tuple[int, int, list] | None:
    """(start, end, tools) of the candidate JSON list after CANDIDATES_MARKER, or None."""
    at = text.find(CANDIDATES_MARKER)
    if at < 0:
        return None
    start = at + len(CANDIDATES_MARKER)
    try:
        tools, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return (start, end, tools) if isinstance(tools, list) else None


def with_capped_descriptions(text: str, cap: int | None) -> tuple[str, int]:
    """`text` (a system prompt) with its candidates' descriptions capped at `cap` characters;
    returns (text, descriptions cut). Unchanged when cap is None or nothing is longer."""
    if cap is None:
        return text, 0
    found = locate_candidates(text)
    if found is None:
        return text, 0
    start, end, tools = found
    capped, n_cut = cap_candidate_descriptions(tools, cap)
    if not n_cut:
        return text, 0
    return text[:start] + json.dumps(capped, ensure_ascii=False) + text[end:], n_cut
