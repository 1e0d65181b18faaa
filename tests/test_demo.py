"""`petool demo`: the built-in catalog, the random baseline, and one `--smoke` run of every
stage (synth, tokenizer, init, SFT, DPO, export + transformers reload, eval, report)."""

import itertools
import json
import math

import numpy as np
import pytest

from petool_jax.cli import main as petool
from petool_jax.demo import catalog_source
from petool_jax.demo.baselines import RandomRunner, expected_random_tool_acc, random_call
from petool_jax.demo.catalog import catalog_path, catalog_summary
from petool_jax.demo.pipeline import MODELS, SETTINGS, _slug

pytestmark = pytest.mark.filterwarnings("ignore")


# -- the catalog -------------------------------------------------------------------------


def test_catalog_json_is_generated_from_its_source():
    assert catalog_path().read_text(encoding="utf-8") == catalog_source.catalog_text()


def test_catalog_shape_attributes_and_examples():
    from synth.schema import parameter_problems

    tools = json.loads(catalog_path().read_text(encoding="utf-8"))
    summary = catalog_summary()
    assert summary["functionality_groups"] == 20 and summary["categories"] == 10
    assert summary["providers_per_group"][0] >= 2 and summary["providers_per_group"][1] <= 4
    providers = {}
    for tool in tools:
        for api in tool["api_list"]:
            providers.setdefault(api["func"], []).append(tool)
    for func, members in providers.items():
        # Providers of one group differ in their non-functional attributes...
        profiles = [(t["pricing"], t["score"]["avgServiceLevel"], bool(t["api_list"][0]["description"])) for t in members]
        assert len(set(profiles)) == len(profiles), func
        # ... and share the API name, as equivalent RapidAPI tools do.
        assert len({a["name"] for t in members for a in t["api_list"] if a["func"] == func}) == 1, func
    names = [t["tool_name"] for t in tools]
    for tool in tools:
        for api in tool["api_list"]:
            assert len(api["examples"]) == catalog_source.EXAMPLES_PER_API
            for example in api["examples"]:
                assert parameter_problems(example["parameters"], api["required_parameters"],
                                          api["optional_parameters"]) == []
                # Values are copied verbatim from the instruction, which never names a provider.
                for value in example["parameters"].values():
                    assert str(value) in example["instruction"]
                assert not any(name.lower() in example["instruction"].lower() for name in names)


def test_synth_reads_groups_and_examples_from_tool_documents(tmp_path):
    from petool_jax.errors import UserError
    from synth.sources import load_pool

    pool = load_pool([str(catalog_path())])
    groups = pool.groups()
    assert len(groups) == 20
    weather = groups["weather_forecast"]
    assert len({pool.apis[k].tool for k in weather}) == 4
    api = pool.apis["<Weather>.<SkyCast>.<forecast>"]
    assert len(api.examples) == catalog_source.EXAMPLES_PER_API and api.func == "weather_forecast"

    doc = {"tool_name": "T", "category_name": "C", "api_list": [
        {"name": "a", "required_parameters": [{"name": "x", "type": "NUMBER"}], "optional_parameters": [],
         "func": "g", "examples": [{"instruction": "ok", "parameters": {"x": 1}},
                                   {"instruction": "bad type", "parameters": {"x": "many"}}]}]}
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([doc]))
    pool = load_pool([str(path)])
    assert [e["instruction"] for e in pool.apis["<C>.<T>.<a>"].examples] == ["ok"]  # schema-checked
    assert pool.report["examples dropped: parameters invalid for the API schema"] == 1
    for bad, message in (({"func": ["g"]}, "'func' must be"), ({"examples": {"instruction": "x"}}, "'examples' must be")):
        broken = json.loads(json.dumps(doc))
        broken["api_list"][0].update(bad)
        path.write_text(json.dumps([broken]))
        with pytest.raises(UserError, match=message):
            load_pool([str(path)])


# -- the random baseline -----------------------------------------------------------------


def _entries(n_candidates, count):
    entries = []
    for i in range(count):
        k = n_candidates[i % len(n_candidates)]
        candidates = [{"tool_name": f"<C>.<T{j}>.<a>", "required_parameters": [{"name": "q", "default": "d"}]}
                      for j in range(k)]
        entries.append({"entry_id": i, "query": "q", "apis_candidate": json.dumps(candidates),
                        "api_call_ground_truth": {"tool_name": "<C>.<T0>.<a>", "parameters": {"q": "d"}}})
    return entries


