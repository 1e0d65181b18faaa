"""`petool eval run` / `eval score` / `--compare` end to end on fixtures, and bad input."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from eval.scoring import SCORERS
from eval.taxonomy import ERROR_TYPES
from eval_fixtures import BAYUT, SELOGER, small_benchmark, write_json
from petool_jax.app.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def data(tmp_path):
    return write_json(tmp_path / "user_entries_test.json", small_benchmark())


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_rule_writes_predictions_report_and_plots(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out), "--batch-size", "2"]) == 0
    rows = _lines(out / "predictions.jsonl")
    assert sorted((r["entry_id"], r["setting"]) for r in rows) == sorted((i, s) for i in (1, 2, 3) for s in "prc")
    assert all(set(r) >= {"entry_id", "setting", "response", "prompt_tokens", "shortened"} for r in rows)
    report = json.loads((out / "report.json").read_text())
    for scorer in SCORERS:
        for s in "prc":
            m = report["scores"][scorer][s]
            # The rule picks every right provider but fills only default required parameters.
            assert (m["n"], m["tool_acc"], m["param_acc"], m["param_acc_given_tool"]) == (3, 1.0, 0.0, 0.0)
    assert report["errors"]["all"] == {t: 0 for t in ERROR_TYPES} | {"parameter_name_mismatch": 9}
    assert report["by_history_length"]["strict"]["p"] == {
        "20-39": {"n": 1, "tool_acc": 1.0, "param_acc": 0.0},
        "40-59": {"n": 1, "tool_acc": 1.0, "param_acc": 0.0},
        "60-79": {"n": 1, "tool_acc": 1.0, "param_acc": 0.0},
    }
    assert json.loads((out / "run.json").read_text())["model"] == "rule"
    markdown = (out / "report.md").read_text()
    assert "| paper | 100.0 | 0.0 | 100.0 | 0.0 | 100.0 | 0.0 | 100.0 | 0.0 |" in markdown
    assert "| parameter_name_mismatch | 3 (100.0) | 3 (100.0) | 3 (100.0) | 9 (100.0) |" in markdown
    for name in ("accuracy_by_setting.png", "accuracy_by_history_length.png", "error_types.png"):
        blob = (out / name).read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 5000
    assert "paper  p: tool 100.0 param 0.0" in capsys.readouterr().out

    # A rerun of the same command sends nothing new and leaves the file as it was.
    before = (out / "predictions.jsonl").read_bytes()
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out)]) == 0
    assert (out / "predictions.jsonl").read_bytes() == before
    assert "9/9 predictions already done; 0 to go" in capsys.readouterr().err


def test_run_limit_settings_and_per_setting_file(tmp_path):
    entries = small_benchmark()
    for e in entries:
        del e["instruction_preferred"], e["instruction_ratings"]
    data = write_json(tmp_path / "user_entries_test_c.json", entries)
    out = tmp_path / "run"
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out), "--limit", "2"]) == 0
    rows = _lines(out / "predictions.jsonl")
    assert [(r["entry_id"], r["setting"]) for r in rows] == [(1, "c"), (2, "c")]
    report = json.loads((out / "report.json").read_text())
    assert list(report["scores"]["paper"]) == ["c"] and report["scores"]["paper"]["c"]["n"] == 2


def test_run_refuses_to_mix_other_settings_into_a_run(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out), "--limit", "1"]) == 0
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out),
                 "--max-new-tokens", "64"]) == 2
    assert "holds a run with other settings (max_new_tokens: 256 -> 64); use another --out" in capsys.readouterr().err


def _write_predictions(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_crafted_predictions(tmp_path, data):
    truth = small_benchmark()[0]["api_call_ground_truth"]
    rows = [
        {"entry_id": 1, "setting": "p", "response": json.dumps(truth)},
        {"entry_id": 2, "setting": "p", "response": ""},
        {"entry_id": 3, "setting": "p", "response": '{"tool_name": "' + SELOGER["tool_name"] + '", "parame'},
        {"entry_id": 1, "setting": "r", "response": json.dumps({"tool_name": SELOGER["tool_name"], "parameters": {"zipCodes": "75"}})},
        {"entry_id": 2, "setting": "r", "response": "I'd call the weather tool."},
        # entry 3 setting r missing; setting c absent: not reported.
    ]
    predictions = _write_predictions(tmp_path / "preds.jsonl", rows)
    out = tmp_path / "scored"
    assert main(["eval", "score", "--data", str(data), "--predictions", str(predictions), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["scores"]["strict"]) == ["p", "r"]
    assert report["scores"]["paper"]["p"]["tool_acc"] == pytest.approx(1 / 3)
    assert report["scores"]["strict"]["p"]["call_acc"] == pytest.approx(1 / 3)
    assert report["scores"]["strict"]["r"]["tool_acc"] == 0.0 and report["scores"]["strict"]["r"]["n"] == 3
    assert report["errors"]["p"] == {t: 0 for t in ERROR_TYPES} | {"invalid_format": 2}
    assert report["errors"]["r"] == {t: 0 for t in ERROR_TYPES} | {
        "preference_mismatch": 1, "invalid_format": 1, "no_response": 1}
    assert report["predictions"]["r"]["missing"] == 1
    scored = _lines(out / "scored.jsonl")
    assert [(r["entry_id"], r["setting"], r["error_type"]) for r in scored][:3] == [
        (1, "p", None), (2, "p", "invalid_format"), (3, "p", "invalid_format")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"entry_id": 1, "setting": "p", "response": "x"}\n{"entry_id": 99, "setting": "p", "response": "x"}\n',
         r"preds.jsonl: line 2: entry_id 99 is not in the data file"),
        ('{"entry_id": 1, "setting": "p", "response": "x"}\n\n{"entry_id": 1, "setting": "p", "response": "y"}\n',
         r"preds.jsonl: line 3: duplicate prediction for entry_id 1 setting 'p' \(first on line 1\)"),
        ('{"entry_id": 1, "setting": "x", "response": "x"}\n', r"line 1: unknown setting 'x'"),
        ('{"entry_id": 1, "response": "x"}\n', r"line 1: missing key 'setting'"),
        ('{"entry_id": 1, "setting": "p", "response": 5}\n', r"line 1: key 'response' must be a string or null"),
        ('{"entry_id": 1, "setting": "p", "response": "x"}\n{"entry_id": 2, "sett',
         r"line 2: not valid JSON: .* \(a run killed mid-write\? rerun `petool eval run`"),
        ('[1, 2]\n', r"line 1: expected a JSON object, got list"),
    ],
)
def test_score_rejects_bad_predictions(tmp_path, data, capsys, content, message):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(content)
    assert main(["eval", "score", "--data", str(data), "--predictions", str(predictions), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("petool eval: error: ")
    assert re.search(message, err), err


def test_score_rejects_predictions_for_a_setting_the_data_lacks(tmp_path, capsys):
    entries = small_benchmark()
    for e in entries:
        del e["instruction_preferred"], e["instruction_chronological"]
    data = write_json(tmp_path / "user_entries_test_r.json", entries)
    predictions = _write_predictions(tmp_path / "preds.jsonl", [{"entry_id": 1, "setting": "p", "response": "x"}])
    assert main(["eval", "score", "--data", str(data), "--predictions", str(predictions), "--out", str(tmp_path / "o")]) == 2
    assert "preds.jsonl: predictions for setting 'p', which" in capsys.readouterr().err


def test_score_rejects_a_data_file_of_the_wrong_format(tmp_path, capsys):
    predictions = _write_predictions(tmp_path / "preds.jsonl", [{"entry_id": 1, "setting": "p", "response": "x"},
                                                                {"entry_id": 2, "setting": "p", "response": "y"}])
    one_line = _write_predictions(tmp_path / "one.jsonl", [{"entry_id": 1, "setting": "p", "response": "x"}])
    for bad, message in [
        (predictions, "preds.jsonl: line 2 column 1: not valid JSON: Extra data (this looks like JSON Lines"),
        (one_line, "one.jsonl: expected a JSON list of PEToolBench entries, got a JSON object"),
        (write_json(tmp_path / "sft.json", [{"instruction": "i", "input": "q", "output": "o"}]),
         "sft.json: entry 0: missing key 'entry_id'"),
    ]:
        assert main(["eval", "score", "--data", str(bad), "--predictions", str(predictions), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_compare_puts_runs_side_by_side(tmp_path, data, capsys):
    rule_dir = tmp_path / "rule"
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(rule_dir)]) == 0
    truth_rows = [{"entry_id": e["entry_id"], "setting": s, "response": json.dumps(e["api_call_ground_truth"])}
                  for e in small_benchmark() for s in "prc"]
    oracle = tmp_path / "oracle"
    assert main(["eval", "score", "--data", str(data), "--predictions",
                 str(_write_predictions(tmp_path / "oracle.jsonl", truth_rows)), "--out", str(oracle),
                 "--model-name", "oracle"]) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert main(["eval", "score", "--compare", str(rule_dir), str(oracle), "--out", str(out)]) == 0
    markdown = (out / "compare.md").read_text()
    assert markdown == capsys.readouterr().out
    assert "| rule | 100.0 | 0.0 | 100.0 | 0.0 | 100.0 | 0.0 |" in markdown
    assert "| oracle | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |" in markdown
    table = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in table["runs"]] == ["rule", "oracle"]
    assert table["runs"][0]["errors"]["parameter_name_mismatch"] == 9
    assert main(["eval", "score", "--compare", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope/report.json: no such file" in capsys.readouterr().err


def test_config_presets_give_defaults_and_flags_win(tmp_path, data, capsys):
    preset = pathlib.Path(__file__).resolve().parents[1] / "configs" / "eval" / "paper.yaml"
    out = tmp_path / "run"
    assert main(["eval", "run", "--config", str(preset), "--model", "rule", "--data", str(data), "--out", str(out),
                 "--max-new-tokens", "32"]) == 0
    recorded = json.loads((out / "run.json").read_text())
    assert (recorded["max_prompt_tokens"], recorded["max_new_tokens"], recorded["prompt_format"]) == (4000, 32, "system_user")
    api_preset = preset.with_name("gpt-4o-mini.yaml")
    import yaml

    assert yaml.safe_load(api_preset.read_text())["model"] == "openai:gpt-4o-mini"
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_new_tokens: 8\nbeam_size: 4\n")
    assert main(["eval", "run", "--config", str(bad), "--model", "rule", "--data", str(data), "--out", str(out)]) == 2
    assert "bad.yaml: unknown key 'beam_size'" in capsys.readouterr().err
