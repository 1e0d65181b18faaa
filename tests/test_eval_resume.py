"""`petool eval run` killed mid-run, then rerun: one prediction per (entry, setting), same results."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from eval_fixtures import rental_entry, seloger_entry, weather_entry, write_json
from eval.predictions import load_predictions
from petool_jax.app.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = pathlib.Path(__file__).resolve().parent

# The CLI in a child process, its runner the rule baseline slowed down per batch, so the
# test can kill it while batches are still being written.
SLOW_CLI = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import eval.run
from eval.runners.rule import RuleRunner

class SlowRule(RuleRunner):
    def run_batch(self, batch):
        time.sleep(0.05)
        return super().run_batch(batch)

eval.run.make_runner = lambda spec, options: SlowRule()
from petool_jax.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _benchmark(n):
    makers = (rental_entry, weather_entry, seloger_entry)
    return [makers[i % 3](entry_id=100 + i, history_length=5 + 7 * i) for i in range(n)]


def _line_count(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_then_rerun_completes_exactly_once_with_identical_results(tmp_path):
    data = write_json(tmp_path / "user_entries_test.json", _benchmark(30))  # 90 tasks
    killed = tmp_path / "killed"
    args = ["eval", "run", "--model", "rule", "--data", str(data), "--out", str(killed), "--batch-size", "2"]
    script = SLOW_CLI.format(repo=str(REPO), tests=str(TESTS))
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = killed / "predictions.jsonl"
    deadline = time.monotonic() + 30
    while _line_count(predictions) < 20 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    written = _line_count(predictions)
    assert 20 <= written < 90, written  # killed midway, not before or after
    assert not (killed / "report.json").exists()
    # As if the kill had landed mid-write: a half line at the end.
    with open(predictions, "a") as f:
        f.write('{"entry_id": 129, "setting": "c", "resp')

    # The rerun (in process, full speed) cuts the half line and does only what is missing.
    assert main(args) == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 90
    keys = load_predictions(predictions)  # raises on any duplicate
    assert set(keys) == {(100 + i, s) for i in range(30) for s in "prc"}

    fresh = tmp_path / "fresh"
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(fresh)]) == 0
    fresh_rows = load_predictions(fresh / "predictions.jsonl")
    assert {k: v["response"] for k, v in keys.items()} == {k: v["response"] for k, v in fresh_rows.items()}
    killed_report = json.loads((killed / "report.json").read_text())
    fresh_report = json.loads((fresh / "report.json").read_text())
    for key in ("scores", "overall", "errors", "by_history_length"):
        assert killed_report[key] == fresh_report[key]