def test_random_choice_matches_its_expected_accuracy():
    entries = _entries([2, 5, 10], 3000)
    expected = expected_random_tool_acc(entries)
    assert expected == pytest.approx((1 / 2 + 1 / 5 + 1 / 10) / 3)
    hits = [random_call(e, s, seed=3)["tool_name"] == e["api_call_ground_truth"]["tool_name"]
            for e in entries for s in SETTINGS]
    sd = math.sqrt(expected * (1 - expected) / len(hits))
    assert abs(np.mean(hits) - expected) < 4 * sd
    # Deterministic per (seed, entry, setting), whatever the batch order; seeds differ.
    assert random_call(entries[7], "r", 3) == random_call(entries[7], "r", 3)
    draws = {random_call(entries[2], "p", seed)["tool_name"] for seed in range(40)}
    assert len(draws) > 5
    assert random_call(entries[0], "p", 0)["parameters"] == {"q": "d"}
    assert RandomRunner(1).name == "random:1"


def test_provider_choice_separates_functionality_from_preference():
    from petool_jax.demo.baselines import expected_provider_chance
    from petool_jax.demo.report import findings, provider_choice

    entries = _entries([5], 2)
    # entry 0: two functionally equivalent candidates (T0, T1); entry 1: three (T0, T1, T3
    # where T3 is in the group but T9 is not a candidate and must not count)
    for entry, group in zip(entries, (["T0", "T1"], ["T0", "T1", "T3", "T9"])):
        entry["apis_same_func"] = [{"category_name": "C", "tool_name": t, "api_name": "a"} for t in group]
    assert expected_provider_chance(entries) == pytest.approx((1 / 2 + 1 / 3) / 2)

    # 30 answers: 12 right tool, 9 a rival provider of the right functionality, 9 other errors
    report = {"overall": {"strict": {"n": 30, "tool_correct": 12}},
              "errors": {"all": {"preference_mismatch": 9, "functionality_mismatch": 5, "invalid_format": 4}}}
    func, preferred = provider_choice(report)
    assert func == pytest.approx(21 / 30) and preferred == pytest.approx(12 / 21)
    lines = findings([], {"provider_chance": 0.5}, {"sft": report})
    assert ("sft: 70.0% of answers call an API of the right functionality; of those, 57.1% call the user's "
            "preferred provider, where a uniform guess among the functionally equivalent candidates gives 50.0% "
            "(within 10 points of that guess") in lines[0]
    assert "well above that guess" in findings([], {"provider_chance": 0.4}, {"sft": report})[0]


