"""Stage e: the three interaction histories of one instance, in the released benchmark's structure.

Measured on the 612 released entries (synth/structure_stats.py) and reproduced here:

- p, preferred-only: the user's last calls (history.max_len = 20 when the user has that
  many), all of the user's preferred tools, never a rival's. A call of the preferred tool
  (another of its APIs, never the ground-truth API) appears only in a share of instances
  (structure.visible_p, 0.46); elsewhere the preference must be read from the
  non-functional attributes the user's other tools share with it.
- r, rating-integrated: calls of ONE rival tool rated 0 (one call per API, up to
  history.rated0_max) plus the END of the p history rated 1, so that r holds at most
  max_len calls; shuffled. The preferred tool is visible in r only if one of its calls lies
  in that end (structure.visible_rc, 0.39, never more than p). In structure.query_in_history
  of the instances (0.24) the rival is called with the query's own text and parameters.
- c, chronological: exactly r's calls, the rated-0 ones first (in the rival's API order),
  then the rated-1 ones in the p history's order.

Which other tools fill p: at least structure.attribute_signal of those calls (as far as the
user has them) are calls whose observable attributes (petool_jax.petoolbench_structure)
match the preferred tool's wherever it differs from every rival; the rest are drawn from all
of the user's calls. So the history carries the signal that makes a hidden preference
inferable (the paper builds users by attribute similarity; this makes it visible).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from petool_jax.petoolbench_structure import ATTRIBUTES, call_attributes


class HistoryError(Exception):
    """This instance cannot get a history of the required shape (message: the reason)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one instance's histories must show (drawn by the caller)."""
    p_length: int  # wanted p length (fewer when the user has fewer calls)
    visible_p: bool
    visible_rc: bool
    preferred_calls: int  # calls of the preferred tool when visible
    query_in_history: bool


def as_entry(call: dict, rating: int | None = None) -> dict:
    item = {"instruction": call["instruction"], "tool_call": {"tool_name": call["api"], "parameters": call["parameters"]}}
    if rating is not None:
        item["rating"] = rating
    return item


def _pick(rng: np.random.Generator, calls: list[dict], n: int) -> list[dict]:
    """Up to n distinct calls (by instruction), drawn without replacement."""
    if n <= 0 or not calls:
        return []
    out, seen = [], set()
    for i in rng.permutation(len(calls)):
        call = calls[int(i)]
        if call["instruction"] not in seen:
            seen.add(call["instruction"])
            out.append(call)
            if len(out) == n:
                break
    return out


def signal_mask(calls: list[dict], truth_attrs: dict, rival_attrs: list[dict]) -> list[bool]:
    """Per call: does its tool share every observable attribute in which the preferred tool
    differs from all its rivals? (All False when no attribute tells them apart.)"""
    distinguishing = [a for a in ATTRIBUTES if all(r[a] != truth_attrs[a] for r in rival_attrs)]
    if not distinguishing:
        return [False] * len(calls)
    out = []
    for call in calls:
        attrs = call_attributes({"tool_name": call["api"], "parameters": call["parameters"]})
        out.append(all(attrs[a] == truth_attrs[a] for a in distinguishing))
    return out


def rival_calls(rng: np.random.Generator, rival: list[list[dict]], rival_group_api: str, query_call: dict | None,
                n_max: int) -> list[dict]:
    """One call for each of up to n_max APIs of the shown rival (rival: its calls per API, in its
    API order), kept in that order. query_call: the rival's group API called with the query."""
    apis = [i for i, calls in enumerate(rival) if calls]
    if query_call is not None:
        forced = next(i for i, calls in enumerate(rival) if calls and calls[0]["api"] == rival_group_api)
        others = [i for i in apis if i != forced]
        chosen = {forced} | {others[int(j)] for j in rng.permutation(len(others))[: n_max - 1]}
    else:
        chosen = {apis[int(j)] for j in rng.permutation(len(apis))[:n_max]}
    out = []
    for i in sorted(chosen):
        if query_call is not None and rival[i][0]["api"] == rival_group_api:
            out.append(query_call)
        else:
            out.append(rival[i][int(rng.integers(len(rival[i])))])
    return out


def build_histories(
    rng: np.random.Generator,
    plan: Plan,
    own: list[dict],
    others: list[dict],
    matching: list[bool],
    signal: float,
    rated0: list[dict],
    settings: list[str],
    min_len: int,
    max_len: int,
) -> dict[str, list[dict]]:
    """own: calls of the preferred tool's other APIs; others: calls of the user's other
    preferred tools (matching: signal_mask); rated0: the rival's calls (rival_calls).
    Every list is already free of the query text (except a deliberate query call in rated0)."""
    n0 = len(rated0)
    if n0 == 0 and ("r" in settings or "c" in settings):
        raise HistoryError("no call of a competing tool for the rated/chronological history")
    k = min(plan.preferred_calls, len(own)) if plan.visible_p else 0
    if plan.visible_p and k == 0:
        raise HistoryError("the preferred tool has no call of another API to show")
    shown_own = _pick(rng, own, k)
    wanted = plan.p_length - len(shown_own)
    taken = {c["instruction"] for c in shown_own}  # no instruction twice in one history
    signal_calls = [c for c, m in zip(others, matching) if m and c["instruction"] not in taken]
    filler = _pick(rng, signal_calls, int(np.ceil(signal * wanted)))
    taken |= {c["instruction"] for c in filler}
    filler += _pick(rng, [c for c in others if c["instruction"] not in taken], wanted - len(filler))
    length = len(shown_own) + len(filler)
    if length < min_len:
        raise HistoryError(f"only {length} calls of the user's preferred tools for history.min_len {min_len}")
    n1 = min(length, max_len - n0)  # the end of p that r and c show, rated 1
    tail_start = length - n1
    # Positions of the preferred tool's calls: somewhere in the end r/c show (visible there),
    # or all before it (visible in p only); at random otherwise.
    if shown_own:
        head = [i for i in range(tail_start)]
        tail = [i for i in range(tail_start, length)]
        if plan.visible_rc or len(head) < len(shown_own):
            first = int(tail[int(rng.integers(len(tail)))])
            rest = [i for i in rng.permutation(length) if int(i) != first][: len(shown_own) - 1]
            own_positions = [first] + [int(i) for i in rest]
        else:
            own_positions = [head[int(i)] for i in rng.permutation(len(head))[: len(shown_own)]]
        free = [i for i in range(length) if i not in set(own_positions)]
        order: list[dict | None] = [None] * length
        for pos, call in zip(own_positions, shown_own):
            order[pos] = call
        for pos, call in zip(free, [filler[int(i)] for i in rng.permutation(len(filler))]):
            order[pos] = call
        p_calls = [c for c in order if c is not None]
    else:
        p_calls = [filler[int(i)] for i in rng.permutation(len(filler))]
    out: dict[str, list[dict]] = {}
    if "p" in settings:
        out["p"] = [as_entry(c) for c in p_calls]
    ones = p_calls[tail_start:]
    if "c" in settings:
        out["c"] = [as_entry(c) for c in rated0] + [as_entry(c) for c in ones]
    if "r" in settings:
        mixed = [as_entry(c, 0) for c in rated0] + [as_entry(c, 1) for c in ones]
        out["r"] = [mixed[int(i)] for i in rng.permutation(len(mixed))]
    return out
