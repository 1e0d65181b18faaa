"""Synthesis measured against the real released entries in ../shared (skipped without it).

The released file is split by entry into two disjoint halves (synth/halves.py): tools are
harvested from the pool half, the synthesized data is compared with the evaluation half
(`petool synth compare`'s figures). Nothing here was tuned on the evaluation half; the two
calibrated defaults (structure.distractor_nearest, structure.attribute_signal) were set
against the pool half.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from petool_jax import petoolbench as pb
from synth.compare import figures
from synth.config import load_synth_config
from synth.halves import split_halves, write_halves
from synth.pipeline import run_pipeline
from synth.quality import failed_check, structure_problem
from synth.sources import load_pool
from synth.structure import targets
from synth.structure_stats import entry_facts

PRESET = Path(__file__).resolve().parents[1] / "configs" / "synth" / "petoolbench.yaml"


@pytest.fixture(scope="module")
def test_dev(shared_dir):
    return shared_dir / "petoolbench" / "test_dev.json.gz"


@pytest.fixture(scope="module")
def released(test_dev):
    with gzip.open(test_dev, "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def synthesized(test_dev, tmp_path_factory):
    """Offline synthesis (llm.model=none alone) from the pool half: 300 users, every instance in test."""
    tmp = tmp_path_factory.mktemp("release_halves")
    pool_path, eval_path = write_halves(test_dev, tmp, seed=0)
    out = tmp / "synth"
    config = load_synth_config(PRESET, [f"tool_pool={pool_path}", f"output_dir={out}", "llm.model=none", "num_users=300",
                                  "test_fraction=1.0", f"reference={eval_path}"])
    assert config["embedding"]["model"] == "local-hash"  # implied by llm.model=none
    run_pipeline(config)
    return {
        "pool_path": pool_path, "out": out, "config": config,
        "reference": figures(pb.load_entries(eval_path)),
        "entries": pb.load_entries(out / "user_entries_test.json"),
        "figures": figures(pb.load_entries(out / "user_entries_test.json")),
    }


def test_halves_are_disjoint_and_cover_the_file(released):
    pool, evaluation = split_halves(released, seed=0)
    assert len(pool) == len(evaluation) == 306
    assert not {e["entry_id"] for e in pool} & {e["entry_id"] for e in evaluation}
    assert split_halves(list(reversed(released)), seed=0)[0] == pool  # the file's order does not matter


def test_quality_checks_accept_every_released_entry(released, test_dev):
    pool = load_pool([str(test_dev)])
    config = load_synth_config(PRESET, [f"tool_pool={test_dev}"])
    assert [structure_problem(e) for e in released] == [None] * 612
    assert [failed_check(e, None, pool, config) for e in released] == [None] * 612


def test_harvested_pool_supplies_the_targets(synthesized):
    pool = load_pool([str(synthesized["pool_path"])])
    t = targets(synthesized["config"], pool.structure)
    assert t.source == "harvested entries: pool_half.json"
    assert len(t.p_lengths) == 306 and max(t.p_lengths) == 20
    assert t.visible_p == 0.46 and t.visible_rc == 0.39  # visibility always from config
    assert abs(sum(t.group_sizes) - 1) < 1e-9 and 0.2 < t.same_category_share < 0.4


def test_exact_invariants_on_every_synthesized_entry(synthesized):
    entries = synthesized["entries"]
    assert len(entries) >= 800
    for e in entries:
        facts = entry_facts(e)
        assert not any(facts["exact_api_in"].values()), e["entry_id"]
        assert facts["rival_in_p"] is False
        assert facts["r_rival_rated0"] and not facts["r_rival_rated1"] and not facts["r_preferred_rated0"]
        assert facts["r_rated0_only_rivals"] and not facts["r_other_rating"]
        assert facts["c_is_r_rated0_first"] and facts["c_rated1_is_p_suffix"]
        assert facts["truth_among_candidates"] and facts["candidates"] == 10
        assert facts["length"]["p"] <= 20 and facts["length"]["r"] == facts["length"]["c"] <= 20


def test_structure_matches_the_other_half(synthesized):
    ref, data = synthesized["reference"]["structure"], synthesized["figures"]["structure"]
    for s in "prc":
        assert abs(data[f"visible_{s}"] - ref[f"visible_{s}"]) <= 0.05, s
    assert abs(data["r_rated0_fraction_mean"] - ref["r_rated0_fraction_mean"]) <= 0.03
    for key in ("same_func_2", "same_func_3", "same_func_4plus", "distractors_same_category"):
        assert abs(data[key] - ref[key]) <= 0.05, key
    assert abs(data["query_in_r_rated0"] - ref["query_in_r_rated0"]) <= 0.08
    assert data["length_p"][1] == data["length_r"][1] == 20  # medians, as in the release


def test_rule_baseline_scores_alike_on_both(synthesized):
    ref, data = synthesized["reference"]["rule"], synthesized["figures"]["rule"]
    for s in "prc":
        assert abs(data[s]["tool_acc"] - ref[s]["tool_acc"]) <= 0.05, (s, data[s]["tool_acc"], ref[s]["tool_acc"])


def test_attribute_evidence_beats_the_uniform_guess_on_hidden_preferences(synthesized):
    data = synthesized["figures"]["rule"]
    for s in "prc":
        assert data[s]["n_hidden_with_group"] >= 300
        assert data[s]["attribute_alone_hidden"] >= data[s]["uniform_hidden"] + 0.04, s


def test_stats_md_holds_the_comparison_with_the_reference(synthesized):
    text = (synthesized["out"] / "stats.md").read_text(encoding="utf-8")
    assert "## Structure against the reference" in text
    assert "| a call of the preferred tool appears in the history: p | " in text
    assert "rule baseline Tool Acc, r, preferred tool hidden" in text
