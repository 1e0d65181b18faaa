"""Stage f: instances. For a user and one of the user's functionality groups: the query is an
example instruction of the user's preferred tool's API in that group, the ground truth its
call; the candidates are the group's APIs (groups of the size drawn from structure.group_sizes,
or the harvested pool's sizes, chosen as often as the harvested entries ask about them) plus
distractors up to `candidates`, a share of them from the ground
truth's category (structure.same_category_share), shuffled; the histories come from
histories.py; the prompts use the released wording (prompts.py).

Entries carry exactly the released test file's keys, in its order. What the entry does not
say (the user, the preferred tool) goes to a separate `meta` record used for the splits,
the checks and the DPO pairs.
"""

from __future__ import annotations

import numpy as np

from petool_jax.petoolbench_structure import candidate_attributes
from synth.embeddings import embed
from synth.histories import HistoryError, Plan, build_histories, rival_calls, signal_mask
from synth.pool import Pool
from synth.prompts import candidates_json, system_prompt
from synth.structure import Targets, targets as make_targets

ENTRY_KEYS = (
    "query", "instruction_preferred", "instruction_ratings", "instruction_chronological", "apis_candidate",
    "api_call_ground_truth", "api_ground_truth", "func", "apis_same_func", "tool_comb", "num_tools_combined",
    "history_length", "entry_id",
)
INSTRUCTION_KEYS = {"p": "instruction_preferred", "r": "instruction_ratings", "c": "instruction_chronological"}


def _sample(rng: np.random.Generator, keys: list[str], n: int, taken: set[str]) -> list[str]:
    """Up to n keys not in `taken` (which grows), drawn without replacement."""
    free = [k for k in keys if k not in taken]
    out = [free[int(i)] for i in rng.permutation(len(free))[: max(0, n)]]
    taken.update(out)
    return out


def _calls(pool: Pool, api_key: str) -> list[dict]:
    api = pool.apis[api_key]
    return [{"api": api_key, "tool": api.tool_key, "instruction": e["instruction"], "parameters": e["parameters"]}
            for e in api.examples]


class _World:
    """Pool views shared by every instance (built once)."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.groups = pool.groups()
        documented = sorted(k for k, a in pool.apis.items() if a.documented)
        self.by_category: dict[str, list[str]] = {}
        for key in documented:
            self.by_category.setdefault(pool.apis[key].category, []).append(key)
        self.categories = sorted(self.by_category)
        self._calls: dict[str, list[list[dict]]] = {}
        self.func_of_tool: dict[str, set[str]] = {}
        for func, members in self.groups.items():
            for key in members:
                self.func_of_tool.setdefault(pool.apis[key].tool_key, set()).add(func)

    def tool_calls(self, tool: str) -> list[list[dict]]:
        """A tool's example calls, per API in the tool's API order (built once per tool; read-only)."""
        if tool not in self._calls:
            self._calls[tool] = [_calls(self.pool, k) for k in self.pool.tools[tool].apis] if tool in self.pool.tools else []
        return self._calls[tool]

    def embed_apis(self, config: dict, client) -> None:
        """Vectors of every documented API's name and description, for similar distractors."""
        self.keys = sorted(k for k, a in self.pool.apis.items() if a.documented)
        self.row = {k: i for i, k in enumerate(self.keys)}
        texts = [f"{self.pool.apis[k].name}: {self.pool.apis[k].description}" for k in self.keys]
        self.vectors = embed(texts, config, client) if self.keys else np.zeros((0, 1))

    def nearest(self, key: str, keys: list[str], n: int) -> list[str]:
        """The n of `keys` most similar to API `key` (all of them when n <= 0)."""
        if n <= 0 or len(keys) <= n:
            return keys
        rows = np.fromiter((self.row[k] for k in keys), dtype=np.int64, count=len(keys))
        sims = np.round(self.vectors[rows] @ self.vectors[self.row[key]], 6)
        # Rounded, ties by name (rows follow the sorted names): last-bit float differences
        # must not change the choice.
        order = np.lexsort((rows, -sims))[:n]
        return [keys[int(i)] for i in order]

    def distractors(self, rng, truth_key: str, exclude: set[str], category: str, n: int, share: float,
                    nearest: int) -> list[str]:
        """n distractors: Binomial(n, share) from the truth's category, the rest from the others,
        each drawn among the `nearest` APIs most similar to the truth (0: among all)."""
        n_same = int(rng.binomial(n, share))
        taken = set(exclude)
        same_keys = [k for k in self.by_category.get(category, []) if k not in taken]
        same = _sample(rng, self.nearest(truth_key, same_keys, nearest), n_same, taken)
        other_keys = [k for c in self.categories if c != category for k in self.by_category[c] if k not in taken]
        rest = _sample(rng, self.nearest(truth_key, other_keys, nearest), n - len(same), taken)
        if len(same) + len(rest) < n:  # a small pool: fill from wherever is left
            left = [k for k in self.keys if k not in taken]
            rest += _sample(rng, left, n - len(same) - len(rest), taken)
        return same + rest


