"""Tiny PEToolBench entries in the released format, written here (never copied from ../shared).

One world of tools: three providers offer the same `properties/list` API (functionally
equivalent), plus unrelated APIs. Each entry's three settings hold histories whose
evidence points at a chosen provider, so the rule baseline and the scorers have known
right answers.
"""

from __future__ import annotations

import json

from petool_jax.petoolbench import INSTRUCTION_KEYS, render_instruction

HEADS = {
    "p": "\nFixture task: call one tool the user prefers.\nInteraction history is:\n",
    "r": "\nFixture task: call one tool; past calls carry 0/1 ratings.\nInteraction history is:\n",
    "c": "\nFixture task: call one tool; later calls are preferred.\nInteraction history is:\n",
}
TAIL_HEAD = "\n\nAvailable tools you can call with input parameters are listed here:\n"
TAIL_END = "\n\nGenerate the tool call as one JSON line.\nBegin!\n\n"


def tool(category, provider, api, description, required=(), optional=()):
    return {
        "tool_name": f"<{category}>.<{provider}>.<{api}>",
        "tool_description": description,
        "required_parameters": [
            {"name": n, "type": t, "description": "", "default": d} for n, t, d in required
        ],
        "optional_parameters": [
            {"name": n, "type": t, "description": "", "default": d} for n, t, d in optional
        ],
    }


PROPERTY_LIST = [
    tool("Business", "Bayut", "properties/list", "List properties for rent or sale with filters",
         required=[("locationExternalIDs", "STRING", "5002")],
         optional=[("purpose", "STRING", "for-rent"), ("lang", "STRING", "en"), ("page", "NUMBER", "0")]),
    tool("Business", "Seloger", "properties/list", "List properties for rent or sale with filters",
         required=[("zipCodes", "STRING", "75")],
         optional=[("maximumPrice", "NUMBER", ""), ("bedrooms", "STRING", "")]),
    tool("Business", "Idealista.v2", "properties/list", "List properties for rent or sale with filters",
         required=[("locationId", "STRING", "0-EU-ES-28")],
         optional=[("operation", "STRING", "rent")]),
]
OTHERS = [
    tool("Sports", "sportapi", "GetAllSports", "Get the list of all sports"),
    tool("Weather", "Open Weather", "current weather", "Current weather for a city",
         required=[("city", "STRING", "London")], optional=[("units", "STRING", "metric")]),
    tool("Finance", "Real-Time Quotes", "stock quote", "Real time quote of a stock symbol",
         required=[("symbol", "STRING", "AAPL")]),
    tool("Media", "Spotify", "search tracks", "Search music tracks by keyword",
         required=[("q", "STRING", "")], optional=[("limit", "NUMBER", "10")]),
    tool("Data", "Github API Scraper", "list repos", "List GitHub repositories for a topic",
         required=[("topic", "STRING", "ruby")]),
]
CANDIDATES = PROPERTY_LIST + OTHERS


def api_doc(t):
    """An `apis_same_func` doc for a candidate tool (the keys the scorer reads)."""
    from petool_jax.petoolbench import split_tool_name

    category, provider, api = split_tool_name(t["tool_name"])
    return {"api_name": api, "api_desc": t["tool_description"], "category_name": category,
            "tool_name": provider, "required_parameters": t["required_parameters"],
            "optional_parameters": t["optional_parameters"]}


def call(t, **params):
    return {"tool_name": t["tool_name"], "parameters": params}


def past(instruction, t, rating=None, **params):
    item = {"instruction": instruction, "tool_call": call(t, **params)}
    if rating is not None:
        item["rating"] = rating
    return item


