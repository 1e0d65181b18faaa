"""Split a released PEToolBench file by entry into a pool half and an evaluation half.

The released test entries are the only real data at hand: synthesize from tools harvested
from one half (`tool_pool=pool_half.json`), evaluate and compare (`petool synth compare
--reference eval_half.json`) on the other, and never tune on the evaluation half. The split
is by entry, the halves are disjoint, and the same seed gives the same halves (a seeded
permutation of the entries ordered by entry_id, so the file's own order does not matter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petool_jax import petoolbench as pb
from petool_jax.files import write_json


def _order(entry_id) -> tuple:
    return (0, entry_id, "") if isinstance(entry_id, int) else (1, 0, str(entry_id))


def split_halves(entries: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(pool half, evaluation half); the pool half gets len // 2 entries."""
    ordered = sorted(entries, key=lambda e: _order(e["entry_id"]))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    pool_ids = {ordered[int(i)]["entry_id"] for i in perm[: len(ordered) // 2]}
    pool = [e for e in ordered if e["entry_id"] in pool_ids]
    evaluation = [e for e in ordered if e["entry_id"] not in pool_ids]
    return pool, evaluation


def write_halves(path: str | Path, out_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write pool_half.json and eval_half.json of a released file into out_dir; returns their paths."""
    pool, evaluation = split_halves(pb.load_entries(path), seed)
    out_dir = Path(out_dir)
    pool_path, eval_path = out_dir / "pool_half.json", out_dir / "eval_half.json"
    write_json(pool_path, pool, indent=None)
    write_json(eval_path, evaluation, indent=None)
    return pool_path, eval_path