def _due(rate: float, n: int, so_far: int) -> float:
    """Probability that brings so_far/n back to rate (stochastic rounding of rate * n)."""
    return float(np.clip(rate * n - so_far, 0.0, 1.0))


def _plan(rng: np.random.Generator, t: Targets, max_len: int, query_rate: float, p_rate: float,
          rc_rate: float) -> Plan:
    visible_p = bool(rng.random() < p_rate)
    visible_rc = visible_p and bool(rng.random() < rc_rate)
    return Plan(p_length=t.draw_p_length(rng, max_len), visible_p=visible_p, visible_rc=visible_rc,
                preferred_calls=t.draw_preferred_calls(rng), query_in_history=bool(rng.random() < query_rate))


def build_instances(pool: Pool, users: list[dict], config: dict, client=None) -> tuple[list[dict], list[dict], dict]:
    """(entries, metas, report). entry_id is left to the caller (numbered after the checks).
    client: for embedding.model other than local-hash (similar distractors)."""
    settings = config["settings"]
    hist = config["history"]
    t = make_targets(config, pool.structure)
    world = _World(pool)
    world.embed_apis(config, client)
    n_rated0 = max(1, min(hist["rated0_max"], int(hist["negative_fraction"] * hist["max_len"])))
    # The query can only go to a rival whose schema takes its parameters: each instance asks
    # with the probability that brings the share so far back to structure.query_in_history
    # (stochastic rounding), so instances that cannot take it are made up for by later ones.
    # The same for the preferred tool's visibility (p, and r/c within p): rates that hold
    # closely even for a few hundred instances.
    query_given = shown_p = shown_rc = 0
    entries, metas = [], []
    dropped: dict[str, int] = {}
    adjusted: dict[str, int] = {}

    def count(table: dict, why: str) -> None:
        table[why] = table.get(why, 0) + 1

    for u_index, user in enumerate(users):
        rng = np.random.default_rng([config["seed"], 6, u_index])
        preferred = list(user["preferred_tools"])
        calls_of = {tool: world.tool_calls(tool) for tool in preferred}
        used: set[str] = set()
        for _ in range(config["instances_per_user"]):
            n = len(entries) + 1
            plan = _plan(rng, t, hist["max_len"], _due(t.query_in_history, n, query_given),
                         _due(t.visible_p, n, shown_p), _due(t.visible_rc, n, shown_rc))
            size = t.draw_group_size(rng)
            weights = t.group_weights.get("shown" if plan.visible_p else "hidden", {}) if t.group_weights else {}
            choice = _choose_group(rng, world, user, used, plan, size, calls_of, weights)
            if choice is None:
                count(dropped, "no functionality group of the user left with a call to ask and a rival to show")
                break
            func, truth_key, example, members, why = choice
            if why:
                count(adjusted, why)
                plan = Plan(plan.p_length, False, False, plan.preferred_calls, plan.query_in_history)
            used.add(func)
            try:
                entry, meta = _instance(rng, world, user, func, truth_key, example, members, plan, size, t,
                                        calls_of, settings, config, n_rated0)
            except HistoryError as err:
                count(dropped, str(err))
                continue
            query_given += meta.pop("query_in_history")
            shown = meta.pop("shown")
            shown_p += shown["p"]
            shown_rc += shown["rc"]
            entries.append({k: entry[k] for k in ENTRY_KEYS if k in entry})
            metas.append(meta)
    report = {
        "structure from": t.source,
        "instances built": len(entries), "instances not built": dict(sorted(dropped.items())),
        "preferred tool shown less than planned": dict(sorted(adjusted.items())),
    }
    return entries, metas, report


