"""The `strict` scorer and the error taxonomy, one crafted response per behaviour."""

from __future__ import annotations

import json

import pytest

from eval.scoring import build_report
from eval.scoring_strict import extract_call, normalize, schema_problems, score_strict
from eval.taxonomy import ERROR_TYPES, classify
from eval_fixtures import BAYUT, CANDIDATES, SELOGER, SPORTS, WEATHER, rental_entry
from petool_jax import petoolbench as pb

ENTRY = rental_entry()
TRUTH = ENTRY["api_call_ground_truth"]  # Bayut properties/list
SAME_FUNC = pb.same_func_tool_names(ENTRY)


def strict(response):
    return score_strict(response, TRUTH, CANDIDATES)


def error_of(response):
    return classify(strict(response), TRUTH["tool_name"], SAME_FUNC)


def dumps(tool_name, parameters, **kw):
    return json.dumps({"tool_name": tool_name, "parameters": parameters}, **kw)


RIGHT_PARAMS = TRUTH["parameters"]


@pytest.mark.parametrize(
    "name, response",
    [
        ("exact", dumps(BAYUT["tool_name"], RIGHT_PARAMS)),
        ("multi-line", dumps(BAYUT["tool_name"], RIGHT_PARAMS, indent=2)),
        ("swapped keys", json.dumps({"parameters": RIGHT_PARAMS, "tool_name": BAYUT["tool_name"]})),
        ("parameters as a JSON string", dumps(BAYUT["tool_name"], json.dumps(RIGHT_PARAMS))),
        ("extra text and fence", "Here you go:\n```json\n" + dumps(BAYUT["tool_name"], RIGHT_PARAMS) + "\n```\nDone."),
        ("first of two calls", dumps(BAYUT["tool_name"], RIGHT_PARAMS) + dumps(SELOGER["tool_name"], {"zipCodes": "75"})),
        ("reordered parameters", dumps(BAYUT["tool_name"], dict(reversed(list(RIGHT_PARAMS.items()))))),
        ("wrapped in another object", json.dumps({"call": {"tool_name": BAYUT["tool_name"], "parameters": RIGHT_PARAMS}})),
    ],
)
def test_right_answers_in_any_json_spelling(name, response):
    result = strict(response)
    assert (result.tool_ok, result.param_ok) == (True, True), name
    assert error_of(response) is None


def test_nested_parameter_values_are_read_whole():
    truth = {"tool_name": BAYUT["tool_name"], "parameters": {"locationExternalIDs": "5002", "lang": {"code": "en"}}}
    candidates = [dict(BAYUT, optional_parameters=BAYUT["optional_parameters"])]
    result = score_strict(dumps(BAYUT["tool_name"], truth["parameters"]), truth, candidates)
    assert result.param_ok and result.call.parameters == {"locationExternalIDs": "5002", "lang": {"code": "en"}}


def test_two_calls_counted_and_first_taken():
    call = extract_call(dumps(SELOGER["tool_name"], {"zipCodes": "75"}) + " " + dumps(BAYUT["tool_name"], RIGHT_PARAMS))
    assert (call.tool_name, call.n_calls) == (SELOGER["tool_name"], 2)


def test_normalisation_equates_json_spellings_but_not_types():
    assert normalize({"a": "5", "b": "true", "c": " x "}) == normalize({"b": True, "a": 5.0, "c": "x"})
    assert normalize(1) != normalize(True)
    assert normalize("1") != normalize("one")
    assert normalize([1, "2"]) == normalize(["1", 2])
    assert normalize("") != normalize(None)


