"""petool_jax.petoolbench on fixtures written here: loading, prompt parts, messages, fitting."""

from __future__ import annotations

import gzip
import json

import pytest

from eval_fixtures import BAYUT, CANDIDATES, rental_entry, small_benchmark, write_json
from petool_jax.app.cli import UserError
from petool_jax import petoolbench as pb


def test_load_combined_json_and_gz(tmp_path):
    entries = small_benchmark()
    plain = write_json(tmp_path / "user_entries_test.json", entries)
    packed = tmp_path / "user_entries_test.json.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        json.dump(entries, f)
    assert pb.load_entries(plain) == entries
    assert pb.load_entries(packed) == entries
    assert pb.available_settings(entries) == ("p", "r", "c")


def test_load_per_setting_file_needs_only_its_setting(tmp_path):
    entries = small_benchmark()
    for e in entries:
        del e["instruction_preferred"], e["instruction_chronological"]
    path = write_json(tmp_path / "user_entries_test_r.json", entries)
    assert [e["entry_id"] for e in pb.load_entries(path)] == [1, 2, 3]
    assert pb.available_settings(entries) == ("r",)
    # The same content under a combined name lacks p and c.
    combined = write_json(tmp_path / "user_entries_test.json", entries)
    with pytest.raises(UserError, match=r"entry 0 \(entry_id 1\): missing key 'instruction_preferred'"):
        pb.load_entries(combined)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda es: es[1].pop("query"), r"entry 1 \(entry_id 2\): missing key 'query'"),
        (lambda es: es[2].__setitem__("apis_candidate", "[{"), r"entry 2 .*'apis_candidate': not valid JSON"),
        (lambda es: es[0].__setitem__("api_call_ground_truth", {"tool_name": "x"}),
         r"entry 0 .*'api_call_ground_truth' must be an object"),
        (lambda es: es[2].__setitem__("entry_id", 1), r"entry 2 \(entry_id 1\): duplicate entry_id 1 \(also entry 0\)"),
        (lambda es: es.__setitem__(1, ["not", "an", "object"]), r"entry 1: expected a JSON object, got list"),
    ],
)
def test_load_rejects_bad_entries_naming_file_index_and_key(tmp_path, mutate, message):
    entries = small_benchmark()
    mutate(entries)
    path = write_json(tmp_path / "bad.json", entries)
    with pytest.raises(UserError, match=message) as info:
        pb.load_entries(path)
    assert str(path) in str(info.value)


def test_load_rejects_wrong_file_formats(tmp_path):
    jsonl = tmp_path / "preds.jsonl"
    jsonl.write_text('{"entry_id": 1}\n{"entry_id": 2}\n')
    with pytest.raises(UserError, match=r"preds.jsonl: line 2 column 1: .*looks like JSON Lines"):
        pb.load_entries(jsonl)
    obj = write_json(tmp_path / "obj.json", {"entries": []})
    with pytest.raises(UserError, match=r"obj.json: expected a JSON list .*got a JSON object"):
        pb.load_entries(obj)
    with pytest.raises(UserError, match=r"missing.json: no such file"):
        pb.load_entries(tmp_path / "missing.json")


def test_split_render_round_trip_and_parts():
    entry = rental_entry()
    for setting, key in pb.INSTRUCTION_KEYS.items():
        text = entry[key]
        head, history, tail = pb.split_instruction(text)
        assert pb.render_instruction(head, history, tail) == text
        assert head.endswith("Interaction history is:\n")
        assert tail.startswith("\n\nAvailable tools")
        assert json.dumps(CANDIDATES, ensure_ascii=False) in tail
    assert len(pb.history_of(entry, "p")) == 5
    assert pb.history_of(entry, "r")[1]["rating"] == 0
    # Non-ASCII text is kept as is, as in the release.
    assert "ünïcode" in entry["instruction_preferred"]
    with pytest.raises(ValueError, match="no 'Interaction history is:' marker"):
        pb.split_instruction("no history here")


def test_candidates_same_func_and_tool_name_parts():
    entry = rental_entry()
    assert [c["tool_name"] for c in pb.candidates(entry)] == [c["tool_name"] for c in CANDIDATES]
    assert pb.same_func_tool_names(entry) == {
        "<Business>.<Bayut>.<properties/list>",
        "<Business>.<Seloger>.<properties/list>",
        "<Business>.<Idealista.v2>.<properties/list>",
    }
    assert pb.split_tool_name("<Other>.<uk.boundaries.io>.<get zip>") == ("Other", "uk.boundaries.io", "get zip")
    assert pb.split_tool_name("not a full name") == ("", "", "not a full name")


def test_build_messages_formats_and_drop_oldest():
    entry = rental_entry()
    system_user = pb.build_messages(entry, "p")
    assert system_user == [
        {"role": "system", "content": entry["instruction_preferred"]},
        {"role": "user", "content": entry["query"]},
    ]
    alpaca = pb.build_messages(entry, "c", prompt_format="alpaca_user")
    assert alpaca == [{"role": "user", "content": entry["instruction_chronological"] + "\n" + entry["query"]}]
    dropped = pb.build_messages(entry, "p", drop_oldest=2)[0]["content"]
    head, history, tail = pb.split_instruction(dropped)
    assert history == pb.history_of(entry, "p")[2:]
    assert tail == pb.split_instruction(entry["instruction_preferred"])[2]
    with pytest.raises(ValueError, match="unknown prompt_format"):
        pb.build_messages(entry, "p", prompt_format="chatml")


def _char_count(messages):
    return sum(len(m["content"]) for m in messages)


def test_fit_messages_drops_the_fewest_oldest_entries():
    entry = rental_entry()
    full = pb.build_messages(entry, "p")
    assert pb.fit_messages(entry, "p", _char_count, _char_count(full)) == (full, 0)
    # Budget that fits exactly after dropping the two oldest entries.
    two = pb.build_messages(entry, "p", drop_oldest=2)
    budget = _char_count(two)
    messages, n_dropped = pb.fit_messages(entry, "p", _char_count, budget)
    assert (messages, n_dropped) == (two, 2)
    assert _char_count(pb.build_messages(entry, "p", drop_oldest=1)) > budget
    # The query and every candidate survive.
    assert messages[1]["content"] == entry["query"]
    assert entry["apis_candidate"] in messages[0]["content"]


def test_fit_messages_when_nothing_fits_returns_empty_history():
    entry = rental_entry()
    messages, n_dropped = pb.fit_messages(entry, "r", _char_count, 10)
    assert n_dropped == 5
    assert pb.split_instruction(messages[0]["content"])[1] == []
    assert messages[1]["content"] == entry["query"]


def test_fit_messages_calls_count_tokens_logarithmically():
    entry = rental_entry()
    calls = []

    def counting(messages):
        calls.append(1)
        return _char_count(messages)

    target = pb.build_messages(entry, "p", drop_oldest=4)
    _, n_dropped = pb.fit_messages(entry, "p", counting, _char_count(target))
    assert n_dropped == 4
    assert len(calls) <= 2 + 3  # full, empty, then a binary search over 5 entries
