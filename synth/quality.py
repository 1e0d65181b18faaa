"""Quality checks in the spirit of APIGen: every instance passes format, execution-free
semantic and structure checks, or it is dropped and counted under the check it failed.

Per instance: the prompts and candidates are valid JSON that the evaluation harness can
take apart and put back byte for byte; there are at least `candidates` distinct candidates;
the ground truth is among them; its parameters are valid for its schema; the histories have
the released benchmark's structure (what every one of the 612 released entries satisfies,
tests/test_synth_release.py): no history shows the ground-truth API itself; p holds no
rival's call; r rates every call 0 or 1, holds a rival rated 0, rates only rivals 0 and
never a rival 1; c holds exactly r's calls, the rated-0 ones first. Showing the
preferred tool is NOT required: in the release most histories do not. No user is asked the
same query twice. Across splits: train and test share no (user, query) and the leakage
report lists test queries whose text occurs anywhere in the training data.
"""

from __future__ import annotations

import json

from petool_jax.petoolbench import render_instruction, split_instruction
from synth.instances import INSTRUCTION_KEYS
from synth.pool import Pool
from synth.structure_stats import entry_facts

CHECKS = (
    "valid JSON",
    "candidate count",
    "ground truth among candidates",
    "parameters valid for the ground-truth schema",
    "history has the release's structure",
    "duplicate query for the user",
)


def structure_problem(entry: dict) -> str | None:
    """What breaks the release's history structure in this entry, or None."""
    facts = entry_facts(entry)
    if any(facts["exact_api_in"].values()):
        return "a history shows the ground-truth API"
    if facts.get("rival_in_p"):
        return "p shows a rival"
    if "r_rival_rated0" in facts:
        if facts["r_other_rating"]:
            return "r has a rating other than 0/1"
        if not facts["r_rival_rated0"]:
            return "r has no rival rated 0"
        if facts["r_rival_rated1"]:
            return "r rates a rival 1"
        if not facts["r_rated0_only_rivals"]:
            return "r rates a call of a non-rival tool 0"
        if facts["r_preferred_rated0"]:
            return "r rates the preferred tool 0"
    if facts.get("c_is_r_rated0_first") is False:
        return "c is not r's calls with the rated-0 ones first"
    return None


def failed_check(entry: dict, meta: dict | None, pool: Pool, config: dict) -> str | None:
    """The first check this instance fails, or None (meta is not needed: released entries pass too)."""
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
    # At least `candidates`, all distinct: the release has 11 where a group has 6 APIs (6 + 5 distractors).
    if len(names) < config["candidates"] or len(set(names)) != len(names):
        return "candidate count"
    if truth["tool_name"] not in names:
        return "ground truth among candidates"
    api = pool.apis.get(truth["tool_name"])
    if api is None or not api.documented or api.problems(truth["parameters"]):
        return "parameters valid for the ground-truth schema"
    if structure_problem(entry) is not None:
        return "history has the release's structure"
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
    loses the release's structure, or falls under history.min_len, is dropped).
    Returns (train, metas, {reason: count})."""
    banned = {e["query"] for e in test}
    counts = {"train instances dropped: query is a test query": 0, "history calls cut": 0,
              "train instances dropped: history too short after cutting": 0,
              "train instances dropped: structure broken by the cut": 0}
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
            counts["train instances dropped: structure broken by the cut"] += 1
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
