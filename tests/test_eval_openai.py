"""`petool eval run --model openai:NAME` against a real OpenAI-compatible server on 127.0.0.1.

The server (tests/llm_fake_server.py) answers each (query, setting) by a script: a 429, two
500s, a response slower than the client timeout, a malformed body, or a 500 every time.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

import llm_fake_server as fake
from eval_fixtures import rental_entry, seloger_entry, weather_entry, write_json
from petool_jax.app.cli import main
from petool_jax.petoolbench import INSTRUCTION_KEYS

SECRET = "sk-eval-secret-never-stored"
# Faults served before the answer, per entry; None = fail every time.
SCRIPT = {
    1: [fake.status(429)],
    2: [fake.status(500), fake.status(502)],
    3: [fake.sleep_then(1.0, "too late")],
    4: [fake.raw("not json{")],
    5: None,
}
MAX_RETRIES = 3


def _entries():
    makers = [rental_entry, weather_entry, seloger_entry, rental_entry, weather_entry]
    entries = []
    for entry_id, make in zip(SCRIPT, makers):
        entry = make(entry_id=entry_id)
        entry["query"] += f" (request {entry_id})"  # each entry a distinct request
        entries.append(entry)
    return entries


class ScriptedChat:
    """server.chat: looks up the entry and setting of a request and plays its script."""

    def __init__(self, entries):
        self.by_query = {e["query"]: e for e in entries}
        self.attempts = Counter()
        self.lock = threading.Lock()
        self.always_fail = True

    def __call__(self, body):
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        entry = self.by_query[user]
        setting = next(s for s, k in INSTRUCTION_KEYS.items() if entry.get(k) == system)
        with self.lock:
            attempt = self.attempts[(entry["entry_id"], setting)]
            self.attempts[(entry["entry_id"], setting)] += 1
        script = SCRIPT[entry["entry_id"]]
        if script is None:
            if self.always_fail:
                return fake.status(500, message="scripted outage")
            script = []
        if attempt < len(script):
            return script[attempt]
        return fake.text("Call: " + json.dumps(entry["api_call_ground_truth"]), prompt_tokens=1000 + entry["entry_id"])


@pytest.fixture
def server():
    srv = fake.FakeOpenAIServer().start()
    yield srv
    srv.stop()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_openai_runner_retries_records_failures_and_resumes(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # keys come from the environment only
    entries = _entries()
    data = write_json(tmp_path / "user_entries_test.json", entries)
    script = ScriptedChat(entries)
    server.chat = script
    out = tmp_path / "run"
    command = ["eval", "run", "--model", "openai:fake-4o", "--data", str(data), "--out", str(out),
               "--settings", "p,r", "--base-url", server.base_url, "--timeout", "0.3",
               "--max-retries", str(MAX_RETRIES), "--backoff-base", "0.01", "--concurrency", "4"]
    assert main(command) == 0

    rows = _rows(out / "predictions.jsonl")
    keys = Counter((r["entry_id"], r["setting"]) for r in rows)
    assert keys == Counter({(i, s): 1 for i in SCRIPT for s in "pr"})
    # Requests per (entry, setting): faults + the answer; entry 5 gives up after all retries.
    expected_attempts = {1: 2, 2: 3, 3: 2, 4: 2, 5: MAX_RETRIES + 1}
    assert dict(script.attempts) == {(i, s): n for i, n in expected_attempts.items() for s in "pr"}
    assert server.count("chat") == 2 * sum(expected_attempts.values())
    stats = json.loads((out / "api_stats.json").read_text())
    assert stats["retries"] == 2 * sum(n - 1 for n in expected_attempts.values())
    assert stats["failures"] == 2
    for row in rows:
        if row["entry_id"] == 5:
            assert (row["ok"], row["response"]) == (False, None)
            assert "HTTP 500" in row["error"] and f"gave up after {MAX_RETRIES + 1} attempts" in row["error"]
        else:
            assert row["ok"] and row["response"].startswith("Call: {")
            assert row["prompt_tokens"] == 1000 + row["entry_id"]
    # The request carried the model, the setting's system prompt and the generation limits.
    sent = server.requests[0].body
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == ("fake-4o", 256, 0.0)
    assert {r.authorization for r in server.requests} == {f"Bearer {SECRET}"}
    # A failed request counts as wrong, never leaves the denominator.
    report = json.loads((out / "report.json").read_text())
    for s in "pr":
        assert (report["scores"]["paper"][s]["n"], report["scores"]["paper"][s]["tool_acc"]) == (5, 0.8)
        assert report["errors"][s]["no_response"] == 1 and report["predictions"][s]["failed"] == 1
    # The key is written nowhere.
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    # A rerun makes no request at all and leaves the predictions as they were.
    before = (out / "predictions.jsonl").read_bytes()
    server.reset_requests()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert main(command) == 0
    assert server.count() == 0
    assert (out / "predictions.jsonl").read_bytes() == before

    # --retry-failed resends only the failed requests; once the outage ends they succeed.
    script.always_fail = False
    assert main(command + ["--retry-failed"]) == 0
    assert server.count("chat") == 2
    assert {tuple(r.body["messages"][1]["content"].split()[-2:]) for r in server.requests} == {("(request", "5)")}
    rows = _rows(out / "predictions.jsonl")
    assert Counter((r["entry_id"], r["setting"]) for r in rows) == Counter({(i, s): 1 for i in SCRIPT for s in "pr"})
    assert all(r["ok"] for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["scores"]["strict"]["p"]["tool_acc"] == 1.0 and report["scores"]["strict"]["r"]["call_acc"] == 1.0
