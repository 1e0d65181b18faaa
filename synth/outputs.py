"""The files a synthesis run leaves in output_dir (names as in the authors' release and
LLaMA-Factory's dataset registry), all written atomically:

user_entries_test.json / user_entries_train.json   entries with the released test file's keys
user_entries_sft_{p,r,c}.json    {instruction: the setting's system prompt, input: query,
                                 output: the ground-truth call} from the TRAIN entries
user_entries_dpo_{p,r,c}.json    {instruction, input, chosen: the ground-truth call,
                                 rejected: the same parameters on a functionally equivalent
                                 tool the user does not prefer}
dataset_info.json               LLaMA-Factory registry (alpaca columns; ranking for DPO)
users.json, manifest.json       user profiles; entry_id -> user, split, group, preferred tool
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth.instances import INSTRUCTION_KEYS
from petool_jax.files import write_json
from synth.prompts import tool_call_json

# The names in the authors' dataset_sft/dataset_info.json and dataset_dpo/dataset_info.json, so
# their LLaMA-Factory YAMLs (dataset: user_entries_sft_p, ...) find our files.
DATASET_PREFIX = "user_entries"


def sft_rows(entries: list[dict], setting: str) -> list[dict]:
    return [
        {
            "instruction": e[INSTRUCTION_KEYS[setting]],
            "input": e["query"],
            "output": tool_call_json(e["api_call_ground_truth"]["tool_name"], e["api_call_ground_truth"]["parameters"]),
        }
        for e in entries
    ]


def dpo_rows(entries: list[dict], metas: list[dict], setting: str, seed: int) -> list[dict]:
    rows = []
    for e, m in zip(entries, metas):
        # Seeded by entry id, not position, so adding entries does not reshuffle the others.
        rng = np.random.default_rng([seed, 11, int(e["entry_id"])])
        rejected_tool = m["rivals"][int(rng.integers(len(m["rivals"])))]
        truth = e["api_call_ground_truth"]
        rows.append({
            "instruction": e[INSTRUCTION_KEYS[setting]],
            "input": e["query"],
            "chosen": tool_call_json(truth["tool_name"], truth["parameters"]),
            "rejected": tool_call_json(rejected_tool, truth["parameters"]),
        })
    return rows


def dataset_info(settings: list[str]) -> dict:
    info = {}
    for s in settings:
        info[f"{DATASET_PREFIX}_sft_{s}"] = {
            "file_name": f"user_entries_sft_{s}.json",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
    for s in settings:
        info[f"{DATASET_PREFIX}_dpo_{s}"] = {
            "file_name": f"user_entries_dpo_{s}.json",
            "ranking": True,
            "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
        }
    return info


def write_dataset_files(out: Path, train: list[dict], train_metas: list[dict], test: list[dict], test_metas: list[dict],
                  users: list[dict], config: dict) -> list[str]:
    """Write every dataset file; returns the names written."""
    settings = config["settings"]
    written = []

    def put(name: str, obj) -> None:
        write_json(out / name, obj)
        written.append(name)

    put("user_entries_test.json", test)
    put("user_entries_train.json", train)
    for s in settings:
        put(f"user_entries_sft_{s}.json", sft_rows(train, s))
    for s in settings:
        put(f"user_entries_dpo_{s}.json", dpo_rows(train, train_metas, s, config["seed"]))
    put("dataset_info.json", dataset_info(settings))
    put("users.json", users)
    manifest = [
        {"entry_id": e["entry_id"], "split": split, "user_id": m["user_id"], "func": m["func"],
         "preferred_tool": m["truth_tool"]}
        for split, es, ms in (("train", train, train_metas), ("test", test, test_metas))
        for e, m in zip(es, ms)
    ]
    put("manifest.json", sorted(manifest, key=lambda r: r["entry_id"]))
    return written
