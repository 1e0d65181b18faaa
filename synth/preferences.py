"""Stage c: user preferences, i.e. each user's preferred tools, chosen by similarity of
non-functional attributes.

Only tools the user can be shown calling are candidates (offline: tools with example calls).
A user starts from an anchor tool (drawn among tools that have functionally equivalent
competitors) and likes the tools whose attribute profile is closest to the anchor's, e.g.
"free and well documented", with a little per-user noise so users sharing an anchor differ.
Tools are taken greedily in that order, skipping any tool that shares a functionality group
with a tool already preferred: within one group the user prefers exactly one tool, so the
ground truth of every instance is unambiguous.
"""

from __future__ import annotations

import numpy as np

from synth.embeddings import embed
from synth.pool import Pool


def attribute_text(attributes: dict) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(attributes.items()))


def tool_groups(pool: Pool) -> dict[str, set[str]]:
    """tool key -> functionality groups its documented APIs belong to."""
    out: dict[str, set[str]] = {k: set() for k in pool.tools}
    for func, members in pool.groups().items():
        for key in members:
            out[pool.apis[key].tool_key].add(func)
    return out


def contested_groups(pool: Pool) -> dict[str, list[str]]:
    """func -> sorted tool keys, for groups spanning at least two tools."""
    out = {}
    for func, members in pool.groups().items():
        tools = sorted({pool.apis[k].tool_key for k in members})
        if len(tools) >= 2:
            out[func] = tools
    return out


def run_preferences(pool: Pool, config: dict, client) -> tuple[dict, dict]:
    cfg = config["preferences"]
    # A preferred tool must be one the user can be shown calling: offline that needs example
    # calls in the pool; online stage d writes them for any documented API.
    offline = str(config["llm"]["model"]).lower() == "none"
    tools = sorted(
        k for k, t in pool.tools.items() if t.attributes is not None
        and any(pool.apis[a].examples if offline else pool.apis[a].documented for a in t.apis)
    )
    groups_of = tool_groups(pool)
    contested = contested_groups(pool)
    anchors = sorted({t for members in contested.values() for t in members if t in set(tools)})
    if not anchors:
        return {"users": []}, {"users": 0, "reason": "no functionality group spans two tools"}
    vectors = embed([attribute_text(pool.tools[t].attributes) for t in tools], config, client)
    index = {t: i for i, t in enumerate(tools)}
    users = []
    skipped = 0
    for u in range(config["num_users"]):
        rng = np.random.default_rng([config["seed"], 3, u])
        user = None
        for _ in range(cfg["anchor_tries"]):
            anchor = anchors[int(rng.integers(len(anchors)))]
            size = int(rng.integers(cfg["min_tools"], cfg["max_tools"] + 1))
            scores = vectors @ vectors[index[anchor]] + cfg["jitter"] * rng.standard_normal(len(tools))
            scores[index[anchor]] = np.inf  # the anchor is always preferred
            # Highest score first, ties by tool name (tools are sorted, so by index); rounded so
            # that last-bit float differences between machines cannot reorder near-ties.
            order = np.lexsort((np.arange(len(tools)), -np.round(scores, 9)))
            preferred: list[str] = []
            taken_groups: set[str] = set()
            for i in order:
                tool = tools[int(i)]
                if groups_of[tool] & taken_groups:
                    continue
                preferred.append(tool)
                taken_groups |= groups_of[tool]
                if len(preferred) == size:
                    break
            chosen = set(preferred)
            # Groups where this user prefers exactly one of several tools: where instances come from.
            own = {f: next(t for t in members if t in chosen) for f, members in contested.items() if chosen & set(members)}
            if own:
                user = {"user_id": f"u{u:05d}", "anchor": anchor, "preferred_tools": preferred,
                        "groups": dict(sorted(own.items()))}
                break
        if user is None:
            skipped += 1
        else:
            users.append(user)
    sizes = [len(u["preferred_tools"]) for u in users]
    return {"users": users}, {
        "users": len(users), "users skipped (no contested group after anchor_tries)": skipped,
        "tools with attributes": len(tools), "anchor tools": len(anchors),
        "mean preferred tools per user": round(float(np.mean(sizes)), 2) if sizes else 0.0,
    }