def _choose_group(rng, world: _World, user: dict, used: set[str], plan: Plan, size: int, calls_of: dict,
                  weights: dict):
    """(func, truth API, query example, chosen group members, why visibility was dropped) or None."""
    pool = world.pool
    options = []
    for func in sorted(user["groups"]):
        if func in used:
            continue
        truth_tool = user["groups"][func]
        members = world.groups[func]
        truth_apis = [k for k in members if pool.apis[k].tool_key == truth_tool and pool.apis[k].examples]
        rivals = [k for k in members if pool.apis[k].tool_key != truth_tool
                  and any(c for c in world.tool_calls(pool.apis[k].tool_key))]
        if not truth_apis or not rivals:
            continue
        # Can the preferred tool be shown through another of its APIs (not one of this group)?
        showable = any(calls and calls[0]["api"] not in members for calls in calls_of.get(truth_tool, []))
        options.append((func, truth_apis, members, showable))
    if not options:
        return None
    fit = [o for o in options if (o[3] or not plan.visible_p)]
    why = None
    if not fit:
        fit, why = options, "no group where the preferred tool has another API to show"
    def tools(option) -> int:
        return len({world.pool.apis[k].tool_key for k in option[2]})

    # Groups of exactly the drawn size (4: four or more) first, shown whole as the release
    # shows its groups; else bigger ones, cut down to the size; else any.
    exact = [o for o in fit if min(tools(o), 4) == size]
    big = exact or [o for o in fit if tools(o) >= size] or fit
    # As often as the harvested entries ask about each group with the preferred tool shown
    # (or hidden) as planned; uniformly without such figures.
    w = np.array([float(weights.get(o[0], 0)) for o in big]) + (0.0 if weights else 1.0)
    w = w + 1e-3 if w.sum() == 0 else w + 1e-3 * (w == 0)
    pick = big[int(rng.choice(len(big), p=w / w.sum()))]
    func, truth_apis, members, _ = pick
    truth_key = truth_apis[int(rng.integers(len(truth_apis)))]
    examples = pool.apis[truth_key].examples
    example = examples[int(rng.integers(len(examples)))]
    return func, truth_key, example, members, why


