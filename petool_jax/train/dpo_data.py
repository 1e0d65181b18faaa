"""Preference pairs -> tokenized prompt / chosen / rejected -> prefix-shared batches.

Sources: LLaMA-Factory DPO files (instruction, input, chosen, rejected) and PEToolBench
entries, where chosen = the ground-truth call and rejected is drawn from a configurable mix
of negatives: the same parameters on a functionally equivalent tool the user does not prefer
(`same_func`, the paper's pairs), a candidate with another functionality (`other_func`), or
the right tool with corrupted parameters (`corrupt_params`).

Each pair becomes one sequence `prompt | chosen | rejected` (branch ids 0 / 1 / 2, positions
restarting after the prompt; attention.prefix_shared_mask keeps the responses apart), so
the ~2.6k-token prompt is encoded once for both answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import random

import numpy as np

from petool_jax import petoolbench
from petool_jax.chat import ChatRenderer
from petool_jax.errors import UserError
from petool_jax.files import read_records
from petool_jax.train.llama_factory import make_renderer
from petool_jax.train.records import require
from petool_jax.train.sft_data import (Batcher, cached_tokenize, detect_format, fingerprint, format_call,
                                       seq_bucket)

LLAMAFACTORY_DPO_KEYS = ("instruction", "input", "chosen", "rejected")
NEGATIVE_KINDS = ("same_func", "other_func", "corrupt_params")


def _required_defaults(tool: dict) -> dict:
    return {p["name"]: p.get("default", "") for p in tool.get("required_parameters", [])}


def make_negative(entry: dict, kind: str, rng: random.Random) -> str | None:
    """A rejected call for a PEToolBench entry, or None when this kind has no candidate."""
    truth = entry["api_call_ground_truth"]
    tools = petoolbench.candidates(entry)
    same = petoolbench.same_func_tool_names(entry)
    if kind == "same_func":
        names = sorted(n for n in same if n != truth["tool_name"])
        if not names:
            names = sorted(t["tool_name"] for t in tools if t["tool_name"] != truth["tool_name"]
                           and petoolbench.split_tool_name(t["tool_name"])[2]
                           == petoolbench.split_tool_name(truth["tool_name"])[2])
        return format_call({"tool_name": rng.choice(names), "parameters": truth["parameters"]}) if names else None
    if kind == "other_func":
        others = sorted((t for t in tools if t["tool_name"] not in same and t["tool_name"] != truth["tool_name"]),
                        key=lambda t: t["tool_name"])
        if not others:
            return None
        tool = rng.choice(others)
        return format_call({"tool_name": tool["tool_name"], "parameters": _required_defaults(tool)})
    if kind == "corrupt_params":
        params = dict(truth["parameters"])
        if not params:
            return None
        key = rng.choice(sorted(params))
        if rng.random() < 0.5 and len(params) > 1:
            del params[key]
        else:
            params[key] = f"{params[key]}_x" if isinstance(params[key], str) else "invalid"
        return format_call({"tool_name": truth["tool_name"], "parameters": params})
    raise UserError(f"dpo.negatives: unknown kind {kind!r} ({NEGATIVE_KINDS})")


def load_pairs(paths: list[str], settings: list[str], negatives: dict, seed: int, max_samples: int = 0,
               declared_format: str = "auto") -> list[dict]:
    """[{"id", "instruction", "query", "chosen", "rejected"}]."""
    weights = {k: float(v) for k, v in negatives.items()}
    bad = sorted(set(weights) - set(NEGATIVE_KINDS))
    if bad or sum(weights.values()) <= 0:
        raise UserError(f"dpo.negatives {negatives}: weights over {NEGATIVE_KINDS}, summing above 0")
    kinds = [k for k in NEGATIVE_KINDS if weights.get(k, 0) > 0]
    pairs: list[dict] = []
    for path in paths:
        records = read_records(path)
        if max_samples:
            records = records[:max_samples]
        for i, record in enumerate(records):
            if detect_format(record, declared_format) == "llamafactory":
                require(record, LLAMAFACTORY_DPO_KEYS, path, i)
                pairs.append({"id": f"{pathlib.Path(path).name}:{i}", "instruction": record["instruction"],
                              "query": record["input"], "chosen": record["chosen"],
                              "rejected": record["rejected"]})
                continue
            require(record, ("entry_id", "query", "api_call_ground_truth", "apis_candidate"), path, i)
            for setting in settings:
                key = petoolbench.INSTRUCTION_KEYS[setting]
                require(record, (key,), path, i)
                rng = random.Random(f"{seed}:{record['entry_id']}:{setting}")
                kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
                rejected = make_negative(record, kind, rng)
                for fallback in NEGATIVE_KINDS:  # this entry lacks that kind: try the others
                    if rejected is not None:
                        break
                    rejected = make_negative(record, fallback, rng)
                if rejected is None:
                    continue
                pairs.append({"id": f"{record['entry_id']}:{setting}", "instruction": record[key],
                              "query": record["query"],
                              "chosen": format_call(record["api_call_ground_truth"]), "rejected": rejected})
    if not pairs:
        raise UserError(f"no preference pairs in {paths}")
    return pairs


def tokenize_pair(renderer: ChatRenderer, pair: dict, prompt_format: str, max_seq_len: int) -> dict:
    """prompt ids, chosen ids, rejected ids (each response = what the template adds after the
    generation prompt, end token included); prompt + chosen + rejected fit max_seq_len after
    dropping the fewest OLDEST history entries."""

    def count(messages):
        prompt = len(renderer.prompt_ids(messages))
        return (len(renderer.full_ids(messages, pair["chosen"])) + len(renderer.full_ids(messages, pair["rejected"]))
                - prompt)

    messages, n_dropped = petoolbench.fit_instruction(pair["instruction"], pair["query"], count, max_seq_len,
                                                      prompt_format)
    prompt = renderer.prompt_ids(messages)
    chosen, _ = renderer.encode(messages, pair["chosen"])
    rejected, _ = renderer.encode(messages, pair["rejected"])
    chosen, rejected = chosen[len(prompt):], rejected[len(prompt):]
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected, "n_dropped": n_dropped,
            "fits": len(prompt) + len(chosen) + len(rejected) <= max_seq_len}


def tokenized_pairs(pairs: list[dict], paths: list[str], tokenizer, prompt_format: str, max_seq_len: int,
                    cache_dir: pathlib.Path, fingerprint_extra: dict, log=print):
    key = fingerprint(paths, tokenizer, {"prompt_format": prompt_format, "max_seq_len": max_seq_len,
                                          "kind": "dpo-v1", **fingerprint_extra})
    renderer = make_renderer(tokenizer, prompt_format)  # the chat template, or LLaMA-Factory's llama3
    return cached_tokenize(pairs, lambda p: tokenize_pair(renderer, p, prompt_format, max_seq_len),
                           cache_dir / f"dpo-{key}.arrow", "pairs", max_seq_len, log)


def pair_fingerprint(pairs: list[dict]) -> str:
    return hashlib.sha256(json.dumps(pairs, sort_keys=True).encode()).hexdigest()[:24]


@dataclasses.dataclass
class PairBatcher(Batcher):
    """Deterministic batches of pairs for step `step` (a pure function of the step; see Batcher).

    Each row holds up to `pairs_per_row` pairs (1 without packing). Arrays are
    [accumulation, micro_batch, ...]: tokens/positions/pair_ids/branch_ids [.., T]; for the
    chosen and rejected responses the positions whose logits predict them (`*_idx`), their
    targets and masks [.., P, K]; `pair_valid` and the pair's index in the data `pair_index`
    [.., P] (for precomputed reference log-probs). `n_tokens` and `n_head_positions` count
    the whole global batch, also when only local rows are built.
    """

    prompts: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]
    pairs_per_row: int = 1

    def __post_init__(self):
        if not self.packing:
            self.pairs_per_row = 1

    @property
    def max_per_row(self) -> int:
        return self.pairs_per_row

    def n_items(self) -> int:
        return len(self.prompts)

    def item_length(self, i: int) -> int:
        return len(self.prompts[i]) + len(self.chosen[i]) + len(self.rejected[i])

    def batch(self, step: int, layout: str = "shared", local=None) -> dict:
        """layout "shared": one `prompt | chosen | rejected` sequence per pair. layout
        "separate" (the textbook two-sequence form, for checks and benchmarks): {"chosen":
        batch of `prompt | chosen` rows, "rejected": batch of `prompt | rejected` rows}."""
        _, rows = self.rows_of_step(step)
        k = seq_bucket(max((max(len(self.chosen[i]), len(self.rejected[i])) for r in rows for i in r),
                           default=1), 1 << 30)
        if layout == "shared":
            out = self._fill(rows, k, use_chosen=True, use_rejected=True, local=local)
        elif layout == "separate":
            out = {"chosen": self._fill(rows, k, use_chosen=True, use_rejected=False, local=local),
                   "rejected": self._fill(rows, k, use_chosen=False, use_rejected=True, local=local)}
        else:
            raise ValueError(f"layout {layout!r}")
        out["rows"] = [row for row in rows if row]
        out["n_tokens"] = sum(self.item_length(i) for r in rows for i in r)
        out["n_head_positions"] = 2 * self.batch_size * self.pairs_per_row * k
        return out

    def _fill(self, rows, k: int, use_chosen: bool, use_rejected: bool, local=None) -> dict:
        def resp(i):
            return (self.chosen[i] if use_chosen else []), (self.rejected[i] if use_rejected else [])

        length = seq_bucket(max((sum(len(self.prompts[i]) + sum(map(len, resp(i))) for i in r) for r in rows),
                                default=1), self.max_seq_len)
        rows = self.local_part(rows, local)  # the length above is the whole batch's
        b, p = len(rows), self.pairs_per_row
        out = {name: np.zeros((b, length), np.int32) for name in ("tokens", "positions", "pair_ids", "branch_ids")}
        out["tokens"][:] = self.pad_id
        for side in ("chosen", "rejected"):
            out[f"{side}_idx"] = np.zeros((b, p, k), np.int32)
            out[f"{side}_targets"] = np.zeros((b, p, k), np.int32)
            out[f"{side}_mask"] = np.zeros((b, p, k), np.float32)
        out["pair_valid"] = np.zeros((b, p), np.float32)
        out["pair_index"] = np.zeros((b, p), np.int32)
        for r, row in enumerate(rows):
            at = 0
            for slot, i in enumerate(row):
                prompt = self.prompts[i]
                chosen, rejected = resp(i)
                n_p, n_c, n_r = len(prompt), len(chosen), len(rejected)
                span = slice(at, at + n_p + n_c + n_r)
                out["tokens"][r, span] = prompt + chosen + rejected
                out["positions"][r, span] = list(range(n_p + n_c)) + list(range(n_p, n_p + n_r))
                out["pair_ids"][r, span] = slot + 1
                out["branch_ids"][r, span] = [0] * n_p + [1] * n_c + [2] * n_r
                last_prompt = at + n_p - 1
                # Response token j is predicted at the previous token of its own branch; the
                # first token of both responses at the prompt's last token.
                for side, start, ids in (("chosen", at + n_p, chosen), ("rejected", at + n_p + n_c, rejected)):
                    n = len(ids)
                    if n == 0:
                        continue
                    out[f"{side}_idx"][r, slot, :n] = [last_prompt] + list(range(start, start + n - 1))
                    out[f"{side}_targets"][r, slot, :n] = ids
                    out[f"{side}_mask"][r, slot, :n] = 1.0
                out["pair_valid"][r, slot] = 1.0
                out["pair_index"][r, slot] = i
                at += n_p + n_c + n_r
        return self.reshape(out, local)
