"""The three settings' system prompts in the released PEToolBench wording.

A prompt is HEAD[setting] + history (one JSON line) + CANDIDATES_INTRO + candidates (one JSON
line, the entry's `apis_candidate` string) + FORMAT_TAIL, byte for byte as in the released
test file (tests/test_synth_shared.py rebuilds every released prompt from these pieces). The example
outputs keep the release's wording exactly, including the missing brace in example #1:
models are evaluated on this text, so it is reproduced, not corrected.
"""

from __future__ import annotations

import json

from petool_jax.petoolbench import HISTORY_MARKER, render_instruction

_INTRO = (
    "\nYour task is to use a tool that not only meets real-time user instructions but also aligns with user preferences.\n"
    "These preferences can be inferred from the user's interaction history provided below, including past user "
    "instructions and corresponding tool calls"
)


HEADS = {
    "p": _INTRO + ".\n" + HISTORY_MARKER,
    "r": _INTRO + ", with user's binary ratings reflecting the user's satisfaction with the tool calls.\n" + HISTORY_MARKER,
    "c": _INTRO + ", which are in chronological order where user is more preferred with latter tool calls than "
    "earlier ones.\n" + HISTORY_MARKER,
}

CANDIDATES_INTRO = "\n\nAvailable tools you can call with input parameters are listed here:\n"

FORMAT_TAIL = (
    "\n\nGenerate your tool call in the following format:\n"
    '{"tool_name": the tool\'s name, "parameters": input parameters in JSON string format on a single line}\n'
    "Example output #1:\n"
    '{"tool_name": "<Search>.<Arxiv Search>.<Get Arxiv Article Information>", "parameters": {"query": '
    '"machine learning", "sort_by": "date", "limit": 3}\n'
    "Example output #2:\n"
    '{"tool_name": "<Travel>.<flight | flight aggregator>.<flight>", "parameters": {}}\n\n'
    "Remember:\n"
    "Generate only the tool call in JSON format without any additional outputs.\n"
    "You will now receive a user instruction; please generate the tool call. \n"
    "Begin!\n\n"
)


def candidates_json(candidates: list[dict]) -> str:
    """The `apis_candidate` string: one line, non-ASCII kept, as in the release."""
    return json.dumps(candidates, ensure_ascii=False)


def system_prompt(setting: str, history: list[dict], apis_candidate: str) -> str:
    return render_instruction(HEADS[setting], history, CANDIDATES_INTRO + apis_candidate + FORMAT_TAIL)


def tool_call_json(tool_name: str, parameters: dict) -> str:
    """A call as the model should write it (SFT output, DPO chosen/rejected)."""
    return json.dumps({"tool_name": tool_name, "parameters": parameters}, ensure_ascii=False)
