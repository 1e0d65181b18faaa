"""`--model rule`: a no-LLM baseline that reads the same prompt parts a model sees.

1. Functionality: score each candidate by the query words it shares with the candidate's
   API name and description, each word weighted by its rarity among the candidates (so
   words every candidate has count little). Candidates with the same API name are one
   functionality group (the benchmark's equivalent tools share API names); take the group
   with the best-scoring member.
2. Preference: within the group, the tool (provider) with the most history evidence:
   p = how often the user called it, r = ratings (+1 for a 1, -1 for a 0),
   c = recency (the later its last call, the more preferred).
   Ties (typically: the preferred tool is not in the history at all, as in most released
   entries) go to the attribute evidence: the non-functional attributes a reader can see
   (petool_jax.petoolbench_structure: credential parameters, parameter count, naming
   convention, versioned name) of the user's history tools against each candidate's; a
   candidate scores the share of the user's liked calls that match it, attribute by
   attribute, less the share of disliked calls that do (r: rated 0). Liked calls: p all,
   r rated 1, c the later half. Then the lexical score, then candidate order.
3. Parameters: the chosen API's required parameters with their documented defaults (no
   attempt to read values from the query: this is a tool-choice baseline).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

from eval.predictions import prediction_row
from eval.runners.task import EvalTask, chunks
from petool_jax import petoolbench as pb
from petool_jax.petoolbench_structure import ATTRIBUTES, call_attributes, candidate_attributes

_STOPWORDS = frozenset(
    "a an and are as at be by for from get i in into is it its me my of on or please the "
    "this to want with you your".split()
)


def words(text: str) -> list[str]:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text or "")  # camelCase -> camel Case
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 1 and w not in _STOPWORDS]


def lexical_scores(query: str, candidates: list[dict]) -> list[float]:
    bags = [set(words(pb.split_tool_name(c["tool_name"])[2] + " " + c.get("tool_description", "")))
            for c in candidates]
    df = Counter(w for bag in bags for w in bag)
    n = len(candidates)
    query_words = set(words(query))
    # Summed in sorted order: set order follows string hashing, which changes per process,
    # and float sums in another order can break a tie the other way.
    return [sum(math.log((n + 1) / (df[w] + 1)) + 1e-3 for w in sorted(query_words & bag)) for bag in bags]


def provider(tool_name: str) -> tuple[str, str]:
    category, tool, _ = pb.split_tool_name(tool_name)
    return category, tool


def evidence(history: list[dict], setting: str) -> dict[tuple, float]:
    """History evidence per provider: counts (p), summed ratings (r) or last position (c)."""
    score: dict[tuple, float] = {}
    for position, item in enumerate(history, start=1):
        call = item.get("tool_call") if isinstance(item, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("tool_name"), str):
            continue
        key = provider(call["tool_name"])
        if setting == "r":
            score[key] = score.get(key, 0.0) + (1.0 if item.get("rating") == 1 else -1.0)
        elif setting == "c":
            score[key] = float(position)
        else:
            score[key] = score.get(key, 0.0) + 1.0
    return score


def liked_and_disliked(history: list[dict], setting: str) -> tuple[list[dict], list[dict]]:
    """The calls that speak for a tool (liked) and against it (disliked), per setting."""
    calls = [item for item in history if isinstance(item, dict) and isinstance(item.get("tool_call"), dict)]
    if setting == "r":
        return ([c for c in calls if c.get("rating") == 1], [c for c in calls if c.get("rating") == 0])
    if setting == "c":
        return calls[len(calls) // 2:], []
    return calls, []


def attribute_scores(history: list[dict], setting: str, candidates: list[dict]) -> list[float]:
    """Per candidate: how well its observable attributes match the user's liked calls' (see module doc)."""
    liked, disliked = liked_and_disliked(history, setting)
    liked_attrs = [call_attributes(c["tool_call"]) for c in liked]
    disliked_attrs = [call_attributes(c["tool_call"]) for c in disliked]
    scores = []
    for cand in candidates:
        mine = candidate_attributes(cand)
        score = 0.0
        for a in ATTRIBUTES:
            if liked_attrs:
                score += sum(x[a] == mine[a] for x in liked_attrs) / len(liked_attrs)
            if disliked_attrs:
                score -= sum(x[a] == mine[a] for x in disliked_attrs) / len(disliked_attrs)
        scores.append(round(score, 9))  # rounded: equal shares must tie exactly
    return scores


def choose(entry: dict, setting: str) -> dict:
    candidates = pb.candidates(entry)
    if not candidates:
        return {"tool_name": "", "parameters": {}}
    lexical = lexical_scores(entry["query"], candidates)
    best = max(range(len(candidates)), key=lambda i: (lexical[i], -i))
    api = pb.split_tool_name(candidates[best]["tool_name"])[2].strip().lower()
    group = [i for i, c in enumerate(candidates) if pb.split_tool_name(c["tool_name"])[2].strip().lower() == api]
    history = pb.history_of(entry, setting)
    support = evidence(history, setting)
    attributes = dict(zip(group, attribute_scores(history, setting, [candidates[i] for i in group])))
    chosen = candidates[max(group, key=lambda i: (support.get(provider(candidates[i]["tool_name"]), 0.0),
                                                  attributes[i], lexical[i], -i))]
    parameters = {p["name"]: p.get("default", "") for p in chosen.get("required_parameters") or []
                  if isinstance(p, dict) and "name" in p}
    return {"tool_name": chosen["tool_name"], "parameters": parameters}


class RuleRunner:
    name = "rule"

    def plan(self, tasks: list[EvalTask], batch_size: int):
        return chunks(tasks, batch_size)

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        return [
            prediction_row(t.entry["entry_id"], t.setting, json.dumps(choose(t.entry, t.setting), ensure_ascii=False))
            for t in batch
        ]