@pytest.mark.parametrize(
    "response, error_type",
    [
        ("", "invalid_format"),
        ("I am not sure which tool to use.", "invalid_format"),
        (dumps(BAYUT["tool_name"], RIGHT_PARAMS)[:-9], "invalid_format"),  # truncated
        ("{'tool_name': 'x', 'parameters': {}}", "invalid_format"),  # Python, not JSON
        (json.dumps({"tool_name": BAYUT["tool_name"]}), "invalid_format"),  # no parameters
        (dumps("<Business>.<Zillow>.<properties/list>", RIGHT_PARAMS), "tool_hallucination"),
        (dumps(SELOGER["tool_name"], {"zipCodes": "75"}), "preference_mismatch"),
        (dumps(WEATHER["tool_name"], {"city": "Dubai"}), "functionality_mismatch"),
        (dumps(SPORTS["tool_name"], {}), "functionality_mismatch"),
        (dumps(BAYUT["tool_name"], {"locationExternalIDs": "5002,6020"}), "parameter_name_mismatch"),
        (dumps(BAYUT["tool_name"], dict(RIGHT_PARAMS, colour="red")), "parameter_name_mismatch"),
        (dumps(BAYUT["tool_name"], dict(RIGHT_PARAMS, purpose="for-sale")), "parameter_value_mismatch"),
    ],
)
def test_each_error_type(response, error_type):
    assert error_of(response) == error_type


def test_no_response_and_failed_requests_are_their_own_type():
    assert classify(None, TRUTH["tool_name"], SAME_FUNC) == "no_response"
    entries = [rental_entry(entry_id=1), rental_entry(entry_id=2)]
    predictions = {(1, "p"): {"entry_id": 1, "setting": "p", "response": None, "ok": False, "error": "HTTP 500"}}
    report, rows = build_report(entries, predictions, ["p"])
    assert report["errors"]["p"]["no_response"] == 2
    assert report["predictions"]["p"]["failed"] == 1 and report["predictions"]["p"]["missing"] == 1
    assert report["scores"]["strict"]["p"]["tool_acc"] == 0.0


def test_schema_check_needs_required_and_rejects_unknown_names():
    assert schema_problems({"locationExternalIDs": "1", "lang": "en"}, BAYUT) == []
    assert schema_problems({"lang": "en", "x": 1}, BAYUT) == [
        "missing required parameter 'locationExternalIDs'",
        "unknown parameter 'x'",
    ]


def test_parameters_scored_independently_of_the_tool():
    # Right parameters under a functionally equivalent tool whose schema lacks them.
    wrong_schema = strict(dumps(SELOGER["tool_name"], RIGHT_PARAMS))
    assert (wrong_schema.tool_ok, wrong_schema.param_ok) == (False, False)
    assert "unknown parameter 'purpose'" in wrong_schema.problems


def test_report_counts_every_error_type_and_accuracies():
    responses = [
        dumps(BAYUT["tool_name"], RIGHT_PARAMS),  # right
        dumps(BAYUT["tool_name"], dict(RIGHT_PARAMS, lang="fr")),  # value
        dumps(SELOGER["tool_name"], {"zipCodes": "75"}),  # preference
        "oops",  # format
    ]
    entries = [rental_entry(entry_id=i) for i in range(len(responses))]
    predictions = {(i, "c"): {"entry_id": i, "setting": "c", "response": r} for i, r in enumerate(responses)}
    report, _ = build_report(entries, predictions, ["c"])
    strict_c = report["scores"]["strict"]["c"]
    assert strict_c == {
        "n": 4, "tool_acc": 0.5, "param_acc": 0.25, "param_acc_given_tool": 0.5, "call_acc": 0.25,
        "tool_correct": 2, "param_correct": 1, "call_correct": 1,
        # no request failed: the answered-only denominator (the authors' API protocol) is all 4
        "n_answered": 4, "tool_acc_answered": 0.5, "param_acc_answered": 0.25,
    }
    assert report["errors"]["c"] == {t: 0 for t in ERROR_TYPES} | {
        "parameter_value_mismatch": 1, "preference_mismatch": 1, "invalid_format": 1,
    }
    assert report["errors"]["all"] == report["errors"]["c"]
