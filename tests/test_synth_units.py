"""Units of the synthesis stages: local-hash embeddings, pair selection and group joining,
preferences, offline understanding, and each quality check catching what it should."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import synth_fixtures as fx
from petool_jax import petoolbench as pb
from petool_jax.petoolbench import render_instruction, split_instruction
from synth.config import load_synth_config
from synth.embeddings import hash_embed
from synth.groups import candidate_pairs, join
from synth.instances import build_instances
from synth.preferences import run_preferences, tool_groups
from synth.quality import failed_check, filter_instances, structure_problem
from synth.sources import load_pool
from synth.understanding import apply_understanding, heuristic_understanding, run_understanding


def test_local_hash_embedding_is_pinned_and_meaningful():
    # 15 features (2 words, 13 character 3-grams) hashed with CRC32 into 8 signed buckets.
    expected = np.array([-1, -1, 3, 0, -1, 1, -1, 1]) / math.sqrt(15)
    np.testing.assert_allclose(hash_embed(["weather forecast"], 8)[0], expected, rtol=0, atol=1e-12)
    a, b, c = hash_embed(["Returns the weather forecast for a city", "weather forecast of a city", "Returns a stock quote"], 512)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-12)
    assert a @ b == pytest.approx(0.78928, abs=1e-4) and a @ c == pytest.approx(0.36181, abs=1e-4)
    assert hash_embed([""], 8).tolist() == [[0.0] * 8]


def test_candidate_pairs_skip_same_tool_and_sort_by_similarity():
    vectors = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=float)
    owners = ["t1", "t1", "t2", "t3"]
    pairs = candidate_pairs(vectors, owners, low=0.5, k=3)
    # 0-1 share a tool; 0-3 and 1-3 are orthogonal; 2-3 at 0.6.
    assert pairs == [(0.8, 0, 2), (0.8, 1, 2), (0.6, 2, 3)]


def test_join_keeps_one_api_per_tool_and_bounds_group_size():
    keys = ["A.x", "A.y", "B.x", "C.x", "D.x"]
    owners = ["A", "A", "B", "C", "D"]
    # A.x~B.x, then A.y~B.x would put two APIs of A together: refused; then C and D join up to 3.
    assigned = join(keys, owners, [(0, 2), (1, 2), (2, 3), (3, 4)], max_size=3)
    assert assigned == {"A.x": "g00000", "B.x": "g00000", "C.x": "g00000"}
    assert join(keys, owners, [(3, 4)], max_size=3) == {"C.x": "g00000", "D.x": "g00000"}


@pytest.fixture(scope="module")
def harvested(tmp_path_factory):
    path = fx.write_petoolbench_pool(tmp_path_factory.mktemp("pool") / "pool.json")
    config = load_synth_config(None, fx.offline_overrides(path, tmp_path_factory.mktemp("out"), num_users=20))
    pool = load_pool([path])
    result, _ = run_understanding(pool, config, None, offline=True)
    apply_understanding(pool, result)
    return pool, config


def test_offline_understanding_reads_the_documents(tmp_path):
    pool = load_pool([fx.write_toolbench_tools(tmp_path / "tools")])
    attrs = ["ease_of_use", "documentation_quality", "authentication", "pricing", "reliability", "support"]
    value = heuristic_understanding(pool, "<Weather>.<WeatherC>", attrs)
    assert value["attributes"] == {
        "ease_of_use": "one or two required parameters", "documentation_quality": "brief",
        "authentication": "no credential parameters", "pricing": "paid", "reliability": "low service level",
        "support": "unknown",
    }
    assert value["apis"]["current"] == "Returns the current weather for a city"
    assert heuristic_understanding(pool, "<Weather>.<WeatherA>", attrs)["attributes"]["reliability"] == "high service level"


def test_preferences_pick_one_tool_per_group(harvested):
    pool, config = harvested
    result, report = run_preferences(pool, config, None)
    users = result["users"]
    assert len(users) == 20 and report["users"] == 20
    groups_of = tool_groups(pool)
    for user in users:
        preferred = user["preferred_tools"]
        assert user["anchor"] == preferred[0]
        assert 2 <= len(preferred) <= 3
        funcs = [f for t in preferred for f in groups_of[t]]
        assert len(funcs) == len(set(funcs))  # no group holds two of the user's tools
        for func, tool in user["groups"].items():
            assert tool in preferred and func in groups_of[tool]
    assert len({tuple(u["preferred_tools"]) for u in users}) > 3  # users differ
    again, _ = run_preferences(pool, config, None)
    assert again == result


def _instances(harvested):
    pool, config = harvested
    users = run_preferences(pool, config, None)[0]["users"]
    entries, metas, _ = build_instances(pool, users, config)
    return pool, config, entries, metas


def _rewrite_history(entry: dict, key: str, change) -> None:
    head, history, tail = split_instruction(entry[key])
    change(history)
    entry[key] = render_instruction(head, history, tail)


def test_each_quality_check_catches_its_fault(harvested):
    pool, config, entries, metas = _instances(harvested)
    assert len(entries) >= 30
    assert all(failed_check(e, m, pool, config) is None for e, m in zip(entries, metas))
    entry, meta = entries[0], metas[0]

    def broken(change) -> str | None:
        e = copy.deepcopy(entry)
        change(e)
        return failed_check(e, meta, pool, config)

    assert broken(lambda e: e.update(instruction_ratings=e["instruction_ratings"].replace("Interaction history is:\n[", "Interaction history is:\n{"))) == "valid JSON"
    assert broken(lambda e: e.update(apis_candidate=e["apis_candidate"][:-5])) == "valid JSON"
    assert broken(lambda e: e.update(apis_candidate=json.dumps(json.loads(e["apis_candidate"])[:9]))) == "candidate count"

    def drop_truth(e):
        cands = [c for c in json.loads(e["apis_candidate"]) if c["tool_name"] != e["api_call_ground_truth"]["tool_name"]]
        e["apis_candidate"] = json.dumps(cands + [cands[0] | {"tool_name": "<X>.<Y>.<Z>"}])

    assert broken(drop_truth) == "ground truth among candidates"
    assert broken(lambda e: e["api_call_ground_truth"]["parameters"].update(bogus=1)) == "parameters valid for the ground-truth schema"
    assert broken(lambda e: e["api_call_ground_truth"]["parameters"].pop("city")) == "parameters valid for the ground-truth schema"

    def flip_rating(e):
        _rewrite_history(e, "instruction_ratings", lambda h: h[0].update(rating=1 - h[0]["rating"]))

    assert broken(flip_rating) == "history has the release's structure"
    flipped = copy.deepcopy(entry)
    flipped_first = pb.history_of(flipped, "r")[0]
    flip_rating(flipped)
    assert structure_problem(flipped) == ("r rates a rival 1" if flipped_first["rating"] == 0
                                          else "r rates a call of a non-rival tool 0")

    rival_call = next(h for h in pb.history_of(entry, "r") if h["rating"] == 0)
    truth_call = {"instruction": "x", "tool_call": entry["api_call_ground_truth"]}
    cases = {
        "p shows a rival": lambda e: _rewrite_history(e, "instruction_preferred", lambda h: h.append(
            {k: v for k, v in rival_call.items() if k != "rating"})),
        "a history shows the ground-truth API": lambda e: _rewrite_history(e, "instruction_preferred",
                                                                          lambda h: h.append(truth_call)),
        "c is not r's calls with the rated-0 ones first": lambda e: _rewrite_history(
            e, "instruction_chronological", lambda h: h.reverse()),
        "r has no rival rated 0": lambda e: _rewrite_history(
            e, "instruction_ratings", lambda h: h.__setitem__(slice(None), [x for x in h if x["rating"] == 1])),
    }
    for reason, change in cases.items():
        e = copy.deepcopy(entry)
        change(e)
        assert structure_problem(e) == reason
        assert failed_check(e, meta, pool, config) == "history has the release's structure"
    # Hiding the preferred tool is allowed: most released histories do not show it.
    hidden = copy.deepcopy(entry)
    truth_tool = meta["truth_tool"][1:-1].split(">.<")[1]
    _rewrite_history(hidden, "instruction_preferred",
                     lambda h: h.__setitem__(slice(None), [x for x in h if f"<{truth_tool}>" not in x["tool_call"]["tool_name"]]))
    assert structure_problem(hidden) is None

    kept, kept_metas, dropped = filter_instances([entry, copy.deepcopy(entry)] + entries[1:3], [meta, meta] + metas[1:3], pool, config)
    assert len(kept) == 3 and dropped["duplicate query for the user"] == 1
    assert sum(dropped.values()) == 1
