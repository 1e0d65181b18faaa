"""Small tool pools for the synthesis tests, written by the tests themselves.

`petoolbench_pool_entries()` is a tiny PEToolBench-format file (the released keys) that,
harvested, gives: 3 categories x 3 tools x 3 APIs, two functionality groups per category
(API 0 of each tool, API 1 of each tool; API 2 stays ungrouped), and 2 example instructions
per API (one as the API document's Example, one inside a history). `toolbench_tools()` is a
RapidAPI/ToolBench-style tool folder content with no groups and no examples, for the
LLM-driven stages.
"""

from __future__ import annotations

import json

CATEGORIES = {
    "Weather": ("forecast", "current conditions", "alerts"),
    "Finance": ("stock quote", "exchange rate", "market news"),
    "Travel": ("hotel search", "flight status", "visa rules"),
}
TOOLS_PER_CATEGORY = 3


def tool_names(category: str) -> list[str]:
    return [f"{category}Hub {i}" for i in range(TOOLS_PER_CATEGORY)]


def api_name(category: str, a: int) -> str:
    """The same name for the same functionality across tools, as on RapidAPI ("current-conditions")."""
    return CATEGORIES[category][a].replace(" ", "-")


def api_doc(category: str, t: int, a: int, example_index: int = 0) -> dict:
    tool = tool_names(category)[t]
    what = CATEGORIES[category][a]
    # Tools differ in how much they document and how many parameters they require, which is
    # what the offline attribute heuristic reads.
    required = [{"name": "city", "type": "STRING", "description": "City name" if t else "", "default": "Paris"}]
    if t == 2:
        required.append({"name": "api_key", "type": "STRING", "description": "your key", "default": ""})
    optional = [{"name": "days", "type": "NUMBER", "description": "Number of days" if t else "", "default": "3"}]
    return {
        "api_name": api_name(category, a),
        "api_desc": f"{what.capitalize()} from {tool}" + (" with extended coverage and history" if t == 1 else ""),
        "required_parameters": required,
        "optional_parameters": optional,
        "Example": example(category, t, a, example_index),
        "tool_name": tool,
        "tool_desc": f"{tool}: {category.lower()} data" + (" for professionals, documented in detail" if t == 1 else ""),
        "category_name": category,
        "api_id": 1000 + 100 * list(CATEGORIES).index(category) + 10 * t + a,
    }


def example(category: str, t: int, a: int, index: int) -> dict:
    # Unique per (category, API, tool, index) without naming the tool: the query must not give it away.
    city = ["Paris", "Lima", "Oslo", "Kyoto", "Quito", "Rome"][2 * t + index]
    params = {"city": city, "days": index + 1}
    if t == 2:
        params["api_key"] = "demo"
    return {"Scenario": f"{CATEGORIES[category][a].capitalize()} for {city}, {index + 1} days.", "Parameters": params}


def full_name(category: str, t: int, a: int) -> str:
    return f"<{category}>.<{tool_names(category)[t]}>.<{api_name(category, a)}>"


def candidate(category: str, t: int, a: int) -> dict:
    doc = api_doc(category, t, a)
    return {
        "tool_name": full_name(category, t, a),
        "tool_description": doc["api_desc"],
        "required_parameters": doc["required_parameters"],
        "optional_parameters": doc["optional_parameters"],
    }


def petoolbench_pool_entries() -> list[dict]:
    from synth.prompts import candidates_json, system_prompt

    all_apis = [(c, t, a) for c in CATEGORIES for t in range(TOOLS_PER_CATEGORY) for a in range(3)]
    entries = []
    for c_index, category in enumerate(CATEGORIES):
        for a in (0, 1):  # the two grouped APIs of the category
            group = [(category, t, a) for t in range(TOOLS_PER_CATEGORY)]
            others = [x for x in all_apis if x not in group][: 10 - len(group)]
            apis_candidate = candidates_json([candidate(*x) for x in group + others])
            # Second examples of every API of the category, as history calls.
            history = [
                {"instruction": example(category, t, b, 1)["Scenario"],
                 "tool_call": {"tool_name": full_name(category, t, b), "parameters": example(category, t, b, 1)["Parameters"]}}
                for t in range(TOOLS_PER_CATEGORY) for b in range(3)
            ]
            if a == 0:  # API 2's first example is not in any document: add it to a history too
                history += [
                    {"instruction": example(category, t, 2, 0)["Scenario"],
                     "tool_call": {"tool_name": full_name(category, t, 2), "parameters": example(category, t, 2, 0)["Parameters"]}}
                    for t in range(TOOLS_PER_CATEGORY)
                ]
            rated = [dict(h, rating=1) for h in history]
            truth = example(category, 0, a, 0)
            entries.append({
                "query": truth["Scenario"],
                "instruction_preferred": system_prompt("p", history, apis_candidate),
                "instruction_ratings": system_prompt("r", rated, apis_candidate),
                "instruction_chronological": system_prompt("c", history, apis_candidate),
                "apis_candidate": apis_candidate,
                "api_call_ground_truth": {"tool_name": full_name(category, 0, a), "parameters": truth["Parameters"]},
                "api_ground_truth": api_doc(category, 0, a),
                "func": str(10 * (c_index + 1) + a),
                "apis_same_func": [api_doc(*x) for x in group],
                "tool_comb": [tool_names(category)[0]],
                "num_tools_combined": "1",
                "history_length": len(history),
                "entry_id": 500 + len(entries),
            })
    return entries