# -- bad input ---------------------------------------------------------------------------


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    assert petool(["demo", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert petool(["demo", "--eval-limit", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--eval-limit" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert petool(["demo", "--smoke", "--out", str(busy), "--overwrite"]) == 2
    assert "not a petool demo directory" in capsys.readouterr().err
    assert (busy / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "data_dir"
    empty.mkdir()
    assert petool(["demo", "--smoke", "--data", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "user_entries_train.json" in capsys.readouterr().err


def test_data_file_is_used_as_the_tool_pool(tmp_path):
    """--data FILE (PEToolBench entries): petool synth builds the demo's data from its tools."""
    from petool_jax.demo.pipeline import Demo
    from petool_jax.demo.plan import SMOKE
    from synth_fixtures import write_petoolbench_pool

    pool = write_petoolbench_pool(tmp_path / "pool.json")
    demo = Demo(tmp_path / "out", SMOKE, seed=1, data=pool, log=lambda *_: None)
    (tmp_path / "out").mkdir()
    demo.stage_data()
    assert "pool.json" in demo.files.source
    config = (tmp_path / "out" / "synth.yaml").read_text()
    assert "pool.json" in config and "model: none" in config
    test = json.loads(demo.files.test.read_text())
    assert test and all(e["api_call_ground_truth"]["tool_name"].startswith("<") for e in test)
    assert all(f.is_file() for f in demo.files.sft + demo.files.dpo)


# -- the whole demo, reduced ---------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert petool(["demo", "--smoke", "--out", str(out), "--seed", "1"]) == 0
    return out


def test_smoke_report_has_every_row(smoke):
    report = json.loads((smoke / "report.json").read_text())
    rows = report["rows"]
    assert {(r["model"], r["setting"]) for r in rows} == set(itertools.product(MODELS, SETTINGS))
    assert len(rows) == 15
    for row in rows:
        assert row["status"] == "done", row
        assert 0.0 <= row["tool_acc"] <= 1.0 and 0.0 <= row["param_acc"] <= 1.0, row
        assert row["n"] == 4
    assert report["seconds"] > 0 and set(report["stage_seconds"]) >= {"data", "sft", "dpo", "export", "eval"}
    assert 0 < report["peak_rss_mb"] < 8192
    assert report["facts"]["dpo"] == "done"
    assert 0 < report["facts"]["provider_chance"] <= 0.5  # 2-4 equivalent providers per group
    for name in ("report.md", "accuracy.png", "training.png", "commands.sh"):
        assert (smoke / name).stat().st_size > 0, name
    md = (smoke / "report.md").read_text()
    assert "| sft+dpo |" in md and "pending" not in md
    commands = (smoke / "commands.sh").read_text()
    for command in ("petool synth --config", "petool init", "petool train sft", "petool train dpo",
                    "petool export", "petool eval run --model rule", "petool eval score --compare"):
        assert command in commands, command


def test_smoke_random_row_is_what_the_scorer_says(smoke):
    report = json.loads((smoke / "report.json").read_text())
    test = {e["entry_id"]: e for e in json.loads((smoke / "data" / "user_entries_test.json").read_text())}
    rows = [json.loads(line) for line in (smoke / "eval" / "random" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * len(SETTINGS)
    for setting in SETTINGS:
        mine = [r for r in rows if r["setting"] == setting]
        right = [json.loads(r["response"])["tool_name"] == test[r["entry_id"]]["api_call_ground_truth"]["tool_name"]
                 for r in mine]
        reported = next(r for r in report["rows"] if r["model"] == "random" and r["setting"] == setting)
        assert reported["tool_acc"] == sum(right) / len(right)
    expected = report["facts"]["random_expected_tool_acc"]
    selected = list(test.values())[:4]
    assert expected == pytest.approx(np.mean([1 / len(json.loads(e["apis_candidate"])) for e in selected]))


def test_smoke_trained_models_were_evaluated_and_exported(smoke):
    export = json.loads((smoke / "report.json").read_text())["facts"]["export"]
    assert export["model"] == "sft+dpo"
    assert export["status"] == "passed", export  # torch is in the test extra: the reload ran
    assert export["max_abs_logit_diff"] <= 1e-3 and export["argmax_agreement"] == 1.0
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(export["hf_dir"]).model_type == "llama"
    for model in MODELS:
        report = json.loads((smoke / "eval" / _slug(model) / "report.json").read_text())
        assert set(report["scores"]["paper"]) == set(SETTINGS)
    dpo = [json.loads(line) for line in (smoke / "runs" / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(dpo) == 2 and "rewards/accuracy" in dpo[0]
    sft = [json.loads(line) for line in (smoke / "runs" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(sft) == 3 and all(math.isfinite(m["loss"]) for m in sft)


def test_data_dir_of_petoolbench_files_replaces_the_catalog(smoke, tmp_path):
    """--data DIR with user_entries_train.json and user_entries_test.json: no synthesis; SFT
    and DPO read the train file (every setting), eval the test file, the BPE its texts."""
    from petool_jax.demo.pipeline import Demo
    from petool_jax.demo.plan import SMOKE

    data = smoke / "data"
    out = tmp_path / "out"
    out.mkdir()
    demo = Demo(out, SMOKE, seed=1, data=str(data), log=lambda *_: None)
    demo.stage_data()
    assert demo.files.sft == [data / "user_entries_train.json"] == demo.files.dpo
    assert demo.files.test == data / "user_entries_test.json"
    assert demo.files.source == f"PEToolBench files in {data}"
    assert not (out / "synth.yaml").exists() and not (out / "data").exists()
    demo.stage_tokenizer()
    assert demo.facts["tokenizer"]["vocab_size"] <= SMOKE.tokenizer_vocab
    assert (out / "tokenizer" / "tokenizer.json").is_file()


def test_smoke_rerun_needs_overwrite(smoke, capsys):
    assert petool(["demo", "--smoke", "--out", str(smoke)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_readme_quickstart_is_two_commands_demo_then_the_ci_tests():
    """The README promises exactly two commands on a fresh machine: one installs and runs
    `petool demo`, the other is the test command that .ci/run runs (which adds only -q)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = re.search(r"## Quickstart\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e")
    assert commands[0].endswith("&& .venv/bin/petool demo")
    ci = (root / ".ci" / "run").read_text()
    assert commands[1].replace("pip install -e", "pip install -q -e") in ci
