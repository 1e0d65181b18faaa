"""What an eval report SAYS, not only that it exists: `petool eval score` on predictions with
one known kind of answer per (entry, setting); report.json against the authors' scorer and
the designed error types, report.md's tables and the three plots' drawn values against
report.json."""

from __future__ import annotations

import json

import pytest

from eval.scoring import SCORERS
from eval.taxonomy import ERROR_TYPES
from eval_fixtures import BAYUT, SELOGER, SPORTS, WEATHER, small_benchmark, write_json
from petool_jax.app.cli import main
from report_checks import PlotCapture, authors_scores, markdown_accuracy_row

SETTINGS = ("p", "r", "c")


def designed_predictions(entries):
    """(row or None, designed strict error type or None) per (entry_id, setting)."""
    truth = {e["entry_id"]: e["api_call_ground_truth"] for e in entries}

    def row(entry_id, setting, response, ok=True, error=None):
        return {"entry_id": entry_id, "setting": setting, "response": response, "prompt_tokens": 100,
                "shortened": False, "n_dropped": 0, "ok": ok, "error": error}

    rental, weather, seloger = truth[1], truth[2], truth[3]
    return {
        (1, "p"): (row(1, "p", json.dumps(rental)), None),
        (1, "r"): (row(1, "r", json.dumps({"tool_name": SELOGER["tool_name"], "parameters": rental["parameters"]})),
                   "preference_mismatch"),
        (1, "c"): (row(1, "c", "I cannot help with that."), "invalid_format"),
        (2, "p"): (row(2, "p", json.dumps({"tool_name": SPORTS["tool_name"], "parameters": {}})),
                   "functionality_mismatch"),
        (2, "r"): (row(2, "r", json.dumps({"tool_name": WEATHER["tool_name"],
                                           "parameters": {"city": "Paris", "units": "metric"}})),
                   "parameter_value_mismatch"),
        (2, "c"): (None, "no_response"),  # never predicted
        (3, "p"): (row(3, "p", json.dumps(seloger, indent=1)), None),  # multi-line: only strict reads it
        (3, "r"): (row(3, "r", "Call: " + json.dumps(seloger)), None),
        (3, "c"): (row(3, "c", None, ok=False, error="HTTP 500: scripted outage"), "no_response"),
    }


@pytest.fixture
def scored(tmp_path, monkeypatch):
    entries = small_benchmark()
    assert BAYUT["tool_name"] == entries[0]["api_call_ground_truth"]["tool_name"]
    design = designed_predictions(entries)
    rows = {k: r for k, (r, _) in design.items() if r is not None}
    data = write_json(tmp_path / "user_entries_test.json", entries)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    plots = PlotCapture(monkeypatch)
    out = tmp_path / "scored"
    assert main(["eval", "score", "--data", str(data), "--predictions", str(predictions), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    return entries, design, rows, report, (out / "report.md").read_text(), plots, out


def test_report_json_equals_the_authors_scorer_and_the_designed_errors(scored):
    entries, design, rows, report, _, _, _ = scored
    for s in SETTINGS:
        paper = report["scores"]["paper"][s]
        assert paper["n"] == 3
        assert (paper["tool_acc"], paper["param_acc"]) == authors_scores(entries, rows, s)
    # By construction: paper p (1/3, 1/3), r (2/3, 2/3), c (0, 0).
    assert [round(3 * report["scores"]["paper"][s]["tool_acc"]) for s in SETTINGS] == [1, 2, 0]
    for s in SETTINGS:
        expected = {t: 0 for t in ERROR_TYPES}
        for (_, setting), (_, kind) in design.items():
            if setting == s and kind:
                expected[kind] += 1
        assert report["errors"][s] == expected, s
        strict = report["scores"]["strict"][s]
        right = sum(1 for (_, setting), (_, kind) in design.items() if setting == s and kind is None)
        assert strict["call_correct"] == right
    # The strict scorer reads the multi-line answer the authors' regex misses.
    assert report["scores"]["strict"]["p"]["tool_correct"] == 2 and report["scores"]["paper"]["p"]["tool_correct"] == 1


def test_report_md_states_report_json(scored):
    entries, design, rows, report, markdown, _, _ = scored
    for scorer in SCORERS:
        per = [(report["scores"][scorer][s]["tool_acc"], report["scores"][scorer][s]["param_acc"]) for s in SETTINGS]
        overall = (report["overall"][scorer]["tool_acc"], report["overall"][scorer]["param_acc"])
        assert markdown_accuracy_row(scorer, per, overall) in markdown, scorer
    paper = [authors_scores(entries, rows, s) for s in SETTINGS]
    assert markdown_accuracy_row("paper", paper, (3 / 9, 3 / 9)) in markdown  # 3 of 9 right, both metrics
    for kind in ERROR_TYPES:
        counts = [sum(1 for (_, s2), (_, k) in design.items() if s2 == s and k == kind) for s in SETTINGS]
        cells = " | ".join(f"{n} ({100 * n / 3:.1f})" for n in counts)
        assert f"| {kind} | {cells} | {sum(counts)} ({100 * sum(counts) / 9:.1f}) |" in markdown, kind
    assert "| c | 3 | 1 | 1 | 0 | 100 |" in markdown  # entries, missing, failed, shortened, mean tokens


def test_plots_draw_report_json(scored):
    _, design, _, report, _, plots, out = scored
    for name in ("accuracy_by_setting.png", "accuracy_by_history_length.png", "error_types.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    bars = plots.by_title("Accuracy per setting")
    series = [(scorer, metric) for scorer in SCORERS for metric in ("tool_acc", "param_acc")]
    heights = [b[3] for b in bars["bars"]]
    assert heights == pytest.approx([100 * report["scores"][sc][s][m] for sc, m in series for s in SETTINGS])
    assert bars["legend"] == [f"{sc} {m.replace('_acc', '')}" for sc, m in series]
    assert heights[:3] == pytest.approx([100 / 3, 200 / 3, 0.0])  # paper tool, by construction

    history = plots.by_title("Accuracy vs history length")
    labels = ["20-39", "40-59", "60-79"]  # the three entries' history lengths: 20, 45, 70
    for s in SETTINGS:
        points = history["lines"][f"{s} tool (strict)"]
        bins = report["by_history_length"]["strict"][s]
        assert [y for _, y in points] == pytest.approx([100 * bins[label]["tool_acc"] for label in labels])
    # p: the rental (20) and Seloger (70) entries are right, the weather one (45) is not.
    assert [y for _, y in history["lines"]["p tool (strict)"]] == pytest.approx([100.0, 0.0, 100.0])

    errors = plots.by_title("Error types")
    widths = [b[2] for b in errors["bars"]]
    assert widths == [report["errors"][s][kind] for kind in ERROR_TYPES for s in SETTINGS]
    assert errors["legend"] == list(ERROR_TYPES)
    assert sum(widths) == sum(1 for _, kind in design.values() if kind)