def _instance(rng, world: _World, user: dict, func: str, truth_key: str, example: dict, members: list[str],
              plan: Plan, size: int, t: Targets, calls_of: dict, settings: list[str], config: dict, n_rated0: int):
    pool = world.pool
    hist = config["history"]
    truth_api = pool.apis[truth_key]
    truth_tool = truth_api.tool_key
    query = example["instruction"]
    # The group's other tools; the shown rival must have calls to show.
    rival_keys = [k for k in members if pool.apis[k].tool_key != truth_tool]
    showable = [k for k in rival_keys if any(c for c in world.tool_calls(pool.apis[k].tool_key))]
    # Released rivals show 2-5 calls (one per API): prefer rivals with two APIs to show.
    showable = [k for k in showable if sum(bool(c) for c in world.tool_calls(pool.apis[k].tool_key)) >= 2] or showable
    shown = showable[int(rng.integers(len(showable)))]
    others = [k for k in rival_keys if k != shown]
    available = min(len(rival_keys) + 1, config["candidates"])
    # The drawn number of same-functionality candidates (4 = "4 or more": the whole group);
    # _choose_group prefers groups of that size, so the group is mostly shown whole.
    wanted = available if size >= 4 else min(size, available)
    chosen_rivals = [shown] + [others[int(i)] for i in rng.permutation(len(others))[: max(0, wanted - 2)]]
    group = [truth_key] + chosen_rivals
    # Rated-0 calls of the shown rival; with query_in_history its group API takes the query.
    rival_tool = pool.apis[shown].tool_key
    rival = [[c for c in calls if c["instruction"] != query] for calls in world.tool_calls(rival_tool)]
    query_call = None
    if plan.query_in_history and not pool.apis[shown].problems(example["parameters"]):
        query_call = {"api": shown, "tool": rival_tool, "instruction": query, "parameters": example["parameters"]}
        api_index = pool.tools[rival_tool].apis.index(shown)
        if not rival[api_index]:
            rival[api_index] = [query_call]
    rated0 = rival_calls(rng, rival, shown, query_call, n_rated0)
    # The user's history: the preferred tool's other APIs, and the user's other preferred
    # tools (never a tool of this group, never the query's text).
    group_tools = {pool.apis[k].tool_key for k in members}
    own = [c for api_calls in calls_of.get(truth_tool, []) for c in api_calls
           if c["api"] != truth_key and c["instruction"] != query and c["api"] not in members]
    others_calls = [c for tool in user["preferred_tools"] if tool != truth_tool and tool not in group_tools
                    for api_calls in calls_of.get(tool, []) for c in api_calls if c["instruction"] != query]
    truth_attrs = candidate_attributes(pool.candidate(truth_key))
    rival_attrs = [candidate_attributes(pool.candidate(k)) for k in chosen_rivals]
    matching = signal_mask(others_calls, truth_attrs, rival_attrs)
    histories = build_histories(rng, plan, own, others_calls, matching, float(config["structure"]["attribute_signal"]),
                                rated0, settings, hist["min_len"], hist["max_len"])
    n = config["candidates"]
    distractors = world.distractors(rng, truth_key, set(members) | set(group), truth_api.category, n - len(group),
                                    t.same_category_share, config["structure"]["distractor_nearest"])
    chosen = group + distractors
    chosen = [chosen[int(i)] for i in rng.permutation(len(chosen))]
    apis_candidate = candidates_json([pool.candidate(k) for k in chosen])
    user_calls = sum(len(c) for tool in user["preferred_tools"] for c in calls_of.get(tool, []))
    entry = {
        "query": query,
        **{INSTRUCTION_KEYS[s]: system_prompt(s, histories[s], apis_candidate) for s in settings},
        "apis_candidate": apis_candidate,
        "api_call_ground_truth": {"tool_name": truth_key, "parameters": example["parameters"]},
        "api_ground_truth": pool.doc(truth_key, example),
        "func": func,
        "apis_same_func": [pool.doc(k) for k in sorted(group)],
        "tool_comb": [pool.tools[t].name for t in user["preferred_tools"]],
        "num_tools_combined": str(len(user["preferred_tools"])),
        # The user's whole history (every call of the user's tools), as in the release, where
        # prompts show at most 20 of a longer history.
        "history_length": user_calls,
        "entry_id": None,
    }
    meta = {
        "user_id": user["user_id"], "func": func, "truth_tool": truth_tool,
        "group_tools": sorted({pool.apis[k].tool_key for k in group}), "preferred_tools": user["preferred_tools"],
        "rivals": sorted(chosen_rivals),
        "history_lengths": {s: len(histories[s]) for s in settings},
        "query_in_history": query_call is not None,
        "shown": {"p": _shows(histories.get("p"), pool.tools[truth_tool].apis, plan.visible_p),
                  "rc": _shows(histories.get("r", histories.get("c")), pool.tools[truth_tool].apis, plan.visible_rc)},
    }
    return entry, meta


def _shows(history: list[dict] | None, apis: list[str], planned: bool) -> bool:
    """Does the history hold a call of one of these APIs (the planned answer without history)?"""
    if history is None:
        return planned
    return any(h["tool_call"]["tool_name"] in apis for h in history)
