"""The released benchmark's structure, measured on any PEToolBench entry file.

`entry_facts` reads one entry (released or synthesized) and says what its histories and
candidates look like; `summarize` turns a list of facts into the figures of issue 13's
table (visibility of the preferred tool per setting, rivals and ratings, how c relates to
r and p, history lengths, candidate groups, distractors, the query inside the history).
The same facts, measured on a harvested pool file, are the synthesis targets
(synth/structure.py), and `petool synth compare` prints them for two files side by side.

"Rival" = a tool of the same functionality group (apis_same_func) other than the preferred
tool (the ground truth's tool). Calls are compared as (instruction, tool_call) pairs.
"""

from __future__ import annotations

import json
import statistics

from petool_jax import petoolbench as pb
from petool_jax.petoolbench import SETTINGS
from petool_jax.petoolbench_structure import preferred_tool, preferred_visible, rival_tools, tool_of


def _call_key(item: dict) -> str:
    return json.dumps({"instruction": item.get("instruction"), "tool_call": item.get("tool_call")}, sort_keys=True,
                      ensure_ascii=False)


def _tool(item: dict):
    call = item.get("tool_call") if isinstance(item, dict) else None
    name = call.get("tool_name") if isinstance(call, dict) else None
    return tool_of(name) if isinstance(name, str) else None


def entry_facts(entry: dict) -> dict:
    """Per-entry structure facts; a setting absent from the entry gives None for its facts."""
    truth = entry["api_call_ground_truth"]
    mine = preferred_tool(entry)
    rivals = rival_tools(entry)
    hist = {s: pb.history_of(entry, s) if pb.INSTRUCTION_KEYS[s] in entry else None for s in SETTINGS}
    facts: dict = {"visible": {s: (preferred_visible(entry, s) if hist[s] is not None else None) for s in SETTINGS}}
    facts["exact_api_in"] = {s: (any((h.get("tool_call") or {}).get("tool_name") == truth["tool_name"] for h in hist[s])
                                 if hist[s] is not None else None) for s in SETTINGS}
    facts["length"] = {s: (len(hist[s]) if hist[s] is not None else None) for s in SETTINGS}
    facts["preferred_calls"] = {s: (sum(_tool(h) == mine for h in hist[s]) if hist[s] is not None else None)
                                for s in SETTINGS}
    p, r, c = hist["p"], hist["r"], hist["c"]
    facts["rival_in_p"] = any(_tool(h) in rivals for h in p) if p is not None else None
    if r is not None:
        zero = [h for h in r if h.get("rating") == 0]
        one = [h for h in r if h.get("rating") == 1]
        facts["r_rival_rated0"] = any(_tool(h) in rivals for h in zero)
        facts["r_rival_rated1"] = any(_tool(h) in rivals for h in one)
        facts["r_preferred_rated0"] = any(_tool(h) == mine for h in zero)
        facts["r_other_rating"] = len(zero) + len(one) != len(r)
        facts["r_rated0"] = len(zero)
        facts["r_rated0_fraction"] = len(zero) / len(r) if r else 0.0
        facts["r_rated0_only_rivals"] = all(_tool(h) in rivals for h in zero)
        facts["query_in_r_rated0"] = any(h.get("instruction") == entry["query"] for h in zero)
    if r is not None and c is not None:
        strip = [_call_key(h) for h in c]
        zero_keys = [_call_key(h) for h in r if h.get("rating") == 0]
        facts["c_is_r_rated0_first"] = (sorted(strip) == sorted(_call_key(h) for h in r)
                                        and sorted(strip[:len(zero_keys)]) == sorted(zero_keys))
        if p is not None:
            # In the release, c's rated-1 part is the end of the p history, in p's order.
            ones = strip[len(zero_keys):]
            p_keys = [_call_key(h) for h in p]
            facts["c_rated1_is_p_suffix"] = len(ones) <= len(p_keys) and p_keys[len(p_keys) - len(ones):] == ones
    if p is not None and r is not None:
        r_keys = {_call_key(h) for h in r}
        facts["p_subset_of_r"] = all(_call_key(h) in r_keys for h in p)
    same = pb.same_func_tool_names(entry)
    candidates = pb.candidates(entry)
    names = [cand["tool_name"] for cand in candidates]
    category = pb.split_tool_name(truth["tool_name"])[0]
    others = [n for n in names if n not in same]
    facts["candidates"] = len(names)
    facts["truth_among_candidates"] = truth["tool_name"] in names
    facts["same_func_candidates"] = sum(n in same for n in names)
    facts["distractors"] = len(others)
    facts["distractors_same_category"] = sum(pb.split_tool_name(n)[0] == category for n in others)
    return facts


def _share(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(bool(v) for v in values) / len(values) if values else None


def _spread(values: list) -> tuple | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return (min(values), statistics.median(values), max(values))


def summarize(facts: list[dict]) -> dict:
    """The table's figures (fractions in [0, 1]; lengths as (min, median, max))."""
    out: dict = {"entries": len(facts)}
    for s in SETTINGS:
        out[f"visible_{s}"] = _share([f["visible"][s] for f in facts])
        out[f"exact_api_in_{s}"] = _share([f["exact_api_in"][s] for f in facts])
        out[f"length_{s}"] = _spread([f["length"][s] for f in facts])
    out["rival_in_p"] = _share([f.get("rival_in_p") for f in facts])
    for key in ("r_rival_rated0", "r_rival_rated1", "r_preferred_rated0", "r_other_rating", "r_rated0_only_rivals",
                "query_in_r_rated0", "c_is_r_rated0_first", "c_rated1_is_p_suffix", "p_subset_of_r",
                "truth_among_candidates"):
        out[key] = _share([f.get(key) for f in facts])
    fractions = [f["r_rated0_fraction"] for f in facts if f.get("r_rated0_fraction") is not None]
    out["r_rated0_fraction_mean"] = statistics.fmean(fractions) if fractions else None
    out["r_rated0_fraction_range"] = (min(fractions), max(fractions)) if fractions else None
    sizes = [f["same_func_candidates"] for f in facts]
    n = len(sizes) or 1
    out["same_func_2"] = sum(s == 2 for s in sizes) / n
    out["same_func_3"] = sum(s == 3 for s in sizes) / n
    out["same_func_4plus"] = sum(s >= 4 for s in sizes) / n
    out["same_func_1"] = sum(s <= 1 for s in sizes) / n
    distractors = sum(f["distractors"] for f in facts)
    out["distractors_same_category"] = (sum(f["distractors_same_category"] for f in facts) / distractors
                                        if distractors else None)
    out["candidates_10"] = sum(f["candidates"] == 10 for f in facts) / n
    return out


def measure(entries: list[dict]) -> dict:
    return summarize([entry_facts(e) for e in entries])
