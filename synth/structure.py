"""The structure synthesized instances follow: the released benchmark's, by default.

Two sources. From config (`structure.*`, `history.*`; defaults = the figures of the 612
released entries, see ../shared/petoolbench/README.md). From the pool (structure.from_pool,
default on) when it holds harvested PEToolBench entry files: their history lengths,
functionality-group sizes among the candidates, share of same-category distractors, rate
of the query appearing as a rated-0 call, and how often each functionality group is asked
about with the preferred tool shown or hidden, are measured at harvest time
(synth/sources.py) and followed here, so synthesis from one half of the release reproduces
that half. The preferred tool's visibility always comes from config.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Targets:
    visible_p: float  # a call of the preferred tool (never its ground-truth API) in the p history
    visible_rc: float  # ... in the r/c history (<= visible_p: r's rated-1 calls are the end of p)
    preferred_calls: tuple  # P(1, 2, 3, 4... calls of the preferred tool | visible in p)
    p_lengths: tuple  # p history lengths to draw from (empty: history.max_len)
    group_sizes: tuple  # P(2, 3, 4+ same-functionality candidates)
    same_category_share: float  # of the distractors, share from the ground truth's category
    query_in_history: float  # r/c: the shown rival called with the query's own text, rated 0
    group_weights: dict  # "shown"/"hidden" -> func id -> how often the harvested entries ask about
    # it with the preferred tool shown / hidden in p ({}: uniform)
    source: str  # "config" or the harvested files the pool figures come from

    def draw_p_length(self, rng: np.random.Generator, max_len: int) -> int:
        if not self.p_lengths:
            return max_len
        return min(max_len, int(self.p_lengths[int(rng.integers(len(self.p_lengths)))]))

    def draw_group_size(self, rng: np.random.Generator) -> int:
        """2, 3 or 4 (4 = "4 or more": the whole group, up to the candidate count)."""
        return 2 + int(rng.choice(len(self.group_sizes), p=np.asarray(self.group_sizes) / sum(self.group_sizes)))

    def draw_preferred_calls(self, rng: np.random.Generator) -> int:
        weights = np.asarray(self.preferred_calls, dtype=float)
        return 1 + int(rng.choice(len(weights), p=weights / weights.sum()))


def _normalized(values, key: str) -> tuple:
    from petool_jax.errors import UserError

    if (not isinstance(values, (list, tuple)) or not values
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values) or sum(values) <= 0):
        raise UserError(f"config key {key!r}: expected a non-empty list of non-negative weights, got {values!r}")
    total = float(sum(values))
    return tuple(float(v) / total for v in values)


def check_structure_config(config: dict) -> None:
    from petool_jax.errors import UserError

    s = config["structure"]
    for key in ("visible_p", "visible_rc", "same_category_share", "query_in_history"):
        value = s[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UserError(f"config key 'structure.{key}': expected a number in [0, 1], got {value!r}")
    if s["visible_rc"] > s["visible_p"]:
        raise UserError("config key 'structure.visible_rc': must not exceed structure.visible_p (the r/c history's "
                        "rated-1 calls are the end of the p history, so r/c can only show what p shows)")
    if not isinstance(s["from_pool"], bool):
        raise UserError(f"config key 'structure.from_pool': expected true or false, got {s['from_pool']!r}")
    _normalized(s["preferred_calls"], "structure.preferred_calls")
    sizes = _normalized(s["group_sizes"], "structure.group_sizes")
    if len(sizes) != 3:
        raise UserError("config key 'structure.group_sizes': expected three weights, for 2, 3 and 4+ same-functionality "
                        f"candidates, got {s['group_sizes']!r}")
    signal = s["attribute_signal"]
    if isinstance(signal, bool) or not isinstance(signal, (int, float)) or not 0 <= signal <= 1:
        raise UserError(f"config key 'structure.attribute_signal': expected a number in [0, 1], got {signal!r}")


def targets(config: dict, measured: dict | None) -> Targets:
    """Targets from config, with the pool's measured figures over them when there are any."""
    s = config["structure"]
    base = dict(
        visible_p=float(s["visible_p"]), visible_rc=float(s["visible_rc"]),
        preferred_calls=_normalized(s["preferred_calls"], "structure.preferred_calls"), p_lengths=(),
        group_sizes=_normalized(s["group_sizes"], "structure.group_sizes"),
        same_category_share=float(s["same_category_share"]), query_in_history=float(s["query_in_history"]),
        group_weights={}, source="config",
    )
    if s["from_pool"] and measured and measured.get("entries"):
        sizes = measured["group_sizes"]
        counts = (sizes.get("2", 0), sizes.get("3", 0), sum(v for k, v in sizes.items() if int(k) >= 4))
        base.update(
            p_lengths=tuple(sorted(measured["p_lengths"])),
            group_sizes=_normalized(counts, "pool group sizes") if sum(counts) else base["group_sizes"],
            same_category_share=(measured["distractors_same_category"] / measured["distractors"]
                                 if measured["distractors"] else base["same_category_share"]),
            query_in_history=(measured["query_in_r_rated0"] / measured["with_r"]
                              if measured["with_r"] else base["query_in_history"]),
            group_weights={part: dict(measured.get("funcs", {}).get(part, {})) for part in ("shown", "hidden")},
            source="harvested entries: " + ", ".join(measured["files"]),
        )
    return Targets(**base)


def empty_measurement() -> dict:
    return {"entries": 0, "files": [], "p_lengths": [], "group_sizes": {}, "distractors": 0,
            "distractors_same_category": 0, "with_r": 0, "query_in_r_rated0": 0, "funcs": {}}


def add_measurement(measured: dict, facts: dict, func: str | None = None) -> None:
    """Fold one harvested entry's facts (synth.structure_stats.entry_facts) into the pool's figures."""
    measured["entries"] += 1
    if func is not None:
        part = measured["funcs"].setdefault("shown" if facts["visible"]["p"] else "hidden", {})
        part[func] = part.get(func, 0) + 1
    if facts["length"]["p"] is not None:
        measured["p_lengths"].append(facts["length"]["p"])
    size = str(facts["same_func_candidates"])
    measured["group_sizes"][size] = measured["group_sizes"].get(size, 0) + 1
    measured["distractors"] += facts["distractors"]
    measured["distractors_same_category"] += facts["distractors_same_category"]
    if facts.get("query_in_r_rated0") is not None:
        measured["with_r"] += 1
        measured["query_in_r_rated0"] += int(facts["query_in_r_rated0"])
