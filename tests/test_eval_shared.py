"""Scoring on the real test_dev entries (skips without ../shared): the rule baseline's
numbers pinned, and the paper scorer against the authors' on reformatted truths."""

from __future__ import annotations

import json

import pytest

from eval.runners import Task
from eval.runners.rule import RuleRunner
from eval.scoring import build_report
from petool_jax import petoolbench as pb
from test_eval_scoring_paper import authors_calculate_scores


@pytest.fixture(scope="module")
def test_dev(shared_dir):
    return pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")


def test_rule_baseline_on_test_dev(test_dev):
    rows = RuleRunner().run_batch([Task(e, s) for s in pb.SETTINGS for e in test_dev])
    report, _ = build_report(test_dev, {(r["entry_id"], r["setting"]): r for r in rows}, pb.SETTINGS)
    counts = {sc: {s: (m["n"], m["tool_correct"], m["param_correct"]) for s, m in by.items()}
              for sc, by in report["scores"].items()}
    assert counts == {
        "paper": {"p": (612, 238, 206), "r": (612, 285, 204), "c": (612, 156, 207)},
        "strict": {"p": (612, 238, 249), "r": (612, 285, 249), "c": (612, 156, 251)},
    }
    assert report["errors"]["all"]["preference_mismatch"] == 433
    assert report["errors"]["all"]["functionality_mismatch"] == 724


@pytest.mark.parametrize("spell", [
    lambda t: json.dumps(t),
    lambda t: json.dumps(t, ensure_ascii=False, indent=1),
    lambda t: "Answer: " + json.dumps({"parameters": t["parameters"], "tool_name": t["tool_name"]}),
    lambda t: json.dumps({"tool_name": t["tool_name"], "parameters": json.dumps(t["parameters"])}),
])
def test_paper_scorer_equals_the_authors_on_real_truths(test_dev, spell):
    results = [{"response": spell(e["api_call_ground_truth"]), "api_call_ground_truth": e["api_call_ground_truth"]}
               for e in test_dev]
    predictions = {(e["entry_id"], "p"): {"entry_id": e["entry_id"], "setting": "p", "response": r["response"]}
                   for e, r in zip(test_dev, results)}
    report, _ = build_report(test_dev, predictions, ["p"])
    ours = report["scores"]["paper"]["p"]
    assert (ours["tool_acc"], ours["param_acc"]) == authors_calculate_scores(results)
