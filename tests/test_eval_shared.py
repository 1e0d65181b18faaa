"""Scoring on the real test_dev entries (skips without ../shared): the rule baseline's
report against the authors' scorer and a direct classification of its wrong tools, and the
paper scorer against the authors' on reformatted truths."""

from __future__ import annotations

import json

import pytest

from eval.runners.task import EvalTask
from eval.runners.rule import RuleRunner
from eval.scoring import build_report
from petool_jax import petoolbench as pb
from report_checks import authors_scores, tool_error_counts
from test_eval_scoring_paper import authors_calculate_scores


@pytest.fixture(scope="module")
def test_dev(shared_dir):
    return pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")


def test_rule_baseline_on_test_dev(test_dev):
    rows = RuleRunner().run_batch([EvalTask(e, s) for s in pb.SETTINGS for e in test_dev])
    by_key = {(r["entry_id"], r["setting"]): r for r in rows}
    assert len(by_key) == 3 * 612
    report, scored = build_report(test_dev, by_key, pb.SETTINGS)
    for setting in pb.SETTINGS:
        paper, strict = report["scores"]["paper"][setting], report["scores"]["strict"][setting]
        assert paper["n"] == strict["n"] == 612
        # Tool/Param Acc are the authors' own calculate_scores on the same responses.
        assert (paper["tool_acc"], paper["param_acc"]) == authors_scores(test_dev, by_key, setting)
        assert (paper["tool_correct"], paper["param_correct"]) == (round(612 * paper["tool_acc"]),
                                                                   round(612 * paper["param_acc"]))
        # The rule writes one clean JSON call: both scorers read the same tool.
        assert strict["tool_correct"] == paper["tool_correct"]
    # Parameters exactly equal to the truth are right for the strict scorer too.
    assert all(r["strict_param"] for r in scored if r["paper_param"])
    # Wrong tools, classified straight from the candidates and apis_same_func.
    errors = tool_error_counts(test_dev, by_key, pb.SETTINGS)
    for kind, count in errors.items():
        assert report["errors"]["all"][kind] == count, kind
    assert errors["tool_hallucination"] == 0  # the rule only ever picks a candidate
    wrong_tools = sum(612 - report["scores"]["paper"][s]["tool_correct"] for s in pb.SETTINGS)
    assert errors["preference_mismatch"] + errors["functionality_mismatch"] == wrong_tools


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
