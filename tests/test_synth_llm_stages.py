"""Stages a-d driven by an LLM: a scripted OpenAI-compatible server on 127.0.0.1 answers
tool understanding, pair verification, instruction writing and embeddings, and injects
faults (429, 500, a timeout, a garbled body, malformed JSON, schema violations, a tool whose
answers never validate). The stages must produce validated results, retry and re-ask, record
the failure, and a second run must send zero requests."""

from __future__ import annotations

import json
import re

import pytest

import llm_fake_server as fake
import synth_fixtures as fx
from synth.config import load_synth_config
from synth.pipeline import run_pipeline
from synth.schema import parameter_problems

SECRET = "sk-synth-test-SECRET-77"
ATTRIBUTES = ["ease_of_use", "documentation_quality", "authentication", "pricing", "reliability"]
FUNCTIONALITY = {
    "forecast": "Returns the weather forecast for a city",
    "current": "Returns the current weather for a city",
    "alerts": "Lists severe weather alerts",
    "quote": "Returns a stock quote",
    "history": "Returns stock price history",
}
# One direction per functionality; WeatherC's "current" is worded so that it lands at cosine
# 0.8 from the others: borderline, so the pipeline must ask the LLM to verify it.
AXES = ["weather forecast", "current weather", "weather alerts", "stock quote", "price history"]


def embedding(text: str) -> list[float]:
    vector = [0.0] * 16
    if text.startswith("Gives present weather"):
        vector[1], vector[7] = 0.8, 0.6
        return vector
    for i, axis in enumerate(AXES):
        if axis in text.lower():
            vector[i] = 1.0
            return vector
    # Attribute profiles (and anything else): a deterministic spread-out vector.
    return [abs(x) for x in fake.hash_embedding(text, 16)]


def understanding_answer(user: str, reask: bool) -> str:
    tool = re.search(r"^Tool: (.+)$", user, re.M).group(1)
    apis = re.findall(r"^\d+\. ([^:]+): ", user, re.M)
    if tool == "FinC":
        return "Sorry, I can't describe this tool."  # never valid: becomes a recorded failure
    if tool == "WeatherB" and not reask:
        return '{"functionality": "weather", "apis": {'  # malformed JSON
    if tool == "WeatherA" and not reask:
        return json.dumps({"functionality": "weather", "apis": {}, "attributes": {}})  # schema violation
    functionality = {a: FUNCTIONALITY[a] for a in apis}
    if tool == "WeatherC":
        functionality["current"] = "Gives present weather conditions"
    attributes = {a: f"{tool} {a} level {len(tool) % 3}" for a in ATTRIBUTES}
    return "Here is the analysis:\n```json\n" + json.dumps(
        {"functionality": f"{tool} tool", "apis": functionality, "attributes": attributes}) + "\n```"


def instruction_answer(user: str, reask: bool) -> str:
    tool = re.search(r"^Tool: (.+?) \(category", user, re.M).group(1)
    api = re.search(r"^API: ([^:]+):", user, re.M).group(1)
    n = int(re.search(r"Write (\d+) different", user).group(1))
    required = json.loads(re.search(r"^Required parameters: (.*)$", user, re.M).group(1))

    def value(p: dict):
        return 30 if p["type"] == "NUMBER" else f"{p['name']}-{tool}"

    examples = [
        {"instruction": f"Use {api} of {tool}, case {i}.", "parameters": {p["name"]: value(p) for p in required}}
        for i in range(n)
    ]
    if tool == "WeatherC" and api == "forecast" and not reask:
        examples[0]["parameters"] = {"town": "Paris"}  # missing 'city', unknown 'town'
    return json.dumps({"examples": examples})


OUTAGE: set[str] = set()  # tools whose understanding requests get 503 (a test sets and clears it)