def make_entry(entry_id, query, truth, histories, history_length=20, candidates=CANDIDATES,
               same_func=PROPERTY_LIST):
    """One entry; histories = {setting: list of past calls}."""
    tail = TAIL_HEAD + json.dumps(candidates, ensure_ascii=False) + TAIL_END
    entry = {"query": query}
    for setting, history in histories.items():
        entry[INSTRUCTION_KEYS[setting]] = render_instruction(HEADS[setting], history, tail)
    entry.update({
        "apis_candidate": json.dumps(candidates, ensure_ascii=False),
        "api_call_ground_truth": truth,
        "api_ground_truth": {},
        "func": "1",
        "apis_same_func": [api_doc(t) for t in same_func],
        "tool_comb": [],
        "num_tools_combined": "3",
        "history_length": history_length,
        "entry_id": entry_id,
    })
    return entry


BAYUT, SELOGER, IDEALISTA = PROPERTY_LIST
SPORTS, WEATHER, QUOTES, SPOTIFY, GITHUB = OTHERS


def rental_entry(entry_id=1, history_length=20):
    """Truth: Bayut. p: Bayut used most; r: Bayut rated 1, Seloger 0; c: Bayut used last."""
    truth = call(BAYUT, locationExternalIDs="5002,6020", purpose="for-rent", lang="en")
    histories = {
        "p": [past("Get all sports.", SPORTS),
              past("List rentals in Dubai.", BAYUT, locationExternalIDs="5002"),
              past("Properties in Paris.", SELOGER, zipCodes="75"),
              past("Rentals in Abu Dhabi, ünïcode", BAYUT, locationExternalIDs="6020"),
              past("Weather in Rome.", WEATHER, city="Rome")],
        "r": [past("Properties in Paris.", SELOGER, rating=1, zipCodes="75"),
              past("Properties in Lyon.", SELOGER, rating=0, zipCodes="69"),
              past("Properties in Nice.", SELOGER, rating=0, zipCodes="06"),
              past("Rentals in Dubai.", BAYUT, rating=1, locationExternalIDs="5002"),
              past("Stock quote AAPL.", QUOTES, rating=1, symbol="AAPL")],
        "c": [past("Properties in Paris.", SELOGER, zipCodes="75"),
              past("Properties in Madrid.", IDEALISTA, locationId="0-EU-ES-28"),
              past("Properties in Lyon.", SELOGER, zipCodes="69"),
              past("Rentals in Dubai.", BAYUT, locationExternalIDs="5002")],
    }
    return make_entry(entry_id, "List properties for rent in locations 5002 and 6020 in English.",
                      truth, histories, history_length)


def weather_entry(entry_id=2, history_length=45):
    """Truth: the only weather tool (no provider choice); history irrelevant."""
    truth = call(WEATHER, city="Berlin", units="metric")
    histories = {"p": [past("Get all sports.", SPORTS)],
                 "r": [past("Get all sports.", SPORTS, rating=1)],
                 "c": [past("Get all sports.", SPORTS)]}
    return make_entry(entry_id, "What is the current weather in Berlin in metric units?",
                      truth, histories, history_length, same_func=[WEATHER])


def seloger_entry(entry_id=3, history_length=70):
    """Truth: Seloger. p: Seloger used most; r: Bayut rated 0; c: Seloger used last."""
    truth = call(SELOGER, zipCodes="75", maximumPrice=500000)
    histories = {
        "p": [past("Properties in Paris.", SELOGER, zipCodes="75"),
              past("Properties in Lyon.", SELOGER, zipCodes="69"),
              past("Rentals in Dubai.", BAYUT, locationExternalIDs="5002")],
        "r": [past("Rentals in Dubai.", BAYUT, rating=0, locationExternalIDs="5002"),
              past("Properties in Paris.", SELOGER, rating=1, zipCodes="75")],
        "c": [past("Rentals in Dubai.", BAYUT, locationExternalIDs="5002"),
              past("Rentals in Sharjah.", BAYUT, locationExternalIDs="5003"),
              past("Properties in Paris.", SELOGER, zipCodes="75")],
    }
    return make_entry(entry_id, "List properties in Paris zip 75 under 500000.",
                      truth, histories, history_length)


def small_benchmark():
    return [rental_entry(), weather_entry(), seloger_entry()]


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
