"""The `rule` baseline: functionality by words, then history evidence per setting."""

from __future__ import annotations

import json

import pytest

from eval.runners.task import EvalTask
from eval.runners.rule import RuleRunner, attribute_scores, choose, evidence, lexical_scores, words
from eval_fixtures import (BAYUT, CANDIDATES, IDEALISTA, SELOGER, SPORTS, WEATHER, make_entry, past, tool,
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
    tasks = [EvalTask(rental_entry(), "p"), EvalTask(weather_entry(), "c")]
    rows = RuleRunner().run_batch(tasks)
    assert [(r["entry_id"], r["setting"], r["ok"], r["shortened"]) for r in rows] == [(1, "p", True, False), (2, "c", True, False)]
    assert json.loads(rows[0]["response"]) == {"tool_name": BAYUT["tool_name"], "parameters": {"locationExternalIDs": "5002"}}


# --- attribute evidence: the preferred tool hidden, its attributes shared by the user's tools ---

KEYED = tool("Business", "KeyedHomes", "properties/list", "List properties for rent or sale with filters",
             required=[("api_key", "STRING", ""), ("zip", "STRING", "75")])
OPEN = tool("Business", "OpenHomes", "properties/list", "List properties for rent or sale with filters",
            required=[("zip", "STRING", "75")])
KEYED_WEATHER = tool("Weather", "KeyWeather", "forecast", "Forecast", required=[("api_key", "STRING", "")])
KEYED_QUOTES = tool("Finance", "KeyQuotes", "quote", "Quote", required=[("api_key", "STRING", ""), ("symbol", "STRING", "")])


def test_attribute_scores_match_candidates_to_the_users_calls():
    history = [past("weather", KEYED_WEATHER, api_key="k"), past("quote", KEYED_QUOTES, api_key="k", symbol="A")]
    keyed, open_ = attribute_scores(history, "p", [KEYED, OPEN])
    # Per attribute, the share of liked calls that match: credential 1 vs 0; 1-2 parameters 1
    # vs 1; naming (KeyedHomes and OpenHomes: lower; the calls: snake, lower) 0.5 vs 0.5;
    # not versioned 1 vs 1.
    assert (keyed, open_) == (3.5, 2.5)
    # r: a rated-0 call counts against the candidates that resemble it.
    rated = [past("weather", KEYED_WEATHER, rating=1, api_key="k"), past("rentals", OPEN, rating=0, zip="75")]
    keyed_r, open_r = attribute_scores(rated, "r", [KEYED, OPEN])
    # liked (credential, 1-2, snake, no) vs disliked (none, 1-2, lower, no) call.
    assert (keyed_r, open_r) == (3.0 - 3.0, 2.0 - 4.0)
    # c: only the later half of the history speaks for a tool.
    assert attribute_scores(rated[::-1], "c", [KEYED, OPEN]) == [3.0, 2.0]


@pytest.mark.parametrize("order", [(KEYED, OPEN), (OPEN, KEYED)])
def test_hidden_preference_goes_to_the_candidate_like_the_users_tools(order):
    # Neither rental tool is in the history: the history evidence ties, the attributes decide,
    # whatever the candidate order.
    candidates = list(order) + [SPORTS, WEATHER]
    history = [past("weather", KEYED_WEATHER, api_key="k"), past("quote", KEYED_QUOTES, api_key="k", symbol="A")]
    entry = make_entry(9, "List properties for rent in zip 75.", {"tool_name": KEYED["tool_name"], "parameters": {}},
                       {"p": history}, candidates=candidates, same_func=[KEYED, OPEN])
    assert choose(entry, "p")["tool_name"] == KEYED["tool_name"]
    # Without attribute evidence (no history at all) the first candidate of the group wins.
    bare = make_entry(9, "List properties for rent in zip 75.", {"tool_name": KEYED["tool_name"], "parameters": {}},
                      {"p": []}, candidates=candidates, same_func=[KEYED, OPEN])
    assert choose(bare, "p")["tool_name"] == order[0]["tool_name"]