def chat(body: dict) -> fake.Reply:
    messages = body["messages"]
    system, user, reask = messages[0]["content"], messages[1]["content"], len(messages) > 2
    if any(f"Tool: {tool}\n" in user for tool in OUTAGE):
        return fake.status(503, message="upstream overloaded")
    if system.startswith("You analyse API tools"):
        return fake.text(understanding_answer(user, reask), prompt_tokens=120, completion_tokens=60)
    if system.startswith("You compare web APIs"):
        return fake.text('{"same": true, "reason": "both report the weather right now"}')
    if system.startswith("You write realistic user requests"):
        return fake.text(instruction_answer(user, reask), prompt_tokens=200, completion_tokens=80)
    return fake.status(400, message="unexpected prompt")


@pytest.fixture
def server():
    srv = fake.FakeOpenAIServer().start()
    srv.chat = chat
    srv.embedding = embedding
    yield srv
    srv.stop()


def overrides(tmp_path, server, out_name: str) -> list[str]:
    values = {
        "tool_pool": str(tmp_path / "tools"), "output_dir": str(tmp_path / out_name), "num_users": 8, "seed": 3,
        "llm.model": "fake-llm", "llm.base_url": server.base_url, "llm.cache_dir": str(tmp_path / "llm_cache"),
        "llm.max_concurrency": 4, "llm.max_retries": 4, "llm.timeout_s": 0.5, "llm.backoff_base_s": 0.01,
        "llm.backoff_max_s": 0.05, "embedding.model": "fake-embedding", "instructions.per_api": 3,
        "history.min_len": 4, "history.max_len": 8, "preferences.min_tools": 2, "preferences.max_tools": 3,
        "quality.scrub_test_queries_from_train": "false",
    }
    return [f"{k}={v}" for k, v in values.items()]


def stage(out, name: str) -> dict:
    return json.loads((out / "work" / "stages" / f"{name}.json").read_text())


