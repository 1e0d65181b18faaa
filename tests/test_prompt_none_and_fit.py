"""The authors' no-history prompt (`--settings none`) and `history`-mode fitting
(petool_jax.prompt_fit): oldest history first, then the longest candidate descriptions,
never a name, the query or the whole history while descriptions can give."""

from __future__ import annotations

import gzip
import json

import pytest

from eval_fixtures import CANDIDATES, make_entry, past, rental_entry, call, BAYUT, SELOGER, WEATHER
from petool_jax import petoolbench as pb
from petool_jax.prompt_fit import fit_prompt

# Transcribed from the authors' prompt_template.py (FORMAT_ENTRY_INPUT_WO_HISTORY), rendered
# with str.format as their code does; independent of petool_jax.petoolbench_text.
AUTHORS_WO_HISTORY = """
Your task is to use a tool that meets real-time user instructions.
Available tools you can call with input parameters are listed here:
{apis_candidate}

Generate your tool call in the following format:
{{"tool_name": the tool's name, "parameters": input parameters in JSON string format on a single line}}
Example output #1:
{{"tool_name": "<Search>.<Arxiv Search>.<Get Arxiv Article Information>", "parameters": {{"query": "machine learning", "sort_by": "date", "limit": 3}}
Example output #2:
{{"tool_name": "<Travel>.<flight | flight aggregator>.<flight>", "parameters": {{}}}}

Remember:
Generate only the tool call in JSON format without any additional outputs.
You will now receive a user instruction; please generate the tool call. 
Begin!

"""


def test_none_prompt_is_the_authors_template_byte_for_byte():
    entry = rental_entry()
    system, user = pb.build_messages(entry, pb.NO_HISTORY)
    assert system == {"role": "system", "content": AUTHORS_WO_HISTORY.format(apis_candidate=entry["apis_candidate"])}
    assert user == {"role": "user", "content": entry["query"]}
    assert "Interaction history" not in system["content"] and pb.history_of(entry, "none") == []
    # A list (not the release's JSON string) is serialised the release's way.
    as_list = dict(entry, apis_candidate=json.loads(entry["apis_candidate"]))
    assert pb.build_messages(as_list, "none")[0] == system
    # An entry that carries its own instruction_wo_history is used as is.
    own = dict(entry, instruction_wo_history="own prompt")
    assert pb.build_messages(own, "none")[0]["content"] == "own prompt"
    (turn,) = pb.build_messages(entry, "none", prompt_format="alpaca_user")
    assert turn["content"] == system["content"] + "\n" + entry["query"]


def test_none_prompts_on_the_release_equal_the_template(shared_dir):
    with gzip.open(shared_dir / "petoolbench" / "test_dev.json.gz", "rt", encoding="utf-8") as f:
        entries = json.load(f)
    for entry in entries:
        expected = AUTHORS_WO_HISTORY.format(apis_candidate=entry["apis_candidate"])
        assert pb.build_messages(entry, "none")[0]["content"] == expected
    # `none` needs no instruction key: loading for it alone accepts entries without them.
    assert len(pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz", ["none"])) == len(entries)


def _chars(messages):
    return sum(len(m["content"]) for m in messages)


def _long_entry():
    """Candidates whose two long descriptions alone exceed the budgets used below."""
    long_bayut = dict(BAYUT, tool_description="B" * 3000)
    long_weather = dict(WEATHER, required_parameters=[
        {"name": "city", "type": "STRING", "description": "C" * 2000, "default": "London"}])
    candidates = [long_bayut, SELOGER, long_weather] + CANDIDATES[3:]
    history = [past(f"Rentals {i}.", BAYUT, locationExternalIDs=str(i)) for i in range(6)]
    return make_entry(9, "Rentals in Dubai.", call(BAYUT, locationExternalIDs="5002"),
                      {"p": history}, candidates=candidates)


def test_fit_prompt_keeps_released_prompt_and_drops_oldest_first():
    entry = rental_entry()
    full = pb.build_messages(entry, "p")
    assert fit_prompt(entry, "p", _chars, _chars(full))[0] == full
    two = pb.build_messages(entry, "p", drop_oldest=2)
    messages, fit = fit_prompt(entry, "p", _chars, _chars(two))
    assert messages == two and (fit.n_dropped, fit.n_descriptions_cut, fit.over_limit) == (2, 0, False)
    assert fit.cut and not fit.lost_history and fit.tokens == _chars(two) and fit.n_history == 5


def test_fit_prompt_cuts_longest_descriptions_before_giving_up_the_history():
    entry = _long_entry()
    no_history = _chars(pb.build_messages(entry, "p", drop_oldest=6))
    budget = no_history - 1500  # the candidates alone are over: history mode used to give up everything
    messages, fit = fit_prompt(entry, "p", _chars, budget)
    assert fit.n_dropped == 0 and not fit.lost_history and not fit.over_limit
    assert fit.n_descriptions_cut == 2 and _chars(messages) <= budget
    # The largest cap that fits: one more character does not fit.
    assert _chars(pb.build_messages(entry, "p", 0, description_cap=fit.description_cap + 1)) > budget
    tools = pb.split_instruction(messages[0]["content"])[2]
    shown = json.loads(tools[tools.index("[{"):tools.rindex("}]") + 2])
    assert [t["tool_name"] for t in shown] == [t["tool_name"] for t in pb.candidates(entry)]
    assert shown[0]["tool_description"] == "B" * fit.description_cap + "..."
    assert shown[2]["required_parameters"][0] == {"name": "city", "type": "STRING",
                                                  "description": "C" * fit.description_cap + "...",
                                                  "default": "London"}
    assert shown[1] == SELOGER  # short descriptions are untouched
    assert messages[1]["content"] == entry["query"]


def test_fit_prompt_then_drops_history_then_reports_over_limit():
    entry = _long_entry()
    bare = _chars(pb.build_messages(entry, "p", drop_oldest=6, description_cap=0))
    whole = _chars(pb.build_messages(entry, "p", drop_oldest=0, description_cap=0))
    budget = (bare + whole) // 2
    messages, fit = fit_prompt(entry, "p", _chars, budget)
    assert fit.description_cap == 0 and 0 < fit.n_dropped < 6 and not fit.over_limit
    assert _chars(pb.build_messages(entry, "p", fit.n_dropped - 1, description_cap=0)) > budget
    messages, fit = fit_prompt(entry, "p", _chars, bare - 1)
    assert fit.over_limit and fit.lost_history and fit.tokens == bare and messages[1]["content"] == entry["query"]


def test_fit_prompt_for_none_cuts_descriptions_only():
    entry = _long_entry()
    full = _chars(pb.build_messages(entry, "none"))
    messages, fit = fit_prompt(entry, "none", _chars, full - 2000)
    assert fit.n_history == 0 and fit.n_dropped == 0 and fit.n_descriptions_cut == 2 and not fit.lost_history
    with pytest.raises(ValueError, match="unknown setting"):
        pb.build_messages(entry, "x")
