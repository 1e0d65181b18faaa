"""Stage f: instances. For a user and one of the user's functionality groups: the query is an
example instruction of the user's preferred tool's API in that group, the ground truth its
call; the candidates are the group's APIs plus distractors up to `candidates` (half from the
same category, which are the hard ones, half from anywhere), shuffled; the histories come
from histories.py; the prompts use the released wording (prompts.py).

Entries carry exactly the released test file's keys, in its order. What the entry does not
say (the user, the preferred tool) goes to a separate `meta` record used for the splits,
the checks and the DPO pairs.
"""

from __future__ import annotations

import numpy as np

from synth.histories import HistoryError, build_histories, user_calls
from synth.pool import Pool
from synth.prompts import candidates_json, system_prompt

ENTRY_KEYS = (
    "query", "instruction_preferred", "instruction_ratings", "instruction_chronological", "apis_candidate",
    "api_call_ground_truth", "api_ground_truth", "func", "apis_same_func", "tool_comb", "num_tools_combined",
    "history_length", "entry_id",
)
INSTRUCTION_KEYS = {"p": "instruction_preferred", "r": "instruction_ratings", "c": "instruction_chronological"}


def _sample(rng: np.random.Generator, keys: list[str], n: int, taken: set[str]) -> list[str]:
    """Up to n keys not in `taken` (which grows), drawn without replacement; O(n + |taken|) draws."""
    out: list[str] = []
    if n <= 0 or not keys:
        return out
    size = min(len(keys), n + len(taken))
    for i in rng.choice(len(keys), size=size, replace=False):
        key = keys[int(i)]
        if key not in taken:
            out.append(key)
            taken.add(key)
            if len(out) == n:
                break
    return out


def _distractors(rng: np.random.Generator, chosen: list[str], category: str, n: int,
                 documented: list[str], by_category: dict[str, list[str]]) -> list[str]:
    taken = set(chosen)
    hard = _sample(rng, by_category.get(category, []), (n + 1) // 2, taken)
    return hard + _sample(rng, documented, n - len(hard), taken)


def build_instances(pool: Pool, users: list[dict], config: dict) -> tuple[list[dict], list[dict], dict]:
    """(entries, metas, report). entry_id is left to the caller (numbered after the checks)."""
    settings = config["settings"]
    hist = config["history"]
    groups = pool.groups()
    documented = sorted(k for k, a in pool.apis.items() if a.documented)
    by_category: dict[str, list[str]] = {}
    for key in documented:
        by_category.setdefault(pool.apis[key].category, []).append(key)
    entries, metas = [], []
    dropped: dict[str, int] = {}
    for u_index, user in enumerate(users):
        rng = np.random.default_rng([config["seed"], 6, u_index])
        preferred, non_preferred = user_calls(pool, user, groups)
        funcs = sorted(user["groups"])
        made = 0
        for f_index in rng.permutation(len(funcs)):
            if made == config["instances_per_user"]:
                break
            func = funcs[int(f_index)]
            truth_tool = user["groups"][func]
            members = groups[func]
            truth_apis = [k for k in members if pool.apis[k].tool_key == truth_tool and pool.apis[k].examples]
            if not truth_apis:
                dropped["preferred API has no example instruction"] = dropped.get("preferred API has no example instruction", 0) + 1
                continue
            truth_key = truth_apis[int(rng.integers(len(truth_apis)))]
            truth_api = pool.apis[truth_key]
            example = truth_api.examples[int(rng.integers(len(truth_api.examples)))]
            group_tools = sorted({pool.apis[k].tool_key for k in members})
            try:
                histories = build_histories(
                    rng, preferred, non_preferred, truth_tool, group_tools, example["instruction"], settings,
                    hist["min_len"], hist["max_len"], hist["negative_fraction"],
                )
            except HistoryError as err:
                dropped[str(err)] = dropped.get(str(err), 0) + 1
                continue
            n = config["candidates"]
            in_group = [k for k in members if k != truth_key]
            in_group = [in_group[int(i)] for i in rng.permutation(len(in_group))[: n - 1]]
            chosen = [truth_key] + in_group
            chosen += _distractors(rng, chosen, truth_api.category, n - len(chosen), documented, by_category)
            chosen = [chosen[int(i)] for i in rng.permutation(len(chosen))]
            apis_candidate = candidates_json([pool.candidate(k) for k in chosen])
            entry = {
                "query": example["instruction"],
                **{INSTRUCTION_KEYS[s]: system_prompt(s, histories[s], apis_candidate) for s in settings},
                "apis_candidate": apis_candidate,
                "api_call_ground_truth": {"tool_name": truth_key, "parameters": example["parameters"]},
                "api_ground_truth": pool.doc(truth_key),
                "func": func,
                "apis_same_func": [pool.doc(k) for k in members],
                "tool_comb": [pool.tools[t].name for t in user["preferred_tools"]],
                "num_tools_combined": str(len(user["preferred_tools"])),
                # The user's whole history (every call the shown histories are drawn from), as in
                # the release, where prompts show at most 20 of a longer history.
                "history_length": sum(c["instruction"] != example["instruction"] for c in preferred + non_preferred),
                "entry_id": None,
            }
            entries.append({k: entry[k] for k in ENTRY_KEYS if k in entry})
            metas.append({
                "user_id": user["user_id"], "func": func, "truth_tool": truth_tool,
                "group_tools": group_tools, "preferred_tools": user["preferred_tools"],
                "rivals": sorted(k for k in members if pool.apis[k].tool_key != truth_tool),
                "history_lengths": {s: len(histories[s]) for s in settings},
            })
            made += 1
    report = {"instances built": len(entries), "instances not built": dict(sorted(dropped.items()))}
    return entries, metas, report
