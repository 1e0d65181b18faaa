"""Offline synthesis (llm.model=none) from a small harvested PEToolBench pool: the instances,
the three kinds of history, the SFT/DPO files, reproducibility and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import synth_fixtures as fx
from petool_jax.petoolbench import split_instruction, split_tool_name
from synth.config import load_synth_config
from synth.pipeline import run_pipeline

SETTING_KEYS = {"p": "instruction_preferred", "r": "instruction_ratings", "c": "instruction_chronological"}
RELEASED_KEYS = [
    "query", "instruction_preferred", "instruction_ratings", "instruction_chronological", "apis_candidate",
    "api_call_ground_truth", "api_ground_truth", "func", "apis_same_func", "tool_comb", "num_tools_combined",
    "history_length", "entry_id",
]


def run(tmp: Path, name: str, **extra) -> tuple[Path, dict]:
    pool = tmp / "pool.json"
    if not pool.exists():
        fx.write_petoolbench_pool(pool)
    out = tmp / name
    summary = run_pipeline(load_synth_config(None, fx.offline_overrides(str(pool), out, **extra)))
    return out, summary


def load(out: Path, name: str):
    return json.loads((out / name).read_text(encoding="utf-8"))


def tool_of(full_name: str) -> str:
    category, tool, _ = split_tool_name(full_name)
    return f"<{category}>.<{tool}>"


@pytest.fixture(scope="module")
def unscrubbed(tmp_path_factory):
    """One run with every built instance kept in train (no scrubbing), 30 users."""
    return run(tmp_path_factory.mktemp("synth"), "out", num_users=30,
               **{"quality.scrub_test_queries_from_train": "false"})


def test_every_instance_is_well_formed(unscrubbed):
    out, summary = unscrubbed
    test, train = load(out, "user_entries_test.json"), load(out, "user_entries_train.json")
    manifest = {r["entry_id"]: r for r in load(out, "manifest.json")}
    assert summary["train"] == len(train) and summary["test"] == len(test)
    assert len(test) == round(0.3 * (len(test) + len(train)))
    assert len(train) + len(test) >= 60  # 30 users x up to 3 groups each
    for entry in test + train:
        assert list(entry) == RELEASED_KEYS
        candidates = json.loads(entry["apis_candidate"])
        names = [c["tool_name"] for c in candidates]
        assert len(names) == 10 and len(set(names)) == 10
        truth = entry["api_call_ground_truth"]
        assert truth["tool_name"] in names
        # The ground truth is the user's preferred tool of the entry's functionality group.
        assert tool_of(truth["tool_name"]) == manifest[entry["entry_id"]]["preferred_tool"]
        group = {f"<{d['category_name']}>.<{d['tool_name']}>.<{d['api_name']}>" for d in entry["apis_same_func"]}
        assert truth["tool_name"] in group and group <= set(names)
        assert entry["func"] == manifest[entry["entry_id"]]["func"]
        assert entry["num_tools_combined"] == str(len(entry["tool_comb"]))
        for key in SETTING_KEYS.values():
            assert entry[key].startswith("\nYour task is to use a tool")
            assert entry[key].endswith("please generate the tool call. \nBegin!\n\n")
            assert entry["apis_candidate"] in entry[key]


def _users(out: Path) -> dict:
    return {u["user_id"]: set(u["preferred_tools"]) for u in load(out, "users.json")}


def test_histories_have_the_released_structure(unscrubbed):
    """Exact invariants of the release (synth/histories.py) on every synthesized entry."""
    out, _ = unscrubbed
    users = _users(out)
    manifest = {r["entry_id"]: r for r in load(out, "manifest.json")}
    entries = load(out, "user_entries_test.json") + load(out, "user_entries_train.json")
    visible = {"p": 0, "r": 0}
    for entry in entries:
        row = manifest[entry["entry_id"]]
        preferred = users[row["user_id"]]
        truth_tool = row["preferred_tool"]
        truth_api = entry["api_call_ground_truth"]["tool_name"]
        group_tools = {f"<{d['category_name']}>.<{d['tool_name']}>" for d in entry["apis_same_func"]}
        rivals = group_tools - {truth_tool}
        assert rivals and not rivals & preferred

        p = split_instruction(entry["instruction_preferred"])[1]
        p_tools = [tool_of(h["tool_call"]["tool_name"]) for h in p]
        assert set(p_tools) <= preferred and not set(p_tools) & rivals and all("rating" not in h for h in p)
        assert 2 <= len(p) <= 8
        visible["p"] += truth_tool in p_tools

        r = split_instruction(entry["instruction_ratings"])[1]
        zero = [h for h in r if h["rating"] == 0]
        one = [h for h in r if h["rating"] == 1]
        assert len(zero) + len(one) == len(r) <= 8
        # Rated 0: calls of ONE rival, one per API; rated 1: the end of the p history.
        assert len({tool_of(h["tool_call"]["tool_name"]) for h in zero}) == 1
        assert tool_of(zero[0]["tool_call"]["tool_name"]) in rivals
        assert len({h["tool_call"]["tool_name"] for h in zero}) == len(zero) <= 5
        strip = [{k: v for k, v in h.items() if k != "rating"} for h in one]
        assert sorted(map(json.dumps, strip)) == sorted(map(json.dumps, p[len(p) - len(one):]))
        visible["r"] += truth_tool in [tool_of(h["tool_call"]["tool_name"]) for h in one]

        c = split_instruction(entry["instruction_chronological"])[1]
        # c: exactly r's calls, rated 0 first (the rival's API order), then p's end in p's order.
        assert c[len(zero):] == p[len(p) - len(one):]
        assert sorted(map(json.dumps, c[:len(zero)])) == sorted(
            json.dumps({k: v for k, v in h.items() if k != "rating"}) for h in zero)

        for h in p + r + c:
            assert h["tool_call"]["tool_name"] != truth_api  # never the ground-truth API itself
        assert entry["query"] not in {h["instruction"] for h in p + one}
    # Both shown and hidden preferred tools occur, and r never shows more than p.
    assert 0 < visible["r"] <= visible["p"] < len(entries)


def test_sft_and_dpo_files_agree_with_the_train_entries(unscrubbed):
    out, _ = unscrubbed
    train = load(out, "user_entries_train.json")
    manifest = {r["entry_id"]: r for r in load(out, "manifest.json")}
    users = _users(out)
    for setting, key in SETTING_KEYS.items():
        sft = load(out, f"user_entries_sft_{setting}.json")
        dpo = load(out, f"user_entries_dpo_{setting}.json")
        assert len(sft) == len(dpo) == len(train)
        for entry, row, pair in zip(train, sft, dpo):
            truth = entry["api_call_ground_truth"]
            assert row == {"instruction": entry[key], "input": entry["query"], "output": json.dumps(truth, ensure_ascii=False)}
            assert pair["instruction"] == entry[key] and pair["input"] == entry["query"]
            assert pair["chosen"] == row["output"]
            rejected = json.loads(pair["rejected"])
            same_func = {f"<{d['category_name']}>.<{d['tool_name']}>.<{d['api_name']}>" for d in entry["apis_same_func"]}
            assert rejected["tool_name"] in same_func and rejected["tool_name"] != truth["tool_name"]
            assert tool_of(rejected["tool_name"]) not in users[manifest[entry["entry_id"]]["user_id"]]
            assert rejected["parameters"] == truth["parameters"]


def test_dataset_info_registers_every_file_in_llama_factory_format(unscrubbed):
    out, _ = unscrubbed
    info = load(out, "dataset_info.json")
    # The authors' dataset names, so their LLaMA-Factory YAMLs find our files.
    assert sorted(info) == sorted(f"user_entries_{kind}_{s}" for kind in ("sft", "dpo") for s in "prc")
    assert all(spec["file_name"] == f"{name}.json" for name, spec in info.items())
    for name, spec in info.items():
        rows = load(out, spec["file_name"])
        assert rows, name
        if "_dpo_" in name:
            assert spec["ranking"] is True
            assert spec["columns"] == {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
        else:
            assert "ranking" not in spec
            assert spec["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
        for row in rows:
            assert set(row) == set(spec["columns"].values())
            assert all(isinstance(v, str) and v for v in row.values())


def test_train_and_test_are_disjoint_and_leakage_is_reported(unscrubbed):
    out, _ = unscrubbed
    manifest = load(out, "manifest.json")
    queries = {e["entry_id"]: e["query"] for name in ("user_entries_test.json", "user_entries_train.json") for e in load(out, name)}
    by_split = {"train": set(), "test": set()}
    for row in manifest:
        by_split[row["split"]].add((row["user_id"], queries[row["entry_id"]]))
    assert by_split["train"] and by_split["test"] and not by_split["train"] & by_split["test"]
    # Without scrubbing, test queries do occur in training data; the report counts exactly those.
    train = load(out, "user_entries_train.json")
    seen = {e["query"] for e in train} | {
        h["instruction"] for e in train for k in SETTING_KEYS.values() for h in split_instruction(e[k])[1]}
    leaked = sum(e["query"] in seen for e in load(out, "user_entries_test.json"))
    assert leaked > 0
    stats = (out / "stats.md").read_text()
    assert f"| test queries found in training data | {leaked} |" in stats


def test_scrubbing_removes_test_queries_from_training_data(tmp_path):
    out, _ = run(tmp_path, "scrubbed", num_users=30)
    test, train = load(out, "user_entries_test.json"), load(out, "user_entries_train.json")
    assert train and test
    banned = {e["query"] for e in test}
    for entry in train:
        assert entry["query"] not in banned
        for key in SETTING_KEYS.values():
            history = split_instruction(entry[key])[1]
            assert len(history) >= 4 and not banned & {h["instruction"] for h in history}
    assert "| test queries found in training data | 0 |" in (out / "stats.md").read_text()


def test_same_seed_gives_byte_identical_outputs(tmp_path):
    first, _ = run(tmp_path, "a")
    second, _ = run(tmp_path, "b")
    names = sorted(p.name for p in first.iterdir() if p.is_file())
    assert {"stats.md", "user_entries_test.json", "user_entries_dpo_c.json", "history_lengths.png"} <= set(names)
    assert names == sorted(p.name for p in second.iterdir() if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other, _ = run(tmp_path, "c", seed=8)
    assert (other / "user_entries_test.json").read_bytes() != (first / "user_entries_test.json").read_bytes()


def test_rerun_reuses_every_stage_and_rewrites_the_same_files(tmp_path):
    out, first = run(tmp_path, "out")
    assert set(first["stages"].values()) == {"ran"}
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    _, second = run(tmp_path, "out")
    assert second["stages"] == {k: "cached" for k in ("pool", "understanding", "groups", "preferences", "instructions")}
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # A changed stage setting recomputes that stage and the ones after it only.
    _, third = run(tmp_path, "out", **{"preferences.jitter": 0.2})
    assert third["stages"] == {"pool": "cached", "understanding": "cached", "groups": "cached",
                               "preferences": "ran", "instructions": "ran"}


def test_holdout_groups_never_reach_training(tmp_path):
    out, _ = run(tmp_path, "held", num_users=30, holdout_groups=0.5,
                 **{"quality.scrub_test_queries_from_train": "false"})
    manifest = load(out, "manifest.json")
    train_funcs = {r["func"] for r in manifest if r["split"] == "train"}
    test_funcs = {r["func"] for r in manifest if r["split"] == "test"}
    test_only = test_funcs - train_funcs
    assert len(test_only) >= 3  # half of the 6 groups are held out
    assert "| held-out groups (test only) | 3 |" in (out / "stats.md").read_text()
    for row in manifest:
        if row["func"] in test_only:
            assert row["split"] == "test"
