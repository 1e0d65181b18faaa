"""Random choice among candidates: the floor every model in the demo is compared with.

eval/ has the rule baseline, API models and JAX models; this runner plugs into the same
run loop (eval.run.run_eval(..., runner=...)), so its predictions are written, resumed and
scored exactly like any model's. It calls one candidate drawn uniformly (seeded by entry
and setting, so the draw does not depend on batch order) with the candidate's required
parameters at their documented defaults, as the rule baseline does. Its expected Tool Acc
is the mean of 1 / (number of candidates) over the entries.
"""

from __future__ import annotations

import json
import zlib

import numpy as np

from eval.predictions import prediction_row
from eval.runners.task import EvalTask, chunks
from petool_jax import petoolbench as pb


def _rng(seed: int, entry_id, setting: str) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.default_rng([seed, zlib.crc32(f"{entry_id}\x00{setting}".encode("utf-8"))])


def random_call(entry: dict, setting: str, seed: int) -> dict:
    candidates = pb.candidates(entry)
    if not candidates:
        return {"tool_name": "", "parameters": {}}
    chosen = candidates[int(_rng(seed, entry["entry_id"], setting).integers(len(candidates)))]
    parameters = {p["name"]: p.get("default", "") for p in chosen.get("required_parameters") or []
                  if isinstance(p, dict) and "name" in p}
    return {"tool_name": chosen["tool_name"], "parameters": parameters}


def expected_random_tool_acc(entries: list[dict]) -> float:
    """E[Tool Acc] of a uniform draw: the truth is one of the entry's distinct candidates."""
    if not entries:
        return 0.0
    return float(np.mean([1.0 / len(pb.candidates(e)) if pb.candidates(e) else 0.0 for e in entries]))


def expected_provider_chance(entries: list[dict]) -> float:
    """P(preferred provider) when a model knows the functionality but not the user: a uniform
    pick among the candidates that are functionally equivalent to the truth."""
    shares = []
    for e in entries:
        names = {c["tool_name"] for c in pb.candidates(e)}
        same = pb.same_func_tool_names(e) & names
        shares.append(1.0 / len(same) if same else 0.0)
    return float(np.mean(shares)) if shares else 0.0


class RandomRunner:
    def __init__(self, seed: int = 0):
        self.seed = seed
        self.name = f"random:{seed}"

    def plan(self, tasks: list[EvalTask], batch_size: int):
        return chunks(tasks, batch_size)

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        return [prediction_row(t.entry["entry_id"], t.setting,
                               json.dumps(random_call(t.entry, t.setting, self.seed), ensure_ascii=False))
                for t in batch]
