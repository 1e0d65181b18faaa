"""`petool experiment`: the recipe on a release file, split by entry into a pool half and an
evaluation half. Fast: a small release-format fixture and a tiny GGUF model made here (every
stage runs; the halves are disjoint; the report has every row). Slow: the real test_dev file
with SmolLM2 and the CPU plan, a few entries."""

import itertools
import json
import pathlib

import pytest

from petool_jax.app.cli import main as petool
from petool_jax.app.demo.rows import ROWS
from petool_jax.petoolbench import SETTINGS

pytestmark = pytest.mark.filterwarnings("ignore")

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "experiments" / "petoolbench-smollm2.yaml"
TINY_PLAN = ["plans.cpu.num_users=12", "plans.cpu.instances_per_user=3", "plans.cpu.test_fraction=0.2",
             "plans.cpu.candidates=6", "plans.cpu.history_max=8", "plans.cpu.preferred_min=2",
             "plans.cpu.preferred_max=4", "plans.cpu.max_seq_len=4096", "plans.cpu.sft_steps=2",
             "plans.cpu.sft_batch=2", "plans.cpu.micro_batch=2", "plans.cpu.dpo_steps=1", "plans.cpu.dpo_batch=2",
             "plans.cpu.lora_rank=4", "plans.cpu.lora_alpha=8", "plans.cpu.max_new_tokens=8",
             "plans.cpu.untrained_max_new_tokens=8", "plans.cpu.eval_batch=4"]


def release_fixture(path: pathlib.Path) -> list[dict]:
    """12 entries in the release's format: the synthesis tests' 6-entry pool, twice (new ids and
    query wording), so each half has tools of every category."""
    from synth_fixtures import petoolbench_pool_entries

    entries = []
    for copy in range(2):
        for entry in petoolbench_pool_entries():
            entry = json.loads(json.dumps(entry))
            entry["entry_id"] = 1000 * (copy + 1) + entry["entry_id"]
            if copy:
                entry["query"] = entry["query"] + " Please."
            entries.append(entry)
    path.write_text(json.dumps(entries), encoding="utf-8")
    return entries


def test_split_is_by_entry_disjoint_and_seeded():
    from petool_jax.errors import UserError
    from petool_jax.app.experiment.split import check_disjoint, leaked_rows, scrub_rows, split_entries

    entries = [{"entry_id": i, "query": f"Query {i}", "api_call_ground_truth": {"tool_name": "t", "parameters": {"i": i}}}
               for i in range(101)]
    entries[7]["query"] = entries[8]["query"] = "shared query"  # the release repeats some queries
    pool, evaluation = split_entries(entries, seed=3)
    assert len(pool) in (50, 51) and len(pool) + len(evaluation) == 101
    assert ({7, 8} <= {e["entry_id"] for e in pool}) or ({7, 8} <= {e["entry_id"] for e in evaluation})
    assert {e["entry_id"] for e in pool}.isdisjoint({e["entry_id"] for e in evaluation})
    assert {e["entry_id"] for e in pool} | {e["entry_id"] for e in evaluation} == set(range(101))
    assert split_entries(entries, seed=3)[0] == pool  # deterministic
    assert [e["entry_id"] for e in split_entries(entries, seed=4)[0]] != [e["entry_id"] for e in pool]
    assert [e["entry_id"] for e in pool] != list(range(50))  # shuffled, not the file's head
    with pytest.raises(UserError, match="share 1 entry ids and 1 queries"):
        check_disjoint(pool, evaluation + [pool[0]])
    with pytest.raises(UserError, match="repeated entry_id"):
        split_entries(entries + [entries[0]], seed=0)
    rows = [{"instruction": "x", "input": "q7"}, {"instruction": "x", "input": "other"},
            {"instruction": 'Interaction history is:\n[{"instruction": "q9", "tool_call": {}}, '
                            '{"instruction": "q1", "tool_call": {}}]\nrest', "input": "z"}]
    assert leaked_rows(rows, {"q7", "q9"}) == [0, 2]
    kept, counts = scrub_rows(rows, {"q7", "q9"})
    assert counts == {"rows": 3, "dropped_query_is_an_evaluation_query": 1, "history_calls_cut": 1}
    assert [r["input"] for r in kept] == ["other", "z"]
    assert kept[1]["instruction"] == 'Interaction history is:\n[{"instruction": "q1", "tool_call": {}}]\nrest'
    assert leaked_rows(kept, {"q7", "q9"}) == []


