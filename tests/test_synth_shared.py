"""Synthesis against the real released test entries in ../shared (skipped without it)."""

from __future__ import annotations

import gzip
import json

import pytest

from petool_jax import petoolbench as pb
from synth.config import load_synth_config
from synth.pipeline import run_pipeline
from synth.prompts import system_prompt
from synth.sources import load_pool


@pytest.fixture(scope="module")
def test_dev(shared_dir):
    return shared_dir / "petoolbench" / "test_dev.json.gz"


def test_templates_rebuild_every_released_prompt_byte_for_byte(test_dev):
    with gzip.open(test_dev, "rt", encoding="utf-8") as f:
        entries = json.load(f)
    assert len(entries) == 612
    for entry in entries:
        for setting, key in pb.INSTRUCTION_KEYS.items():
            history = pb.split_instruction(entry[key])[1]
            assert system_prompt(setting, history, entry["apis_candidate"]) == entry[key], (entry["entry_id"], setting)


def released_counts(path) -> dict:
    """What the harvest must find, counted straight from the raw entries (TESTS helper: no pins)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        entries = json.load(f)

    def full(doc):
        return f"<{doc['category_name']}>.<{doc['tool_name']}>.<{doc['api_name']}>"

    documented = {c["tool_name"] for e in entries for c in json.loads(e["apis_candidate"])}
    examples, seen = set(), set()
    for e in entries:
        examples.add((e["api_call_ground_truth"]["tool_name"], e["query"]))
        for key in pb.INSTRUCTION_KEYS.values():
            for call in pb.split_instruction(e[key])[1]:
                seen.add(call["tool_call"]["tool_name"])
                examples.add((call["tool_call"]["tool_name"], call["instruction"]))
        for doc in e["apis_same_func"] + [e["api_ground_truth"]]:
            examples.add((full(doc), doc["Example"]["Scenario"]))
    return {"tools": len({pb.split_tool_name(n)[:2] for n in documented}), "apis": len(documented | seen),
            "documented": len(documented), "examples": len(examples), "groups": len({e["func"] for e in entries}),
            "grouped": len({full(d) for e in entries for d in e["apis_same_func"]})}


def test_harvest_of_the_released_entries(test_dev):
    pool = load_pool([str(test_dev)])
    expected = released_counts(test_dev)
    assert (len(pool.tools), len(pool.apis)) == (expected["tools"], expected["apis"]) == (667, 1591)
    assert sum(a.documented for a in pool.apis.values()) == expected["documented"]
    assert sum(len(a.examples) for a in pool.apis.values()) == expected["examples"]
    groups = pool.groups()
    assert (len(groups), sum(len(v) for v in groups.values())) == (expected["groups"], expected["grouped"])
    # Every released ground-truth call is a valid call of its documented API.
    assert "examples dropped: parameters invalid for the API schema" not in pool.report


def test_offline_synthesis_from_the_released_entries(test_dev, tmp_path):
    config = load_synth_config(None, [f"tool_pool={test_dev}", f"output_dir={tmp_path / 'out'}", "num_users=40",
                                "llm.model=none", "embedding.model=local-hash", "history.min_len=5"])
    summary = run_pipeline(config)
    assert summary["dropped by checks"] == 0 and summary["users"] == 40
    test = pb.load_entries(tmp_path / "out" / "user_entries_test.json")
    assert len(test) == summary["test"] > 0
    assert all(len(pb.candidates(e)) == 10 for e in test)
