"""What synthesis' stats.md and its plots SAY, checked against the files the same run wrote
(user_entries_{train,test}.json and the SFT/DPO files), not only that they exist."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import synth_fixtures as fx
from petool_jax.petoolbench import INSTRUCTION_KEYS, split_instruction, split_tool_name
from synth.config import load_synth_config
from synth.pipeline import run_pipeline


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """One offline run (30 users); every plot's drawn values are kept as they are drawn."""
    import synth.stats as stats

    tmp = tmp_path_factory.mktemp("synth_stats")
    fx.write_petoolbench_pool(tmp / "pool.json")
    drawn = {}
    original = stats._png

    def capture(path, draw):
        def recording(ax):
            draw(ax)
            drawn[path.name] = {
                "bars": [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches],
                "ticks": [t.get_text() for t in ax.get_yticklabels()] + [t.get_text() for t in ax.get_xticklabels()],
                "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
            }
        original(path, recording)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stats, "_png", capture)
        out = tmp / "out"
        run_pipeline(load_synth_config(None, fx.offline_overrides(str(tmp / "pool.json"), out, num_users=30)))

    def load(name):
        return json.loads((out / name).read_text(encoding="utf-8"))

    train, test = load("user_entries_train.json"), load("user_entries_test.json")
    assert train and test
    return out, (out / "stats.md").read_text(encoding="utf-8"), drawn, train, test, load


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def test_split_and_settings_tables_count_the_written_files(synthesized):
    out, md, _, train, test, load = synthesized
    assert row("train", len(train), len({e["func"] for e in train}), len(train), len(train)) in md
    assert row("test", len(test), len({e["func"] for e in test}), 0, 0) in md
    for setting in ("p", "r", "c"):
        sft, dpo = load(f"user_entries_sft_{setting}.json"), load(f"user_entries_dpo_{setting}.json")
        # The table's "SFT rows" / "DPO rows" are the files' real row counts.
        assert row(setting, len(test), len(sft), len(dpo)) in md


def test_category_group_size_and_history_tables_match_the_entries(synthesized):
    _, md, _, train, test, _ = synthesized
    everything = train + test
    categories = Counter(split_tool_name(e["api_call_ground_truth"]["tool_name"])[0] for e in everything)
    for category, n in categories.most_common(25):
        assert row(category, n) in md
    for size, n in Counter(len(e["apis_same_func"]) for e in everything).items():
        assert row(size, n) in md
    for setting, key in INSTRUCTION_KEYS.items():
        lengths = [len(split_instruction(e[key])[1]) for e in everything]
        assert row(setting, min(lengths), f"{np.mean(lengths):.2f}", max(lengths)) in md
    ratings = [h["rating"] for e in everything for h in split_instruction(e[INSTRUCTION_KEYS["r"]])[1]]
    assert f"{ratings.count(0)} calls rated 0, {ratings.count(1)} rated 1." in md
    assert ratings.count(0) > 0 and ratings.count(1) > 0


def test_plots_draw_the_entries(synthesized):
    out, _, drawn, train, test, load = synthesized
    assert set(drawn) >= {"categories.png", "group_sizes.png", "history_lengths.png", "settings.png"}
    for name in drawn:
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    everything = train + test

    categories = Counter(split_tool_name(e["api_call_ground_truth"]["tool_name"])[0] for e in everything)
    bars = drawn["categories.png"]["bars"]
    top = sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:20][::-1]
    assert [b[2] for b in bars] == [n for _, n in top]  # horizontal bars: widths are the counts
    assert drawn["categories.png"]["ticks"][:len(top)] == [c for c, _ in top]

    sizes = Counter(len(e["apis_same_func"]) for e in everything)
    assert [b[3] for b in drawn["group_sizes.png"]["bars"]] == [sizes[k] for k in sorted(sizes)]

    lengths = {s: [len(split_instruction(e[k])[1]) for e in everything] for s, k in INSTRUCTION_KEYS.items()}
    edges = np.arange(0, max(max(v) for v in lengths.values()) + 2)
    heights = [b[3] for b in drawn["history_lengths.png"]["bars"]]
    expected = [int(c) for s in ("p", "r", "c") for c in np.histogram(lengths[s], bins=edges)[0]]
    assert heights == expected
    assert drawn["history_lengths.png"]["legend"] == ["p", "r", "c"]

    sft_rows = [len(load(f"user_entries_sft_{s}.json")) for s in ("p", "r", "c")]
    heights = [b[3] for b in drawn["settings.png"]["bars"]]
    assert heights == sft_rows + [len(test)] * 3
