"""The demo's warm-up curriculum, built from the TRAINING split only.

The paper starts from LLaMA-3-8B-Instruct, which already writes JSON and copies values out
of a request. The demo's tiny model starts from random weights, and on a CPU it cannot
afford to learn that from the answers of ~800-token personalized prompts alone (only ~30
tokens of each carry loss). So before personalized SFT it is warmed up, with the same
`petool train sft`, on two kinds of short conversations (LLaMA-Factory SFT rows):

1. calls (`call_rows`): a one-line system prompt, a past instruction as the user turn, its
   tool call as the answer; every training entry's query and every call in its three
   histories, deduplicated (~60 tokens each). They teach the call format, the catalog's
   tool and parameter names and copying values out of the request, but no preference:
   the same instruction is served by different providers for different users.
2. histories (`history_rows`): each training entry in each setting with its real system
   prompt head and history but WITHOUT the candidate list (~250 tokens instead of ~800):
   the preference has to be read off the history, as in the full task.

Test entries are never read, and synth has already cut test queries out of the training
histories.
"""

from __future__ import annotations

import json

from petool_jax import petoolbench as pb

SYSTEM = "Call the tool that serves the user's instruction, in JSON format."
# The release's prompt up to and including the history, then this instead of the candidates.
HISTORY_TAIL = "\n\nGenerate only the tool call in JSON format.\n"


def _call_text(call: dict) -> str:
    return json.dumps({"tool_name": call["tool_name"], "parameters": call.get("parameters", {})}, ensure_ascii=False)


def call_rows(train_entries: list[dict]) -> list[dict]:
    """LLaMA-Factory SFT rows (instruction = SYSTEM, input = instruction, output = call)."""
    rows, seen = [], set()
    for entry in train_entries:
        calls = [(entry["query"], entry["api_call_ground_truth"])]
        for setting in pb.SETTINGS:
            if pb.INSTRUCTION_KEYS[setting] in entry:
                calls += [(h.get("instruction"), h.get("tool_call")) for h in pb.history_of(entry, setting)]
        for instruction, call in calls:
            if not isinstance(instruction, str) or not isinstance(call, dict) or "tool_name" not in call:
                continue
            output = _call_text(call)
            if (instruction, output) not in seen:
                seen.add((instruction, output))
                rows.append({"instruction": SYSTEM, "input": instruction, "output": output})
    return rows


def history_rows(train_entries: list[dict]) -> list[dict]:
    """One row per training entry and setting: head + history + HISTORY_TAIL, query, answer."""
    rows = []
    for entry in train_entries:
        output = _call_text(entry["api_call_ground_truth"])
        for setting in pb.SETTINGS:
            key = pb.INSTRUCTION_KEYS[setting]
            if key not in entry:
                continue
            try:
                head, history, _ = pb.split_instruction(entry[key])
            except ValueError:
                continue
            rows.append({"instruction": pb.render_instruction(head, history, HISTORY_TAIL),
                         "input": entry["query"], "output": output})
    return rows
