"""`petool synth compare` and the structure facts it reports, on files the tests write themselves."""

from __future__ import annotations

import json

import pytest

import synth_fixtures as fx
from eval_fixtures import rental_entry, seloger_entry, small_benchmark, weather_entry, write_json
from petool_jax import petoolbench as pb
from petool_jax.app.cli import main
from petool_jax.petoolbench_structure import preferred_visible
from synth.compare import figures
from synth.config import load_synth_config
from synth.structure_stats import entry_facts, summarize


def test_facts_of_hand_made_entries():
    # rental_entry: truth Bayut; r rates Seloger once 1, twice 0; c is not r reordered.
    facts = entry_facts(rental_entry())
    assert facts["visible"] == {"p": True, "r": True, "c": True}
    assert facts["rival_in_p"] is True  # a Seloger call in p
    assert facts["r_rival_rated0"] and facts["r_rival_rated1"] and not facts["r_preferred_rated0"]
    assert facts["r_rated0"] == 2 and facts["r_rated0_fraction"] == 2 / 5
    assert facts["c_is_r_rated0_first"] is False
    assert facts["same_func_candidates"] == 3 and facts["distractors"] == 5
    assert facts["distractors_same_category"] == 0 and facts["truth_among_candidates"]
    # seloger_entry: r = [Bayut 0, Seloger 1]; c = [Bayut, Bayut (another call), Seloger].
    facts = entry_facts(seloger_entry())
    assert facts["r_rival_rated0"] and not facts["r_rival_rated1"] and facts["c_is_r_rated0_first"] is False
    summary = summarize([entry_facts(e) for e in small_benchmark()])
    assert summary["visible_p"] == 2 / 3  # the weather entry's history holds only a sports call
    assert summary["same_func_3"] == 2 / 3 and summary["same_func_1"] == 1 / 3
    assert summary["r_rated0_fraction_range"] == (0.0, 0.5)
    assert not preferred_visible(weather_entry(), "p")


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    pool, out = fx.synthesize_offline(tmp, num_users=30)
    return tmp, pool, out


def test_compare_prints_and_writes_the_table(synthesized, capsys):
    tmp, pool, out = synthesized
    data = out / "user_entries_test.json"
    assert main(["synth", "compare", "--reference", pool, "--data", str(data), "--out", str(tmp / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert (tmp / "cmp" / "compare.md").read_text(encoding="utf-8") == printed
    saved = json.loads((tmp / "cmp" / "compare.json").read_text(encoding="utf-8"))
    entries = pb.load_entries(data)
    shown = sum(preferred_visible(e, "p") for e in entries) / len(entries)
    assert saved["data_figures"]["structure"]["visible_p"] == shown
    # The fixture pool shows every tool of the group, rated 1: its preferred tool is always visible.
    ref_shown = saved["reference_figures"]["structure"]["visible_p"]
    assert ref_shown == 1.0
    row = f"| a call of the preferred tool appears in the history: p | 100.0% | {100 * shown:.1f}% | {100 * (shown - 1):+.1f} |"
    assert row in printed
    for s in "prc":
        rule = saved["data_figures"]["rule"][s]
        assert rule["n_shown"] + rule["n_hidden"] == rule["n"] == len(entries)
        assert f"rule baseline Tool Acc, {s}, preferred tool hidden" in printed
    assert saved["data_figures"] == json.loads(json.dumps(figures(entries)))


@pytest.mark.parametrize("argv, message", [
    (["synth", "compare", "--reference", "a.json"], "compare needs --reference FILE and --data FILE"),
    (["synth", "compare", "--config", "c.yaml", "--reference", "a", "--data", "b"], "no --config or key=value"),
    (["synth", "--config", "c.yaml", "--reference", "a.json"], "--reference/--data/--out belong to `petool synth compare`"),
    (["synth", "num_users=3"], "the following arguments are required: --config"),
])
def test_compare_argument_errors_are_clear(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_compare_names_a_missing_file(tmp_path, capsys):
    path = tmp_path / "ref.json"
    write_json(path, small_benchmark())
    assert main(["synth", "compare", "--reference", str(path), "--data", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_llm_model_none_alone_runs_offline(tmp_path):
    pool = fx.write_petoolbench_pool(tmp_path / "pool.json")
    config = load_synth_config(None, [f"tool_pool={pool}", "llm.model=none"])
    assert config["embedding"]["model"] == "local-hash"
    from petool_jax.app.cli import UserError

    with pytest.raises(UserError, match=r"set embedding\.model=local-hash"):
        load_synth_config(None, [f"tool_pool={pool}", "llm.model=none", "embedding.model=text-embedding-3-small"])
