"""Small training data in the authors' LLaMA-Factory SFT/DPO formats, with short prompts
so a tiny model trains on CPU in seconds. A user prefers one provider per functionality;
the history shows it."""

from __future__ import annotations

import json
import random

from petool_jax.petoolbench import render_instruction

HEAD = "\nUse the tool the user prefers.\nInteraction history is:\n"
TAIL = "\n\nTools:\n{tools}\nAnswer with one JSON line.\n"
GROUPS = {
    "weather": (["Sky", "Cloud", "Rain"], "city", ["Paris", "Rome", "Oslo", "Lima"]),
    "quote": (["Bull", "Bear", "Hawk"], "symbol", ["AAPL", "IBM", "SAP", "NIO"]),
    "music": (["Tune", "Beat", "Echo"], "q", ["jazz", "rock", "folk", "pop"]),
}


def tool_name(group, provider):
    return f"<{group}>.<{provider}>.<get>"


def call_text(group, provider, value):
    return json.dumps({"tool_name": tool_name(group, provider),
                       "parameters": {GROUPS[group][1]: value}})


def sft_records(n: int, seed: int = 0, history_len: int = 4) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        group = rng.choice(sorted(GROUPS))
        providers, param, values = GROUPS[group]
        preferred = rng.choice(providers)
        history = []
        for _ in range(history_len):
            value = rng.choice(values)
            history.append({"instruction": f"{group} for {value}",
                            "tool_call": json.loads(call_text(group, preferred, value))})
        tools = ", ".join(tool_name(group, p) for p in providers)
        value = rng.choice(values)
        records.append({"instruction": render_instruction(HEAD, history, TAIL.format(tools=tools)),
                        "input": f"{group} for {value}",
                        "output": call_text(group, preferred, value),
                        "rejected": call_text(group, next(p for p in providers if p != preferred), value)})
    return records


def write_sft(path, n, seed=0, history_len=4):
    rows = [{k: r[k] for k in ("instruction", "input", "output")} for r in sft_records(n, seed, history_len)]
    path.write_text(json.dumps(rows, indent=1))
    return path


def write_dpo(path, n, seed=0, history_len=4):
    rows = [{"instruction": r["instruction"], "input": r["input"], "chosen": r["output"],
             "rejected": r["rejected"]} for r in sft_records(n, seed, history_len)]
    path.write_text(json.dumps(rows, indent=1))
    return path


def make_train_world(root, stage: str, n: int, model_seed: int, data_seed: int):
    """A tiny random HF LLaMA at root/hf and `n` examples of the stage's data at root/<stage>.json."""
    from hf_fixtures import make_hf_model

    make_hf_model(root / "hf", "llama3.1", seed=model_seed)
    (write_sft if stage == "sft" else write_dpo)(root / f"{stage}.json", n, seed=data_seed)
    return root


def train_args(stage: str, world, out, *extra) -> list[str]:
    """`petool train <stage>` on make_train_world's model and data, exact fp32, no warmup/remat."""
    return ["train", stage, f"model={world / 'hf'}", f"data.train={world / f'{stage}.json'}", f"output_dir={out}",
            "max_seq_len=512", "dtype=float32", "param_dtype=float32", "warmup_ratio=0.0", "remat=none", *extra]


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
