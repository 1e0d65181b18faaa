"""A release file split by ENTRY into a pool half and an evaluation half.

The pool half supplies the tool pool (documents, functionality groups, example
instructions) that synthesis builds the training data from; the evaluation half is only
ever evaluated. The split is a seeded permutation of the entries, so it does not depend on
the file's order of users or categories. Entries that share a query (the release repeats
some for different users) go to the same half. `check_disjoint` is asserted before anything
is trained, and `leaked_rows` finds training rows whose query or history holds an
evaluation query (`scrub_rows` drops such rows and cuts such history calls: the pool half's
histories quote many of them).
"""

from __future__ import annotations

import pathlib

import numpy as np

from petool_jax import petoolbench as pb
from petool_jax.errors import UserError


def _query_key(entry: dict) -> str:
    return " ".join(str(entry.get("query", "")).lower().split())


def split_entries(entries: list[dict], seed: int, pool_fraction: float = 0.5) -> tuple[list[dict], list[dict]]:
    """(pool, evaluation). Entries that share a query (the release repeats some queries for
    different users) stay together, so no evaluation query is in the pool half."""
    if not 0.0 < pool_fraction < 1.0:
        raise UserError(f"split.pool_fraction {pool_fraction}: must be between 0 and 1")
    ids = [e["entry_id"] for e in entries]
    if len(set(map(str, ids))) != len(ids):
        raise UserError("the release file has repeated entry_id values; the split is by entry and needs them unique")
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        groups.setdefault(_query_key(entry), []).append(i)
    keys = sorted(groups)
    if len(keys) < 2:
        raise UserError(f"the release file has {len(keys)} distinct queries; the split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(keys))
    target = len(entries) * pool_fraction
    pool_idx: list[int] = []
    for n, k in enumerate(order):
        if len(pool_idx) >= target or n == len(keys) - 1:
            break
        pool_idx += groups[keys[k]]
    chosen = set(pool_idx)
    pool = [e for i, e in enumerate(entries) if i in chosen]
    evaluation = [e for i, e in enumerate(entries) if i not in chosen]
    check_disjoint(pool, evaluation)
    return pool, evaluation


def check_disjoint(pool: list[dict], evaluation: list[dict]) -> None:
    """No entry id and no query is in both halves."""
    shared_ids = {str(e["entry_id"]) for e in pool} & {str(e["entry_id"]) for e in evaluation}
    shared = {_query_key(e) for e in pool} & {_query_key(e) for e in evaluation}
    if shared_ids or shared:
        raise UserError(f"pool and evaluation halves share {len(shared_ids)} entry ids and {len(shared)} queries")


def write_split(release: pathlib.Path, out_dir: pathlib.Path, seed: int, pool_fraction: float) -> dict:
    """Write pool_half.json and eval_half.json (the release's format) and split.json (the ids)."""
    from petool_jax.files import write_json

    entries = pb.load_entries(release)
    pool, evaluation = split_entries(entries, seed, pool_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "pool_half.json", pool)
    write_json(out_dir / "eval_half.json", evaluation)
    info = {"release": str(release), "entries": len(entries), "seed": seed, "pool_fraction": pool_fraction,
            "pool_ids": [e["entry_id"] for e in pool], "eval_ids": [e["entry_id"] for e in evaluation]}
    write_json(out_dir / "split.json", info)
    return info


def evaluation_queries(evaluation: list[dict]) -> set[str]:
    return {e["query"].strip() for e in evaluation if isinstance(e.get("query"), str)}


def _row_texts(row: dict) -> list[str]:
    texts = [row.get("input") or ""]
    try:
        _, history, _ = pb.split_instruction(row.get("instruction") or "")
    except ValueError:
        history = []
    texts += [h.get("instruction") or "" for h in history if isinstance(h, dict)]
    return [t.strip() for t in texts if isinstance(t, str)]


def leaked_rows(rows: list[dict], queries: set[str]) -> list[int]:
    """Indices of LLaMA-Factory rows whose query or a history instruction is an evaluation query."""
    return [i for i, row in enumerate(rows) if any(t in queries for t in _row_texts(row))]


def scrub_rows(rows: list[dict], queries: set[str]) -> tuple[list[dict], dict]:
    """Training rows without evaluation queries: a row whose own query is one is dropped; a
    history call whose instruction is one is cut out of the row's prompt (as synth scrubs its
    own test queries from training histories). The release reuses instruction texts across
    users, so the pool half's histories quote many evaluation queries."""
    kept, dropped, cut = [], 0, 0
    for row in rows:
        if (row.get("input") or "").strip() in queries:
            dropped += 1
            continue
        try:
            head, history, tail = pb.split_instruction(row.get("instruction") or "")
        except ValueError:
            kept.append(row)
            continue
        clean = [h for h in history if not (isinstance(h, dict) and (h.get("instruction") or "").strip() in queries)]
        if len(clean) != len(history):
            cut += len(history) - len(clean)
            row = {**row, "instruction": pb.render_instruction(head, clean, tail)}
        kept.append(row)
    return kept, {"rows": len(rows), "dropped_query_is_an_evaluation_query": dropped,
                  "history_calls_cut": cut}
