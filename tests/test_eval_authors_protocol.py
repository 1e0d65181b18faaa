"""`--protocol authors` against the local fake OpenAI server, `--settings none`, and the
sampling checks of `eval run` and `generate` (issue 16)."""

from __future__ import annotations

import json
import unicodedata

import pytest

import llm_fake_server as fake
from eval_fixtures import rental_entry, seloger_entry, weather_entry, write_json
from petool_jax.app.cli import main

# Full-width braces, letters and digits: NFKC folds them to the ASCII call the scorer can read.
WIDE = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


@pytest.fixture
def server():
    srv = fake.FakeOpenAIServer().start()
    yield srv
    srv.stop()


def _entries():
    return [rental_entry(1), weather_entry(2), seloger_entry(3)]


def _chat(entries, fail_query):
    by_query = {e["query"]: e for e in entries}

    def answer(body):
        entry = by_query[body["messages"][-1]["content"]]
        if entry["query"] == fail_query:
            return fake.status(500, message="scripted outage")
        call = json.dumps(entry["api_call_ground_truth"], ensure_ascii=False)
        return fake.text(call.translate(WIDE))  # right, but only readable after NFKC

    return answer


def _run(tmp_path, server, monkeypatch, *extra):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    entries = _entries()
    data = write_json(tmp_path / "user_entries_test.json", entries)
    server.chat = _chat(entries, fail_query=entries[2]["query"])
    out = tmp_path / ("run" + "_".join(extra).replace("-", ""))
    assert main(["eval", "run", "--model", "openai:fake-4o", "--data", str(data), "--out", str(out),
                 "--settings", "p,none", "--base-url", server.base_url, "--backoff-base", "0.01",
                 "--max-retries", "1", *extra]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return out, rows, json.loads((out / "report.json").read_text())


def test_authors_protocol_request_nfkc_and_both_denominators(tmp_path, server, monkeypatch):
    out, rows, report = _run(tmp_path, server, monkeypatch, "--protocol", "authors")
    # Their request: the messages and the model only - no temperature, no max_tokens.
    for request in server.requests:
        assert set(request.body) == {"model", "messages"}
    # NFKC applied: the full-width answers are scored right.
    ok = [r for r in rows if r["ok"]]
    assert len(ok) == 4 and all(r["response"] == unicodedata.normalize("NFKC", r["response"]) for r in ok)
    assert all(r["response"].startswith('{"tool_name"') for r in ok)
    for s in ("p", "none"):
        paper = report["scores"]["paper"][s]
        # The failed entry: wrong in the headline (all entries), left out of the authors' denominator.
        assert (paper["n"], paper["tool_acc"]) == (3, pytest.approx(2 / 3))
        assert (paper["n_answered"], paper["tool_acc_answered"], paper["param_acc_answered"]) == (2, 1.0, 1.0)
        assert report["predictions"][s]["failed"] == 1
    assert report["meta"]["protocol"] == "authors"
    markdown = (out / "report.md").read_text()
    assert "the authors' API denominator" in markdown and "| paper | 100.0 | 100.0 | 2/3 |" in markdown
    # The none prompt went out: the authors' no-history template, no history in it.
    none_prompts = [r.body["messages"][0]["content"] for r in server.requests
                    if "Interaction history" not in r.body["messages"][0]["content"]]
    assert none_prompts and all(p.startswith("\nYour task is to use a tool that meets real-time") for p in none_prompts)


def test_default_protocol_sends_limits_and_does_not_normalise(tmp_path, server, monkeypatch):
    _, rows, report = _run(tmp_path, server, monkeypatch)
    assert all(r.body["max_tokens"] == 256 and r.body["temperature"] == 0.0 for r in server.requests)
    assert report["scores"]["paper"]["p"]["tool_acc"] == 0.0  # full-width JSON is not read without NFKC
    assert report["scores"]["paper"]["p"]["n_answered"] == 2


def _refused(capsys, argv) -> str:
    """main() reports a UserError as `petool CMD: error: ...` and exit status 2."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_authors_protocol_defaults_and_refusals(tmp_path, capsys):
    from eval.cli import PROTOCOL_DEFAULTS

    assert PROTOCOL_DEFAULTS["authors"] == {"timeout_s": 10.0, "max_retries": 2}
    data = write_json(tmp_path / "d.json", _entries())
    err = _refused(capsys, ["eval", "run", "--model", "rule", "--data", str(data), "--out", str(tmp_path / "o"),
                            "--protocol", "authors"])
    assert "petool eval: error: --protocol authors is the authors' API protocol (openai:NAME models)" in err


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-1"], r"--temperature -1.0: must be >= 0"),
    (["--temperature", "nan"], r"--temperature nan: must be >= 0"),
    (["--top-p", "0"], r"--top-p 0.0: must be in \(0, 1\]"),
    (["--top-p", "1.5"], r"--top-p 1.5: must be in \(0, 1\]"),
])
def test_eval_run_and_generate_refuse_bad_sampling(tmp_path, capsys, flags, message):
    import re

    data = write_json(tmp_path / "d.json", _entries())
    err = _refused(capsys, ["eval", "run", "--model", "rule", "--data", str(data), "--out", str(tmp_path / "o"),
                            *flags])
    assert re.search("petool eval: error: " + message, err) and not (tmp_path / "o").exists()
    # generate checks before it loads anything: no model is needed to see the refusal
    err = _refused(capsys, ["generate", "--model", str(tmp_path / "no-model"), "--prompt", "hi", *flags])
    assert re.search("petool generate: error: " + message, err)


def test_sampling_edges_are_accepted(tmp_path):
    data = write_json(tmp_path / "d.json", _entries())
    assert main(["eval", "run", "--model", "rule", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--temperature", "0", "--top-p", "1", "--settings", "none"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(report["scores"]["paper"]) == ["none"] and report["scores"]["paper"]["none"]["n"] == 3


def test_run_dirs_without_the_new_keys_still_resume(tmp_path, capsys):
    data = write_json(tmp_path / "d.json", _entries())
    out = tmp_path / "o"
    argv = ["eval", "run", "--model", "rule", "--data", str(data), "--out", str(out), "--settings", "p"]
    assert main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    assert (record["truncation"], record["protocol"]) == ("history", "default")
    del record["truncation"], record["protocol"]  # as written before issue 16
    (out / "run.json").write_text(json.dumps(record))
    assert main(argv) == 0
    err = _refused(capsys, argv + ["--truncation", "authors"])
    assert "holds a run with other settings (truncation: None -> 'authors')" in err
