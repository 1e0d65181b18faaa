"""Synthesized data in the rest of the project: the evaluation harness loads and scores it,
and the SFT/DPO rows are what a trainer on LLaMA-Factory's alpaca format expects."""

from __future__ import annotations

import json

import pytest

import synth_fixtures as fx
from petool_jax import petoolbench as pb
from petool_jax.petoolbench_structure import preferred_visible
from petool_jax.app.cli import main


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    _, out = fx.synthesize_offline(tmp, num_users=20)
    return out


def test_entries_load_in_the_harness(synthesized):
    for name in ("user_entries_test.json", "user_entries_train.json"):
        entries = pb.load_entries(synthesized / name)
        assert entries and pb.available_settings(entries) == ("p", "r", "c")
        for entry in entries:
            assert len(pb.candidates(entry)) == 10
            assert entry["api_call_ground_truth"]["tool_name"] in pb.same_func_tool_names(entry)
            for setting in pb.SETTINGS:
                system, user = pb.build_messages(entry, setting)
                assert system["content"] == entry[pb.INSTRUCTION_KEYS[setting]] and user["content"] == entry["query"]
                # Dropping the oldest history entry keeps candidates and format instructions intact.
                head, history, tail = pb.split_instruction(system["content"])
                shorter = pb.build_messages(entry, setting, drop_oldest=1)[0]["content"]
                assert shorter == pb.render_instruction(head, history[1:], tail)


def test_scorer_gives_full_marks_to_the_truth_and_flags_the_rejected_call(synthesized):
    from eval.scoring import build_report

    entries = pb.load_entries(synthesized / "user_entries_train.json")
    truth = {(e["entry_id"], s): {"response": json.dumps(e["api_call_ground_truth"]), "ok": True}
             for e in entries for s in pb.SETTINGS}
    report, _ = build_report(entries, truth, pb.SETTINGS)
    for scorer in ("paper", "strict"):
        for s in pb.SETTINGS:
            assert report["scores"][scorer][s]["n"] == len(entries)
            assert report["scores"][scorer][s]["tool_acc"] == 1.0 and report["scores"][scorer][s]["param_acc"] == 1.0
    # The DPO `rejected` call: a functionally equivalent tool the user does not prefer.
    rejected = {}
    for s in pb.SETTINGS:
        rows = json.loads((synthesized / f"user_entries_dpo_{s}.json").read_text())
        assert len(rows) == len(entries)
        for entry, row in zip(entries, rows):
            rejected[(entry["entry_id"], s)] = {"response": row["rejected"], "ok": True}
    report, _ = build_report(entries, rejected, pb.SETTINGS)
    assert report["overall"]["paper"]["tool_acc"] == 0.0 and report["overall"]["paper"]["param_acc"] == 1.0
    assert report["errors"]["all"]["preference_mismatch"] == 3 * len(entries)


def test_rule_baseline_runs_on_synthesized_test_data(synthesized, tmp_path):
    data = synthesized / "user_entries_test.json"
    n = len(json.loads(data.read_text()))
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(tmp_path / "rule")]) == 0
    report = json.loads((tmp_path / "rule" / "report.json").read_text())
    entries = pb.load_entries(data)
    predictions = {(row["entry_id"], row["setting"]): json.loads(row["response"])["tool_name"]
                   for row in map(json.loads, (tmp_path / "rule" / "predictions.jsonl").read_text().splitlines())}
    for s in pb.SETTINGS:
        scores = report["scores"]["paper"][s]
        assert scores["n"] == n
        # Where the history shows the preferred tool, the query names the functionality and the
        # history the tool: the history-reading baseline is right every time.
        shown = [e for e in entries if preferred_visible(e, s)]
        assert shown and all(predictions[(e["entry_id"], s)] == e["api_call_ground_truth"]["tool_name"] for e in shown)
        assert len(shown) < n  # and some histories hide it, as in the release


def test_sft_rows_make_the_alpaca_prompt_the_authors_trained_on(synthesized):
    """LLaMA-Factory alpaca: prompt = instruction + "\\n" + input in one user turn, response = output."""
    entries = json.loads((synthesized / "user_entries_train.json").read_text())
    for s in pb.SETTINGS:
        rows = json.loads((synthesized / f"user_entries_sft_{s}.json").read_text())
        assert len(rows) == len(entries)
        for entry, row in zip(entries, rows):  # one row per training entry, in the same order
            (turn,) = pb.build_messages(entry, s, prompt_format="alpaca_user")
            assert turn["content"] == row["instruction"] + "\n" + row["input"]
            assert json.loads(row["output"]) == entry["api_call_ground_truth"]
