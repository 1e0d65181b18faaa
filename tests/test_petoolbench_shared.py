"""petool_jax.petoolbench on the real test_dev entries (skips without ../shared)."""

from __future__ import annotations

import pytest

from petool_jax import petoolbench as pb


@pytest.fixture(scope="module")
def test_dev(shared_dir):
    return pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")


def test_test_dev_loads_with_all_settings(test_dev):
    assert len(test_dev) == 612
    assert pb.available_settings(test_dev) == ("p", "r", "c")
    assert all(len(pb.candidates(e)) in (10, 11) for e in test_dev)


def test_render_of_split_is_byte_exact_on_every_real_prompt(test_dev):
    mismatches = []
    for entry in test_dev:
        for setting, key in pb.INSTRUCTION_KEYS.items():
            head, history, tail = pb.split_instruction(entry[key])
            if pb.render_instruction(head, history, tail) != entry[key]:
                mismatches.append((entry["entry_id"], setting))
            # The candidates sit in the tail, untouched by history edits.
            assert entry["apis_candidate"] in tail
    assert mismatches == []


def test_truth_is_a_candidate_and_in_its_functionality_group(test_dev):
    for entry in test_dev:
        truth = entry["api_call_ground_truth"]["tool_name"]
        assert truth in {c["tool_name"] for c in pb.candidates(entry)}
        assert truth in pb.same_func_tool_names(entry)