def test_config_errors_name_the_key(tmp_path):
    from petool_jax.errors import UserError
    from petool_jax.app.experiment.config import load_experiment_config, plan_of

    config = load_experiment_config(CONFIG)
    assert config["plan"] == "cpu" and config["split"]["pool_fraction"] == 0.5
    full = plan_of(config, "full")
    assert full.sft_samples == 2000 and full.eval_limit is None and full.lora_rank == 8
    assert full.sft_steps * full.sft_batch == 3 * 2000 // 16 * 16
    assert {r["model"] for r in config["paper_rows"]} >= {"PEToolLLaMA", "LLaMA3-8B", "GPT-4o"}
    assert next(r for r in config["paper_rows"] if r["model"] == "PEToolLLaMA")["tool_acc"] == 78.4
    with pytest.raises(UserError, match="unknown key"):
        load_experiment_config(CONFIG, ["plans.cpu.sft_stepz=3"])
    with pytest.raises(UserError, match="override datta=...: unknown key 'datta'; known keys: data, model"):
        load_experiment_config(CONFIG, ["datta=x"])
    assert plan_of(load_experiment_config(CONFIG, ["plans.cpu.sft_steps=7"]), "full").sft_samples == 2000
    with pytest.raises(UserError, match="--plan gpu"):
        plan_of(config, "gpu")
    assert petool(["experiment", "--config", str(CONFIG), "--data", str(tmp_path / "none.json"),
                   "--out", str(tmp_path / "o")]) == 2


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory):
    from gguf_fixtures import write_tiny_gguf

    root = tmp_path_factory.mktemp("experiment")
    release = root / "release.json"
    entries = release_fixture(release)
    gguf = root / "tiny.gguf"
    write_tiny_gguf(gguf, tied=True)
    out = root / "out"
    status = petool(["experiment", "--config", str(CONFIG), "--data", str(release), "--out", str(out),
                     "--limit", "4", f"model={gguf}", *TINY_PLAN])
    assert status == 0
    return out, entries


def test_experiment_runs_every_stage_on_disjoint_halves(experiment_run):
    out, entries = experiment_run
    split = json.loads((out / "data" / "split.json").read_text())
    pool, evaluation = set(map(str, split["pool_ids"])), set(map(str, split["eval_ids"]))
    assert pool.isdisjoint(evaluation) and len(pool) == len(evaluation) == 6
    assert pool | evaluation == {str(e["entry_id"]) for e in entries}
    # synthesis read the pool half only
    synth = (out / "data" / "synth.yaml").read_text()
    assert "pool_half.json" in synth and "eval_half.json" not in synth
    # every evaluated entry is from the evaluation half
    for model in ROWS:
        rows = [json.loads(line) for line in (out / "eval" / model.replace("+", "_") / "predictions.jsonl")
                .read_text().splitlines()]
        assert rows and {str(r["entry_id"]) for r in rows} <= evaluation
        assert {r["setting"] for r in rows} == set(SETTINGS)
    report = json.loads((out / "report.json").read_text())
    assert report["facts"]["disjoint"]["evaluated_entries"] == 4
    commands = (out / "commands.sh").read_text()
    for command in ("# this run: petool experiment", "petool convert --gguf", "# split:", "petool synth --config",
                    "petool train sft", "petool train dpo", "--merge-lora", "petool eval run --model rule",
                    "eval_half.json"):
        assert command in commands, command


def test_experiment_report_has_every_row_and_the_paper_rows(experiment_run):
    out, _ = experiment_run
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert {(r["model"], r["setting"]) for r in rows} == set(itertools.product(ROWS, SETTINGS))
    for row in rows:
        assert row["status"] == "done" and row["n"] == 4, row
        assert 0.0 <= row["tool_acc"] <= 1.0 and row["tool_acc_se"] is not None
        assert row["visible"]["n"] + row["hidden"]["n"] == 4
    md = (out / "report.md").read_text()
    assert "| paper | PEToolLLaMA | r | 78.4 | 89.7 |" in md
    assert "| this run | sft+dpo | r |" in md
    assert (out / "accuracy.png").stat().st_size > 0
    leakage = report["facts"]["leakage"]
    assert set(leakage) == {f"user_entries_{k}_{s}.json" for k in ("sft", "dpo") for s in SETTINGS}
    # no training row quotes an evaluation query
    from petool_jax.app.experiment.split import evaluation_queries, leaked_rows

    queries = evaluation_queries(json.loads((out / "data" / "eval_half.json").read_text()))
    for name in leakage:
        assert leaked_rows(json.loads((out / "data" / "train" / name).read_text()), queries) == []


@pytest.mark.slow
def test_experiment_cpu_plan_on_the_real_release(shared_dir, tmp_path):
    """The CPU plan on test_dev.json.gz with SmolLM2 (needs the wheel or network), 2 entries."""
    from gguf_fixtures import find_smollm2_wheel

    wheel = find_smollm2_wheel()
    if wheel is None:
        pytest.skip("the SmolLM2 wheel is not here")
    import os

    os.environ.setdefault("PETOOL_WHEELHOUSE", str(wheel.parent))
    release = shared_dir / "petoolbench" / "test_dev.json.gz"
    out = tmp_path / "out"
    assert petool(["experiment", "--config", str(CONFIG), "--data", str(release), "--out", str(out),
                   "--limit", "2", "plans.cpu.sft_steps=2", "plans.cpu.dpo_steps=1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {(r["model"], r["setting"]) for r in report["rows"]} == set(itertools.product(ROWS, SETTINGS))
    split = json.loads((out / "data" / "split.json").read_text())
    # Entries that share a query stay in one half, so the halves are near, not exactly, 306 each.
    pool, evaluation = set(map(str, split["pool_ids"])), set(map(str, split["eval_ids"]))
    assert split["entries"] == 612 and len(pool) + len(evaluation) == 612 and not pool & evaluation
    assert abs(len(pool) - 306) <= 15
