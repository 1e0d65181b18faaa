"""The `rule` baseline: functionality by words, then history evidence per setting."""

from __future__ import annotations

import json

import pytest

from eval.runners import Task
from eval.runners.rule import RuleRunner, choose, evidence, lexical_scores, words
from eval_fixtures import (BAYUT, CANDIDATES, IDEALISTA, SELOGER, SPORTS, WEATHER, make_entry, past,
                           rental_entry, seloger_entry, weather_entry)


def test_words_split_camel_case_and_drop_stopwords():
    assert words("Get the listOfProperties for rent in Paris_75") == ["list", "properties", "rent", "paris", "75"]


def test_lexical_scores_prefer_the_matching_functionality():
    scores = lexical_scores("What is the current weather in Berlin?", CANDIDATES)
    assert max(range(len(CANDIDATES)), key=scores.__getitem__) == CANDIDATES.index(WEATHER)
    # Words every property candidate shares still beat unrelated candidates.
    scores = lexical_scores("List properties for rent", CANDIDATES)
    assert scores[0] == scores[1] == scores[2] > max(scores[3:])


def test_evidence_per_setting():
    history = [past("a", BAYUT, rating=0), past("b", BAYUT, rating=0), past("c", SELOGER, rating=1),
               past("d", SPORTS, rating=1)]
    bayut, seloger = ("Business", "Bayut"), ("Business", "Seloger")
    assert evidence(history, "p")[bayut] == 2.0 and evidence(history, "p")[seloger] == 1.0
    assert evidence(history, "r")[bayut] == -2.0 and evidence(history, "r")[seloger] == 1.0
    assert evidence(history, "c")[bayut] == 2.0 and evidence(history, "c")[seloger] == 3.0


@pytest.mark.parametrize("setting", ["p", "r", "c"])
def test_chooses_the_preferred_provider_in_each_setting(setting):
    assert choose(rental_entry(), setting)["tool_name"] == BAYUT["tool_name"]
    assert choose(seloger_entry(), setting)["tool_name"] == SELOGER["tool_name"]
    assert choose(weather_entry(), setting) == {"tool_name": WEATHER["tool_name"], "parameters": {"city": "London"}}


def test_same_calls_read_differently_per_setting():
    # Two Bayut calls, then one Idealista: most used = Bayut, most recent = Idealista.
    history = [past("x", BAYUT, locationExternalIDs="1"), past("y", BAYUT, locationExternalIDs="2"),
               past("z", IDEALISTA, locationId="3")]
    rated = [dict(h, rating=r) for h, r in zip(history, (1, 0, 1))]
    entry = make_entry(7, "List properties for rent in Madrid.", {"tool_name": IDEALISTA["tool_name"], "parameters": {}},
                       {"p": history, "r": rated, "c": history})
    assert choose(entry, "p")["tool_name"] == BAYUT["tool_name"]
    assert choose(entry, "c")["tool_name"] == IDEALISTA["tool_name"]
    # Ratings: Bayut 1 - 1 = 0 versus Idealista +1.
    assert choose(entry, "r")["tool_name"] == IDEALISTA["tool_name"]


def test_runner_rows_are_paper_parsable_json():
    tasks = [Task(rental_entry(), "p"), Task(weather_entry(), "c")]
    rows = RuleRunner().run_batch(tasks)
    assert [(r["entry_id"], r["setting"], r["ok"], r["shortened"]) for r in rows] == [(1, "p", True, False), (2, "c", True, False)]
    assert json.loads(rows[0]["response"]) == {"tool_name": BAYUT["tool_name"], "parameters": {"locationExternalIDs": "5002"}}
