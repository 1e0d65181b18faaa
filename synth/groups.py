"""Stage b: functionality groups, i.e. APIs of different tools that do the same thing.

A pool that already has groups (harvested from PEToolBench `func` ids) keeps them unless
groups.regroup is set. Otherwise: embed each documented API's functionality description,
take for every API its nearest neighbours of OTHER tools; a pair at or above
groups.same_threshold is the same functionality, a pair in [verify_threshold, same_threshold)
is borderline and goes to the LLM for a yes/no (offline, borderline pairs are not joined).
Accepted pairs are joined most-similar first, refusing a join that would put two APIs of one
tool in a group (a group contrasts tools) or grow it past groups.max_size (chains of
"similar to similar" drift apart).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synth.embeddings import embed
from synth.pool import Pool

VERIFY_SYSTEM = "You compare web APIs for a tool-learning dataset. Answer with one JSON object and nothing else."


def _api_text(pool: Pool, key: str) -> str:
    api = pool.apis[key]
    return api.functionality or api.description or api.name


def _verify_prompt(pool: Pool, a: str, b: str) -> list[dict]:
    def show(key: str) -> str:
        api = pool.apis[key]
        params = ", ".join(p["name"] for p in api.required + api.optional) or "none"
        return f"{key}\n  does: {_api_text(pool, key)}\n  parameters: {params}"

    return [
        {"role": "system", "content": VERIFY_SYSTEM},
        {
            "role": "user",
            "content": "Do these two APIs provide the same functionality, so that one user request "
            "could be served by either of them (possibly with different parameter names)?\n"
            f"API A: {show(a)}\nAPI B: {show(b)}\n"
            'Reply with JSON: {"same": true or false, "reason": "one sentence"}',
        },
    ]


def _validate_verdict(value: Any) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("same"), bool):
        raise ValueError('expected {"same": true|false, "reason": "..."} with a boolean "same"')
    return {"same": value["same"], "reason": str(value.get("reason", ""))}


def candidate_pairs(vectors: np.ndarray, owners: list[str], low: float, k: int, block: int = 1024) -> list[tuple[float, int, int]]:
    """(similarity, i, j) with i < j, different owners, similarity >= low, j among i's top-k (or i among j's)."""
    pairs: dict[tuple[int, int], float] = {}
    owner_ids = np.unique(np.asarray(owners), return_inverse=True)[1]
    n = len(vectors)
    for start in range(0, n, block):
        sims = vectors[start : start + block] @ vectors.T
        rows = np.arange(start, min(start + block, n))
        sims[np.arange(len(rows)), rows] = -np.inf
        sims[owner_ids[rows][:, None] == owner_ids[None, :]] = -np.inf
        top = min(k, n - 1) if n > 1 else 0
        if top <= 0:
            continue
        idx = np.argpartition(-sims, top - 1, axis=1)[:, :top]
        for r, row in enumerate(rows):
            for j in idx[r]:
                s = float(sims[r, j])
                if s >= low:
                    a, b = (int(row), int(j)) if row < j else (int(j), int(row))
                    pairs[(a, b)] = s
    # Rounded so that float noise in the last bits cannot reorder ties between machines.
    return sorted(((round(s, 6), a, b) for (a, b), s in pairs.items()), key=lambda t: (-t[0], t[1], t[2]))


def join(keys: list[str], owners: list[str], accepted: list[tuple[int, int]], max_size: int) -> dict[str, str]:
    parent = list(range(len(keys)))
    members = {i: {i} for i in range(len(keys))}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in accepted:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        merged = members[ra] | members[rb]
        if len(merged) > max_size or len({owners[i] for i in merged}) < len(merged):
            continue
        parent[rb] = ra
        members[ra] = merged
        del members[rb]
    groups = sorted(sorted(keys[i] for i in m) for m in members.values() if len(m) > 1)
    return {key: f"g{n:05d}" for n, group in enumerate(groups) for key in group}


def run_groups(pool: Pool, config: dict, client, offline: bool) -> tuple[dict, dict]:
    """Result: {"assign": {api_key: group id} or None (keep the pool's), "verified": [...]}."""
    cfg = config["groups"]
    existing = pool.groups()
    if existing and not cfg["regroup"]:
        return {"assign": None, "verified": []}, {
            "mode": "kept the pool's groups", "groups": len(existing),
            "grouped APIs": sum(len(v) for v in existing.values()),
        }
    keys = sorted(k for k, a in pool.apis.items() if a.documented)
    owners = [pool.apis[k].tool_key for k in keys]
    vectors = embed([_api_text(pool, k) for k in keys], config, client, progress=True)
    pairs = candidate_pairs(vectors, owners, cfg["verify_threshold"], k=2 * cfg["max_size"])
    sure = [(a, b) for s, a, b in pairs if s >= cfg["same_threshold"]]
    borderline = [(a, b) for s, a, b in pairs if s < cfg["same_threshold"]]
    verified = []
    accepted_borderline: set[tuple[int, int]] = set()
    failures = []
    if borderline and not offline:
        requests = [
            {"messages": _verify_prompt(pool, keys[a], keys[b]), "model": config["llm"]["model"],
             "validate": _validate_verdict, "max_reasks": config["llm"]["max_reasks"],
             "params": {"temperature": config["llm"]["temperature"], "max_tokens": 200}}
            for a, b in borderline
        ]
        for (a, b), answer in zip(borderline, client.chat_json_many(requests, desc="b: verify pairs")):
            if answer.ok:
                verified.append([keys[a], keys[b], answer.value["same"]])
                if answer.value["same"]:
                    accepted_borderline.add((a, b))
            else:
                failures.append({"stage": "groups", "item": f"{keys[a]} ~ {keys[b]}", "error": answer.error})
    accepted = [(a, b) for s, a, b in pairs if (a, b) in accepted_borderline or s >= cfg["same_threshold"]]
    assign = join(keys, owners, accepted, cfg["max_size"])
    report = {
        "mode": "embedding similarity" + ("" if offline else " + LLM verification"),
        "APIs embedded": len(keys), "pairs at or above same_threshold": len(sure),
        "borderline pairs": len(borderline),
        "borderline pairs verified same": len(accepted_borderline),
        "borderline pairs left unverified (offline)" if offline else "verification failures":
            len(borderline) if offline else len(failures),
        "groups": len(set(assign.values())), "grouped APIs": len(assign),
    }
    return {"assign": assign, "verified": verified, "failures": failures}, report


def apply_groups(pool: Pool, result: dict) -> None:
    if result["assign"] is None:
        return
    for api in pool.apis.values():
        api.func = result["assign"].get(api.key)
