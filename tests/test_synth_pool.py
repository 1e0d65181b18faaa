"""Tool pool: harvesting PEToolBench files, loading ToolBench documents, dedup, provenance,
example validation, and errors that name the file."""

from __future__ import annotations

import json

import pytest

import synth_fixtures as fx
from petool_jax.app.cli import UserError
from synth.pool import Pool
from synth.schema import parameter_problems
from synth.sources import load_pool


def test_harvest_gives_documents_groups_examples_and_provenance(tmp_path):
    path = fx.write_petoolbench_pool(tmp_path / "pool.json")
    pool = load_pool([path])
    assert len(pool.tools) == 9 and len(pool.apis) == 27
    # APIs 0 and 1 are documented (group documents); API 2 only where it is listed as a candidate.
    documented = sorted(k for k, a in pool.apis.items() if a.documented)
    assert len(documented) == 21
    assert fx.full_name("Travel", 2, 2) not in documented and fx.full_name("Weather", 0, 2) in documented
    groups = pool.groups()
    assert sorted(groups) == ["10", "11", "20", "21", "30", "31"]
    assert groups["10"] == [fx.full_name("Weather", t, 0) for t in range(3)]
    assert all(len(a.examples) == 2 for a in pool.apis.values())
    api = pool.apis[fx.full_name("Finance", 1, 0)]
    assert api.examples[0] == {"instruction": fx.example("Finance", 1, 0, 0)["Scenario"],
                               "parameters": fx.example("Finance", 1, 0, 0)["Parameters"]}
    assert api.api_id == 1110 and api.func == "20"
    assert pool.tools["<Finance>.<FinanceHub 1>"].description.startswith("FinanceHub 1: finance data")
    # Provenance counts every mention: its group's document list, its group entry's candidate list,
    # and the histories of the two Finance entries in each of the three settings.
    assert api.provenance == {"petoolbench:pool.json:same_func": 1, "petoolbench:pool.json:candidate": 1,
                              "petoolbench:pool.json:history": 6}


def test_the_same_file_twice_is_deduplicated(tmp_path):
    path = fx.write_petoolbench_pool(tmp_path / "pool.json")
    (tmp_path / "copy").mkdir()
    copy = fx.write_petoolbench_pool(tmp_path / "copy" / "again.json")
    once, twice = load_pool([path]), load_pool([path, copy])
    assert sorted(twice.apis) == sorted(once.apis) and sorted(twice.tools) == sorted(once.tools)
    key = fx.full_name("Weather", 0, 0)
    assert twice.apis[key].examples == once.apis[key].examples
    assert twice.apis[key].provenance["petoolbench:again.json:same_func"] == once.apis[key].provenance[
        "petoolbench:pool.json:same_func"]
    assert twice.report["duplicate API mentions merged"] > once.report["duplicate API mentions merged"]


def test_invalid_examples_are_dropped_and_counted(tmp_path):
    entries = fx.petoolbench_pool_entries()
    entries[0]["api_ground_truth"]["Example"] = {"Scenario": "a bad example", "Parameters": {"days": "three"}}
    entries[0]["api_call_ground_truth"]["parameters"] = {"city": "Paris", "colour": "red"}
    entries[0]["query"] = "a query with an unknown parameter"
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(entries))
    pool = load_pool([str(path)])
    assert pool.report["examples dropped: parameters invalid for the API schema"] == 2
    instructions = {e["instruction"] for a in pool.apis.values() for e in a.examples}
    assert "a query with an unknown parameter" not in instructions and "a bad example" not in instructions


def test_toolbench_folder(tmp_path):
    root = fx.write_toolbench_tools(tmp_path / "tools")
    (tmp_path / "tools" / "Weather" / "notes.json").write_text('{"not": "a tool"}')
    pool = load_pool([root])
    assert sorted(pool.tools) == ["<Finance>.<FinA>", "<Finance>.<FinB>", "<Finance>.<FinC>",
                                  "<Weather>.<WeatherA>", "<Weather>.<WeatherB>", "<Weather>.<WeatherC>"]
    tool = pool.tools["<Weather>.<WeatherC>"]
    assert tool.pricing == "PAID" and tool.score["avgServiceLevel"] == 60
    assert tool.apis == ["<Weather>.<WeatherC>.<forecast>", "<Weather>.<WeatherC>.<current>", "<Weather>.<WeatherC>.<alerts>"]
    api = pool.apis["<Finance>.<FinA>.<history>"]
    assert api.documented and [p["name"] for p in api.required] == ["symbol", "days"]
    assert api.description == "Returns daily price history for a symbol"
    assert api.provenance == {"toolbench:tools/Finance/fina.json": 1}
    assert pool.groups() == {} and all(not a.examples for a in pool.apis.values())
    assert pool.report["files skipped: not tool documents"] == 1


def test_pool_round_trips_through_json(tmp_path):
    pool = load_pool([fx.write_petoolbench_pool(tmp_path / "pool.json")])
    again = Pool.from_json(json.loads(json.dumps(pool.to_json())))
    assert again.to_json() == pool.to_json()


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"hello": 1}', "neither ToolBench tool documents"),
        ("[1, 2", "line 1 column 6: not valid JSON"),
        ('[{"tool_name": "X", "api_list": [{"description": "no name"}]}]', "tool 0: api_list[0]: expected an object with a string 'name'"),
        ('[{"apis_candidate": "[", "query": "q"}]', "entry 0: key 'apis_candidate': not valid JSON"),
    ],
)
def test_bad_sources_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        load_pool([str(path)])
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_source(tmp_path):
    with pytest.raises(UserError, match=r"tool_pool: .*nowhere\.json: no such file or folder"):
        load_pool([str(tmp_path / "nowhere.json")])


SPEC_REQ = [{"name": "city", "type": "STRING"}, {"name": "n", "type": "NUMBER"}]
SPEC_OPT = [{"name": "flag", "type": "BOOLEAN"}, {"name": "ids", "type": "ARRAY"}, {"name": "limit", "type": "integer"}]


@pytest.mark.parametrize(
    "params, problems",
    [
        ({"city": "Oslo", "n": 3}, []),
        ({"city": 75, "n": "3.5", "flag": "true", "ids": [1, 2], "limit": ""}, []),
        ({"n": 3}, ["missing required parameter 'city'"]),
        ({"city": "Oslo", "n": "three"}, ["'n' should be a number, got 'three'"]),
        ({"city": "Oslo", "n": True}, ["'n' should be a number, got a boolean"]),
        ({"city": "Oslo", "n": 1, "flag": "maybe"}, ["'flag' should be a boolean, got 'maybe'"]),
        ({"city": ["Oslo"], "n": 1}, ["'city' is a list but the schema type is STRING"]),
        ({"city": "", "n": 1, "zip": 1}, ["unknown parameter 'zip'"]),
        ("city=Oslo", ["parameters must be an object, got str"]),
    ],
)
def test_parameter_validation(params, problems):
    assert parameter_problems(params, SPEC_REQ, SPEC_OPT) == problems
