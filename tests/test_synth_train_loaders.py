"""Synthesized files load in the SFT and DPO data loaders and agree with the instances."""

from __future__ import annotations

import json

import pytest

import synth_fixtures as fx
from petool_jax import petoolbench as pb
from petool_jax.train.dpo_data import load_pairs
from petool_jax.train.sft_data import format_call, load_sft_examples


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth_train")
    _, out = fx.synthesize_offline(tmp, num_users=20)
    return out


def test_sft_files_and_train_entries_give_the_same_examples(synthesized):
    entries = pb.load_entries(synthesized / "user_entries_train.json")
    for setting in pb.SETTINGS:
        from_sft_file = load_sft_examples([str(synthesized / f"user_entries_sft_{setting}.json")], [setting])
        from_entries = load_sft_examples([str(synthesized / "user_entries_train.json")], [setting])
        assert len(from_sft_file) == len(from_entries) == len(entries)
        for a, b in zip(from_sft_file, from_entries):
            assert (a["instruction"], a["query"]) == (b["instruction"], b["query"])
            assert json.loads(a["answer"]) == json.loads(b["answer"])
        assert from_entries[0]["answer"] == format_call(entries[0]["api_call_ground_truth"])


def test_dpo_files_load_as_pairs_that_prefer_the_truth(synthesized):
    entries = pb.load_entries(synthesized / "user_entries_train.json")
    for setting in pb.SETTINGS:
        pairs = load_pairs([str(synthesized / f"user_entries_dpo_{setting}.json")], [setting],
                           {"same_func": 1.0}, seed=0)
        assert len(pairs) == len(entries)
        for pair, entry in zip(pairs, entries):
            chosen, rejected = json.loads(pair["chosen"]), json.loads(pair["rejected"])
            assert chosen == entry["api_call_ground_truth"]
            assert rejected["tool_name"] in pb.same_func_tool_names(entry) - {chosen["tool_name"]}
    built = load_pairs([str(synthesized / "user_entries_train.json")], ["p"], {"same_func": 1.0}, seed=0)
    assert len(built) == len(entries)
    for pair, entry in zip(built, entries):
        assert json.loads(pair["rejected"])["tool_name"] in pb.same_func_tool_names(entry)
