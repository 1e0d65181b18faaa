"""A release file split by ENTRY into a pool half and an evaluation half.

The pool half supplies the tool pool (documents, functionality groups, example
instructions) that synthesis builds the training data from; the evaluation half is only
ever evaluated. The split is a seeded permutation of the entries, so it does not depend on
the file's order of users or categories; `check_disjoint` is asserted before anything is
trained, and `leaked_rows` finds training rows whose query or history holds an evaluation
query (they are dropped).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from petool_jax import petoolbench as pb
from petool_jax.errors import UserError


def split_entries(entries: list[dict], seed: int, pool_fraction: float = 0.5) -> tuple[list[dict], list[dict]]:
    if not 0.0 < pool_fraction < 1.0:
        raise UserError(f"split.pool_fraction {pool_fraction}: must be between 0 and 1")
    ids = [e["entry_id"] for e in entries]
    if len(set(map(str, ids))) != len(ids):
        raise UserError("the release file has repeated entry_id values; the split is by entry and needs them unique")
    if len(entries) < 2:
        raise UserError(f"the release file has {len(entries)} entries; the split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(entries))
    cut = min(max(1, round(len(entries) * pool_fraction)), len(entries) - 1)
    pool = [entries[i] for i in sorted(order[:cut])]
    evaluation = [entries[i] for i in sorted(order[cut:])]
    check_disjoint(pool, evaluation)
    return pool, evaluation


def check_disjoint(pool: list[dict], evaluation: list[dict]) -> None:
    """No entry (by id, nor by user query + ground truth) is in both halves."""
    key = lambda e: (e["query"], json.dumps(e["api_call_ground_truth"], sort_keys=True))  # noqa: E731
    shared_ids = {str(e["entry_id"]) for e in pool} & {str(e["entry_id"]) for e in evaluation}
    shared = {key(e) for e in pool} & {key(e) for e in evaluation}
    if shared_ids or shared:
        raise UserError(f"pool and evaluation halves share {len(shared_ids)} entry ids and {len(shared)} "
                        "(query, call) pairs")


def write_split(release: pathlib.Path, out_dir: pathlib.Path, seed: int, pool_fraction: float) -> dict:
    """Write pool_half.json and eval_half.json (the release's format) and split.json (the ids)."""
    from eval.atomic import write_json_atomic

    entries = pb.load_entries(release)
    pool, evaluation = split_entries(entries, seed, pool_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "pool_half.json", pool)
    write_json_atomic(out_dir / "eval_half.json", evaluation)
    info = {"release": str(release), "entries": len(entries), "seed": seed, "pool_fraction": pool_fraction,
            "pool_ids": [e["entry_id"] for e in pool], "eval_ids": [e["entry_id"] for e in evaluation]}
    write_json_atomic(out_dir / "split.json", info)
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