def test_llm_stages_validate_retry_reask_and_replay_from_cache(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    fx.write_toolbench_tools(tmp_path / "tools")
    server.chat_faults.extend([fake.status(429, retry_after=0), fake.status(500), fake.sleep_then(1.0, "{}"),
                               fake.raw("<html>bad gateway</html>")])
    server.embed_faults.extend([fake.status(503)])

    summary = run_pipeline(load_synth_config(None, overrides(tmp_path, server, "out")))
    out = tmp_path / "out"
    llm = summary["llm"]
    assert llm["retries"] == 5  # the four chat faults and the embedding fault, each retried once
    # Re-asks: WeatherB (malformed), WeatherA (schema), WeatherC forecast (bad parameters), FinC twice.
    assert llm["reasks"] == 5 and llm["json_failures"] == 1
    assert server.requests and all(r.authorization == f"Bearer {SECRET}" for r in server.requests)
    assert {r.body["model"] for r in server.requests} == {"fake-llm", "fake-embedding"}

    # a: every surviving tool has validated attributes; FinC's failure is recorded and it left the pool.
    understanding = stage(out, "understanding")["result"]
    assert sorted(understanding["tools"]) == ["<Finance>.<FinA>", "<Finance>.<FinB>", "<Weather>.<WeatherA>",
                                              "<Weather>.<WeatherB>", "<Weather>.<WeatherC>"]
    for value in understanding["tools"].values():
        assert sorted(value["attributes"]) == sorted(ATTRIBUTES)
    assert [f["item"] for f in understanding["failures"]] == ["<Finance>.<FinC>"]
    assert understanding["failures"][0]["error"].startswith("invalid after 3 answers")

    # b: the borderline pair was verified by the LLM and joined; five groups of different tools.
    groups = stage(out, "groups")["result"]
    members: dict[str, list] = {}
    for key, gid in groups["assign"].items():
        members.setdefault(gid, []).append(key)
    assert sorted(sorted(m) for m in members.values()) == sorted([
        [f"<Finance>.<{t}>.<{a}>" for t in ("FinA", "FinB")] for a in ("history",)] + [
        [f"<Finance>.<{t}>.<quote>" for t in ("FinA", "FinB")]] + [
        sorted(f"<Weather>.<{t}>.<{a}>" for t in ("WeatherA", "WeatherB", "WeatherC")) for a in ("alerts", "current", "forecast")])
    assert sorted(v[:2] for v in groups["verified"]) == [
        ["<Weather>.<WeatherA>.<current>", "<Weather>.<WeatherC>.<current>"],
        ["<Weather>.<WeatherB>.<current>", "<Weather>.<WeatherC>.<current>"]]
    assert all(v[2] is True for v in groups["verified"])

    # d: every written example is valid for its API's schema, the re-asked one included.
    tool_docs = fx.toolbench_tools()
    schemas = {f"<{rel.split('/')[0]}>.<{doc['tool_name']}>.<{api['name']}>": api
               for rel, doc in tool_docs.items() for api in doc["api_list"]}
    examples = stage(out, "instructions")["result"]["examples"]
    assert len(examples) == 13 and all(len(v) == 3 for v in examples.values())
    for key, items in examples.items():
        for item in items:
            assert parameter_problems(item["parameters"], schemas[key]["required_parameters"],
                                      schemas[key]["optional_parameters"]) == []
    assert examples["<Weather>.<WeatherC>.<forecast>"][0]["parameters"] == {"city": "city-WeatherC"}

    # The stats report the failure and the per-stage LLM usage; the key is nowhere on disk.
    stats = (out / "stats.md").read_text()
    assert "| understanding | <Finance>.<FinC> | invalid after 3 answers" in stats
    test = json.loads((out / "user_entries_test.json").read_text())
    assert test and all("FinC" not in e["apis_candidate"] for e in test)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    # A second run (fresh output folder, same LLM cache): zero requests, the same data.
    sent = server.count()
    again = run_pipeline(load_synth_config(None, overrides(tmp_path, server, "again")))
    assert server.count() == sent
    assert again["llm"]["requests"] == 0 and again["llm"]["cache_hits"] > 0
    assert (tmp_path / "again" / "user_entries_test.json").read_bytes() == (out / "user_entries_test.json").read_bytes()


def test_missing_api_key_is_a_clear_cli_error(tmp_path, monkeypatch, capsys):
    from petool_jax.app.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    fx.write_toolbench_tools(tmp_path / "tools")
    config = tmp_path / "c.yaml"
    config.write_text(f"tool_pool: {tmp_path / 'tools'}\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["synth", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "llm.model=gpt-4o-mini" in err and "set OPENAI_API_KEY" in err and "llm.model=none" in err


def test_a_run_after_an_outage_asks_only_for_what_failed(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fx.write_toolbench_tools(tmp_path / "tools")
    args = overrides(tmp_path, server, "out") + ["llm.max_retries=1"]
    OUTAGE.add("WeatherB")
    try:
        first = run_pipeline(load_synth_config(None, args))
    finally:
        OUTAGE.clear()
    out = tmp_path / "out"
    failures = stage(out, "understanding")["result"]["failures"]
    assert [f["item"] for f in failures] == ["<Finance>.<FinC>", "<Weather>.<WeatherB>"]
    assert failures[1]["error"] == "gave up after 2 attempts: HTTP 503: upstream overloaded"
    assert "<Weather>.<WeatherB>" not in stage(out, "understanding")["result"]["tools"]
    assert first["llm failures"] == 2

    sent = server.count()
    second = run_pipeline(load_synth_config(None, args))
    new = server.requests[sent:]
    chats = [r for r in new if r.path.endswith("/chat/completions")]
    # Only WeatherB is asked about again (its understanding, its pair verification, its
    # instructions); FinC's invalid answers replay from the cache without a request.
    assert chats and all("WeatherB" in r.body["messages"][1]["content"] for r in chats)
    assert any(r.body["messages"][1]["content"].startswith("Tool: WeatherB\n") for r in chats)
    assert second["stages"] == {k: "ran" for k in ("understanding", "groups", "preferences", "instructions")} | {"pool": "cached"}
    result = stage(out, "understanding")["result"]
    assert "<Weather>.<WeatherB>" in result["tools"] and [f["item"] for f in result["failures"]] == ["<Finance>.<FinC>"]
    assert second["llm failures"] == 1
    assert any("WeatherB" in e["apis_candidate"] for e in json.loads((out / "user_entries_train.json").read_text()))
