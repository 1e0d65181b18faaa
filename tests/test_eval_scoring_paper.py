"""The `paper` scorer equals a straight re-implementation of the authors' calculate_scores."""

from __future__ import annotations

import json
import re

import pytest

from eval.scoring import build_report
from eval.scoring_paper import score_paper
from eval_fixtures import BAYUT, SELOGER, rental_entry


def authors_calculate_scores(results):
    """The authors' run_experiment.py calculate_scores, minus its prints; returns the two fractions."""
    scores_tool = 0
    scores_parameters = 0
    for entry in results:
        if not entry["response"]:
            continue
        pattern = r'\{.*"tool_name":\s*".*?",\s*"parameters":\s*\{.*?\}\}'
        match = re.search(pattern, entry["response"])
        if match:
            json_str = match.group(0)
            try:
                response = json.loads(json_str)
            except json.JSONDecodeError:
                continue
        else:
            continue
        if entry["api_call_ground_truth"]["tool_name"] == response["tool_name"]:
            scores_tool += 1
        if entry["api_call_ground_truth"]["parameters"] == response["parameters"]:
            scores_parameters += 1
    return scores_tool / len(results), scores_parameters / len(results)


TRUTH = {"tool_name": BAYUT["tool_name"], "parameters": {"locationExternalIDs": "5002,6020", "purpose": "for-rent"}}
# A nested object last in the parameters ends the call with "}}}": the lazy `\{.*?\}\}`
# stops one brace early and json.loads fails; in the middle it happens to parse.
NESTED_TRUTH = {"tool_name": BAYUT["tool_name"], "parameters": {"lang": "en", "filter": {"beds": 2}}}
MID_NESTED_TRUTH = {"tool_name": BAYUT["tool_name"], "parameters": {"filter": {"beds": 2}, "lang": "en"}}
B, S = BAYUT["tool_name"], SELOGER["tool_name"]
RIGHT = json.dumps(TRUTH)

# (name, response, truth): each targets a known behaviour of the authors' regex.
CASES = [
    ("exact", RIGHT, TRUTH),
    ("extra text around", f"Sure! Here is the call:\n{RIGHT}\nHope this helps.", TRUTH),
    ("wrong tool right params", json.dumps({"tool_name": S, "parameters": TRUTH["parameters"]}), TRUTH),
    ("right tool wrong params", json.dumps({"tool_name": B, "parameters": {"purpose": "for-rent"}}), TRUTH),
    ("swapped keys", json.dumps({"parameters": TRUTH["parameters"], "tool_name": B}), TRUTH),
    ("multi-line JSON", json.dumps(TRUTH, indent=2), TRUTH),
    ("nested braces in parameters", json.dumps(NESTED_TRUTH), NESTED_TRUTH),
    ("nested braces mid-parameters", json.dumps(MID_NESTED_TRUTH), MID_NESTED_TRUTH),
    ("nested braces, wrong tool", json.dumps({"tool_name": S, "parameters": {"filter": {"beds": 2}}}), NESTED_TRUTH),
    ("parameters as a string", json.dumps({"tool_name": B, "parameters": json.dumps(TRUTH["parameters"])}), TRUTH),
    ("two calls on one line", RIGHT + " " + json.dumps({"tool_name": S, "parameters": {}}), TRUTH),
    ("two calls, right one second", json.dumps({"tool_name": S, "parameters": {}}) + " " + RIGHT, TRUTH),
    ("empty response", "", TRUTH),
    ("not JSON", "I cannot help with that.", TRUTH),
    ("truncated", RIGHT[:-7], TRUTH),
    ("single quotes", str(TRUTH), TRUTH),
    ("empty params right tool", json.dumps({"tool_name": B, "parameters": {}}), {"tool_name": B, "parameters": {}}),
    ("code fence", "```json\n" + RIGHT + "\n```", TRUTH),
    ("int vs string value", json.dumps({"tool_name": B, "parameters": {"page": 1}}), {"tool_name": B, "parameters": {"page": "1"}}),
    ("float equals int", json.dumps({"tool_name": B, "parameters": {"page": 1.0}}), {"tool_name": B, "parameters": {"page": 1}}),
]


def test_known_regex_behaviours():
    outcomes = {name: score_paper(resp, truth) for name, resp, truth in CASES}
    assert (outcomes["exact"].tool_ok, outcomes["exact"].param_ok) == (True, True)
    # The regex needs tool_name before parameters, on one line.
    assert not outcomes["swapped keys"].parsed
    assert not outcomes["multi-line JSON"].parsed
    # Nested braces: the lazy `\{.*?\}\}` stops at the first "}}" and json.loads fails.
    assert not outcomes["nested braces in parameters"].parsed
    assert outcomes["nested braces mid-parameters"].param_ok
    assert not outcomes["parameters as a string"].parsed
    # Greedy `\{.*` spans both calls; the joined text is not JSON.
    assert not outcomes["two calls on one line"].parsed
    assert (outcomes["wrong tool right params"].tool_ok, outcomes["wrong tool right params"].param_ok) == (False, True)
    assert outcomes["float equals int"].param_ok and not outcomes["int vs string value"].param_ok


def test_rows_and_fractions_equal_the_authors_scorer(tmp_path):
    entries, predictions, results = [], {}, []
    for i, (name, response, truth) in enumerate(CASES):
        entry = rental_entry(entry_id=i)
        entry["api_call_ground_truth"] = truth
        entries.append(entry)
        predictions[(i, "r")] = {"entry_id": i, "setting": "r", "response": response}
        results.append({"response": response, "api_call_ground_truth": truth, "entry_id": i})
        tool, param = authors_calculate_scores([results[-1]])
        ours = score_paper(response, truth)
        assert (ours.tool_ok, ours.param_ok) == (bool(tool), bool(param)), name
    report, _ = build_report(entries, predictions, ["r"])
    tool_acc, param_acc = authors_calculate_scores(results)
    assert report["scores"]["paper"]["r"]["tool_acc"] == tool_acc
    assert report["scores"]["paper"]["r"]["param_acc"] == param_acc
    assert report["scores"]["paper"]["r"]["n"] == len(CASES)
    # exact, extra text, right tool wrong params, mid-nested, empty params, code fence,
    # int-vs-string, float-equals-int have the right tool; 7 of the cases have equal params.
    assert (tool_acc, param_acc) == (8 / 20, 7 / 20)


def test_missing_prediction_stays_in_the_denominator():
    entries = [rental_entry(entry_id=1), rental_entry(entry_id=2)]
    truth = entries[0]["api_call_ground_truth"]
    predictions = {(1, "p"): {"entry_id": 1, "setting": "p", "response": json.dumps(truth)}}
    report, _ = build_report(entries, predictions, ["p"])
    assert report["scores"]["paper"]["p"]["tool_acc"] == 0.5
    assert report["predictions"]["p"]["missing"] == 1
