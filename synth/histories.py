"""Stage e: the three kinds of interaction history for one instance.

Calls come from the pool's examples. For a user, `preferred` calls are examples of APIs of
the user's preferred tools; `non-preferred` calls are examples of the tools that compete
with a preferred tool in one of the user's functionality groups. For an instance (a query
in group g whose ground truth is preferred tool T):

- p, preferred-only: one call of T (never the query itself) plus other preferred calls.
- r, rating-integrated: preferred calls rated 1 (one of them of T) mixed with
  non-preferred calls rated 0 (one of them of a competitor of T in g), shuffled.
- c, chronological: the same kind of mix, non-preferred calls first, then preferred calls:
  the user moved toward the preferred tools over time, so every call of a tool of g that
  comes after the last competitor call is a call of T.

Lengths are drawn in [history.min_len, history.max_len]; history.negative_fraction of an
r/c history is non-preferred (at least one). An instance that cannot get a call of T, or
(for r/c) a competitor call, or min_len calls, is dropped and counted by the caller.
"""

from __future__ import annotations

import numpy as np

from synth.pool import Pool


class HistoryError(Exception):
    """This instance cannot get a history that shows the preference (message: the reason)."""


def user_calls(pool: Pool, user: dict, groups: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
    """(preferred calls, non-preferred calls) of a user, in a deterministic order; groups = pool.groups()."""
    preferred_tools = set(user["preferred_tools"])
    competitor_tools: set[str] = set()
    for func in user["groups"]:
        competitor_tools.update(pool.apis[k].tool_key for k in groups.get(func, []))
    competitor_tools -= preferred_tools

    def calls(tools: set[str]) -> list[dict]:
        out = []
        for tool in sorted(tools):
            for key in pool.tools[tool].apis if tool in pool.tools else []:
                for example in pool.apis[key].examples:
                    out.append({"api": key, "tool": tool, "instruction": example["instruction"],
                                "parameters": example["parameters"]})
        return out

    return calls(preferred_tools), calls(competitor_tools)


def _entry(call: dict, rating: int | None = None) -> dict:
    item = {"instruction": call["instruction"], "tool_call": {"tool_name": call["api"], "parameters": call["parameters"]}}
    if rating is not None:
        item["rating"] = rating
    return item


def _pick(rng: np.random.Generator, calls: list[dict], n: int) -> list[dict]:
    if n <= 0 or not calls:
        return []
    idx = rng.choice(len(calls), size=min(n, len(calls)), replace=False)
    return [calls[int(i)] for i in idx]


def _shuffle(rng: np.random.Generator, items: list) -> list:
    return [items[int(i)] for i in rng.permutation(len(items))]


def build_histories(
    rng: np.random.Generator,
    preferred: list[dict],
    non_preferred: list[dict],
    truth_tool: str,
    group_tools: list[str],
    query: str,
    settings: list[str],
    min_len: int,
    max_len: int,
    negative_fraction: float,
) -> dict[str, list[dict]]:
    # Never show the query (or a call with its exact text) in its own history.
    preferred = [c for c in preferred if c["instruction"] != query]
    non_preferred = [c for c in non_preferred if c["instruction"] != query]
    of_truth = [c for c in preferred if c["tool"] == truth_tool]
    if not of_truth:
        raise HistoryError("the preferred tool has no call other than the query to show")
    rivals = [c for c in non_preferred if c["tool"] in group_tools and c["tool"] != truth_tool]
    if not rivals and ("r" in settings or "c" in settings):
        raise HistoryError("no call of a competing tool for the rated/chronological history")
    out = {}
    for setting in settings:
        length = int(rng.integers(min_len, max_len + 1))
        first = _pick(rng, of_truth, 1)
        rest_pos = [c for c in preferred if c is not first[0]]
        if setting == "p":
            calls = first + _pick(rng, rest_pos, length - 1)
            if len(calls) < min_len:
                raise HistoryError(f"only {len(calls)} preferred calls for history.min_len {min_len}")
            out[setting] = [_entry(c) for c in _shuffle(rng, calls)]
            continue
        n_neg = max(1, round(length * negative_fraction))
        rival = _pick(rng, rivals, 1)
        negatives = rival + _pick(rng, [c for c in non_preferred if c is not rival[0]], n_neg - 1)
        positives = first + _pick(rng, rest_pos, length - len(negatives) - 1)
        if len(negatives) + len(positives) < min_len:
            raise HistoryError(f"only {len(negatives) + len(positives)} calls for history.min_len {min_len}")
        if setting == "r":
            mixed = [(c, 0) for c in negatives] + [(c, 1) for c in positives]
            out[setting] = [_entry(c, r) for c, r in _shuffle(rng, mixed)]
        else:
            out[setting] = [_entry(c) for c in _shuffle(rng, negatives) + _shuffle(rng, positives)]
    return out