def write_petoolbench_pool(path) -> str:
    path.write_text(json.dumps(petoolbench_pool_entries(), ensure_ascii=False), encoding="utf-8")
    return str(path)


def offline_overrides(pool_path: str, out_dir, **extra) -> list[str]:
    values = {
        "tool_pool": pool_path, "output_dir": str(out_dir), "num_users": 12, "seed": 7,
        "llm.model": "none", "embedding.model": "local-hash", "embedding.dim": 64,
        "history.min_len": 4, "history.max_len": 8, "preferences.min_tools": 2, "preferences.max_tools": 3,
        "instances_per_user": 3, "test_fraction": 0.3,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


# -- ToolBench-style documents (no groups, no examples) ---------------------------------

TB_APIS = {  # api name -> what it does; "current" of WeatherC is worded differently (borderline)
    "forecast": "Returns the weather forecast for a city",
    "current": "Returns the current weather for a city",
    "alerts": "Lists severe weather alerts for a region",
}


def synthesize_offline(root, num_users: int):
    """The offline pipeline on the fixture pool: returns (pool file, output folder)."""
    from synth.config import load_synth_config
    from synth.pipeline import run_pipeline

    pool = write_petoolbench_pool(root / "pool.json")
    out = root / "out"
    run_pipeline(load_synth_config(None, offline_overrides(pool, out, num_users=num_users)))
    return pool, out


def toolbench_tools() -> dict[str, dict]:
    """relative path -> tool document, as in ToolBench's data/toolenv/tools/<Category>/<tool>.json."""
    docs = {}
    for i, name in enumerate(("WeatherA", "WeatherB", "WeatherC")):
        docs[f"Weather/{name.lower()}.json"] = {
            "tool_name": name,
            "tool_description": f"{name} weather service",
            "title": name,
            "pricing": ["FREE", "FREEMIUM", "PAID"][i],
            "score": {"avgServiceLevel": [99, 90, 60][i], "avgLatency": 300, "__typename": "Score"},
            "home_url": f"https://example.invalid/{name}",
            "api_list": [
                {"name": api, "url": f"https://example.invalid/{name}/{api}", "description": desc, "method": "GET",
                 "required_parameters": [{"name": "city", "type": "STRING", "description": "City", "default": "Paris"}],
                 "optional_parameters": [{"name": "units", "type": "STRING", "description": "metric|imperial", "default": "metric"}]}
                for api, desc in TB_APIS.items()
            ],
        }
    for name in ("FinA", "FinB", "FinC"):
        docs[f"Finance/{name.lower()}.json"] = {
            "tool_name": name,
            "tool_description": f"{name} market data",
            "pricing": "FREEMIUM",
            "api_list": [
                {"name": "quote", "description": "Returns the latest stock quote for a symbol",
                 "required_parameters": [{"name": "symbol", "type": "STRING", "description": "Ticker", "default": "AAPL"}],
                 "optional_parameters": []},
                {"name": "history", "description": "Returns daily price history for a symbol",
                 "required_parameters": [{"name": "symbol", "type": "STRING", "description": "Ticker", "default": "AAPL"},
                                         {"name": "days", "type": "NUMBER", "description": "How many days", "default": "30"}],
                 "optional_parameters": []},
            ],
        }
    return docs


def write_toolbench_tools(root) -> str:
    for rel, doc in toolbench_tools().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc), encoding="utf-8")
    return str(root)
