"""Quality checks in the spirit of APIGen: every instance passes format, execution-free
semantic and preference checks, or it is dropped and counted under the check it failed.

Per instance: the prompts and candidates are valid JSON that the evaluation harness can
take apart and put back byte for byte; there are exactly `candidates` distinct candidates;
the ground truth is among them; its parameters are valid for its schema; each history shows
the preference it claims (p: a call of the preferred tool; r: rating 1 exactly for preferred
tools; c: the last call of a tool of the group is the preferred tool); no user is asked the
same query twice. Across splits: train and test share no (user, query) and the leakage
report lists test queries whose text occurs anywhere in the training data.
"""

from __future__ import annotations

import json

from petool_jax.petoolbench import render_instruction, split_instruction, split_tool_name
from synth.instances import INSTRUCTION_KEYS
from synth.pool import Pool, tool_key

CHECKS = (
    "valid JSON",
    "candidate count",
    "ground truth among candidates",
    "parameters valid for the ground-truth schema",
    "history shows the preference",
    "duplicate query for the user",
)


def _tool_of(full_name: str) -> str:
    category, tool, _ = split_tool_name(full_name)
    return tool_key(category, tool)


def _history_problem(setting: str, history: list[dict], meta: dict) -> bool:
    tools = [_tool_of(h["tool_call"]["tool_name"]) for h in history]
    truth = meta["truth_tool"]
    if setting == "p":
        return truth not in tools or any(t not in meta["preferred_tools"] for t in tools)
    if setting == "r":
        preferred = set(meta["preferred_tools"])
        if any(h.get("rating") != (1 if t in preferred else 0) for h, t in zip(history, tools)):
            return True
        return truth not in tools or not any(t in meta["group_tools"] and t != truth for t in tools)
    in_group = [t for t in tools if t in meta["group_tools"]]
    return not in_group or in_group[-1] != truth or in_group[0] == truth


def failed_check(entry: dict, meta: dict, pool: Pool, config: dict) -> str | None:
    """The first check this instance fails, or None."""
    try:
        candidates = json.loads(entry["apis_candidate"])
        histories = {}
        for setting in config["settings"]:
            text = entry[INSTRUCTION_KEYS[setting]]
            head, history, tail = split_instruction(text)
            if render_instruction(head, history, tail) != text:
                return "valid JSON"
            histories[setting] = history
        truth = entry["api_call_ground_truth"]
        if json.loads(json.dumps(truth, ensure_ascii=False)) != truth:
            return "valid JSON"
    except (ValueError, KeyError, TypeError):
        return "valid JSON"
    names = [c.get("tool_name") for c in candidates if isinstance(c, dict)]
    if len(names) != config["candidates"] or len(set(names)) != len(names):
        return "candidate count"
    if truth["tool_name"] not in names:
        return "ground truth among candidates"
    api = pool.apis.get(truth["tool_name"])
    if api is None or not api.documented or api.problems(truth["parameters"]):
        return "parameters valid for the ground-truth schema"
    if any(_history_problem(s, h, meta) for s, h in histories.items()):
        return "history shows the preference"
    return None


def filter_instances(entries: list[dict], metas: list[dict], pool: Pool, config: dict):
    """(kept entries, kept metas, {check: number dropped})."""
    dropped = {check: 0 for check in CHECKS}
    seen: set[tuple[str, str]] = set()
    kept_entries, kept_metas = [], []
    for entry, meta in zip(entries, metas):
        failed = failed_check(entry, meta, pool, config)
        if failed is None and (meta["user_id"], entry["query"]) in seen:
            failed = "duplicate query for the user"
        if failed is not None:
            dropped[failed] += 1
            continue
        seen.add((meta["user_id"], entry["query"]))
        kept_entries.append(entry)
        kept_metas.append(meta)
    return kept_entries, kept_metas, dropped


def training_texts(entries: list[dict], settings: list[str]) -> set[str]:
    """Every instruction text a model trained on these entries sees: queries and history calls."""
    texts = set()
    for entry in entries:
        texts.add(entry["query"])
        for setting in settings:
            for item in split_instruction(entry[INSTRUCTION_KEYS[setting]])[1]:
                texts.add(item["instruction"])
    return texts


def scrub_train(train: list[dict], metas: list[dict], test: list[dict], pool: Pool, config: dict):
    """Remove test queries from the training side: a training instance whose query is a test
    query is dropped; a history call with a test query's text is cut out of the training
    histories (prompts re-rendered), and the instance is checked again (a history that no
    longer shows the preference, or falls under history.min_len, is dropped).
    Returns (train, metas, {reason: count})."""
    banned = {e["query"] for e in test}
    counts = {"train instances dropped: query is a test query": 0, "history calls cut": 0,
              "train instances dropped: history too short after cutting": 0,
              "train instances dropped: preference no longer shown": 0}
    kept, kept_metas = [], []
    for entry, meta in zip(train, metas):
        if entry["query"] in banned:
            counts["train instances dropped: query is a test query"] += 1
            continue
        entry = dict(entry)
        short = False
        for setting in config["settings"]:
            key = INSTRUCTION_KEYS[setting]
            head, history, tail = split_instruction(entry[key])
            clean = [h for h in history if h["instruction"] not in banned]
            counts["history calls cut"] += len(history) - len(clean)
            short = short or len(clean) < config["history"]["min_len"]
            entry[key] = render_instruction(head, clean, tail)
        if short:
            counts["train instances dropped: history too short after cutting"] += 1
            continue
        if failed_check(entry, meta, pool, config) is not None:
            counts["train instances dropped: preference no longer shown"] += 1
            continue
        kept.append(entry)
        kept_metas.append(meta)
    return kept, kept_metas, counts


def leakage(test: list[dict], train: list[dict], settings: list[str]) -> dict:
    seen = training_texts(train, settings)
    train_queries = {e["query"] for e in train}
    leaked = [e for e in test if e["query"] in seen]
    return {
        "test instances": len(test),
        "test queries found in training data": len(leaked),
        "of which as a training query": sum(e["query"] in train_queries for e in leaked),
        "of which only inside training histories": sum(e["query"] not in train_queries for e in leaked),
        "examples": [e["query"] for e in leaked[:5]],
        "leaked entry ids": [e["entry_id"] for e in leaked],
    }
