"""petool_jax.llm_client against a real HTTP server on 127.0.0.1 (tests/llm_fake_server.py)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

import llm_fake_server as fake
from petool_jax.llm_client import LLMClient
from petool_jax.llm_replies import LLMConfigError, LLMRequestError, extract_json

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server():
    srv = fake.FakeOpenAIServer().start()
    yield srv
    srv.stop()


def make_client(server, tmp_path, **kw) -> LLMClient:
    opts = dict(
        base_url=server.base_url,
        api_key="sk-test-key",
        cache_dir=tmp_path / "cache",
        max_retries=3,
        timeout_s=0.4,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        seed=0,
    )
    opts.update(kw)
    return LLMClient(**opts)


def cache_files(tmp_path):
    return sorted((tmp_path / "cache").rglob("*.json"))


def test_retries_429_500_timeout_then_answers(server, tmp_path):
    server.chat = lambda body: fake.text("pong")
    server.chat_faults.extend([fake.status(429, retry_after=0.05), fake.status(500), fake.sleep_then(1.0, "late")])
    client = make_client(server, tmp_path)
    start = time.monotonic()
    result = client.chat(USER, "m1", temperature=0)
    elapsed = time.monotonic() - start
    assert result.ok and result.text == "pong" and not result.cached
    assert result.attempts == 4
    assert server.count("chat") == 4
    assert client.stats.requests == 4 and client.stats.retries == 3 and client.stats.failures == 0
    # The Retry-After of the 429 (0.05 s) and the 0.4 s client timeout were both waited out.
    assert elapsed >= 0.45
    # Every attempt sent the same request, parameters included.
    assert all(r.body["temperature"] == 0 and r.body["model"] == "m1" for r in server.requests)


def test_gives_up_after_bounded_retries_and_caches_nothing(server, tmp_path):
    server.chat = lambda body: fake.status(503)
    client = make_client(server, tmp_path, max_retries=2)
    result = client.chat(USER, "m1")
    assert not result.ok and result.text is None
    assert result.error.startswith("gave up after 3 attempts: HTTP 503")
    assert server.count("chat") == 3 and client.stats.failures == 1 and client.stats.retries == 2
    assert cache_files(tmp_path) == []
    # A client error (400) is final at once.
    server.chat = lambda body: fake.status(400, message="bad request body")
    result = client.chat(USER, "m2")
    assert not result.ok and result.attempts == 1 and "HTTP 400" in result.error
    assert server.count("chat") == 4


def test_rerun_is_served_from_cache_with_zero_requests(server, tmp_path):
    server.chat = lambda body: fake.text("answer:" + body["messages"][-1]["content"])
    first = make_client(server, tmp_path)
    a = first.chat(USER, "m1", temperature=0.2)
    assert a.text == "answer:hello" and not a.cached
    assert len(cache_files(tmp_path)) == 1
    sent = server.count()
    second = make_client(server, tmp_path)
    b = second.chat(USER, "m1", temperature=0.2)
    assert b.ok and b.cached and b.text == a.text and b.attempts == 0
    assert server.count() == sent
    assert second.stats.requests == 0 and second.stats.cache_hits == 1
    # Another parameter value is another request.
    c = second.chat(USER, "m1", temperature=0.3)
    assert not c.cached and server.count() == sent + 1


def test_chat_json_reasks_with_the_reason_until_valid(server, tmp_path):
    answers = iter(["sure! here it is: {oops", '```json\n{"n": "three"}\n```', 'Result: {"n": 3} done'])
    server.chat = lambda body: fake.text(next(answers))

    def validate(value):
        if not isinstance(value, dict) or not isinstance(value.get("n"), int):
            raise ValueError("'n' must be an integer")

    client = make_client(server, tmp_path)
    result = client.chat_json(USER, "m1", validate, max_reasks=2)
    assert result.ok and result.value == {"n": 3} and result.reasks == 2
    assert server.count("chat") == 3
    # The second and third requests carry the bad answer and the reason it was refused.
    second = server.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": "sure! here it is: {oops"}
    assert "the answer holds no valid JSON value" in second[-1]["content"]
    third = server.requests[2].body["messages"]
    assert "'n' must be an integer" in third[-1]["content"]
    # A rerun replays the whole chain from the cache.
    again = make_client(server, tmp_path).chat_json(USER, "m1", validate, max_reasks=2)
    assert again.ok and again.value == {"n": 3} and again.cached
    assert server.count("chat") == 3


def test_chat_json_failure_is_reported_after_bounded_reasks(server, tmp_path):
    server.chat = lambda body: fake.text("no json here")
    client = make_client(server, tmp_path)
    result = client.chat_json(USER, "m1", None, max_reasks=1)
    assert not result.ok and result.value is None
    assert result.error == "invalid after 2 answers: the answer holds no valid JSON value"
    assert server.count("chat") == 2
    assert client.stats.json_failures == 1 and client.stats.reasks == 1


def test_validator_may_normalize_the_value(server, tmp_path):
    server.chat = lambda body: fake.text('{"name": "  Bob "}')
    client = make_client(server, tmp_path)
    result = client.chat_json(USER, "m1", lambda v: {"name": v["name"].strip()})
    assert result.value == {"name": "Bob"}


def test_chat_many_bounds_concurrency_and_keeps_order(server, tmp_path):
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def slow_echo(body):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return fake.text("echo " + body["messages"][0]["content"])

    server.chat = slow_echo
    client = make_client(server, tmp_path, max_concurrency=3)
    requests = [([{"role": "user", "content": f"q{i}"}], "m1", {}) for i in range(12)]
    results = client.chat_many(requests, progress=False)
    assert [r.text for r in results] == [f"echo q{i}" for i in range(12)]
    assert peak == 3
    assert server.count("chat") == 12


def test_identical_concurrent_requests_go_out_once(server, tmp_path):
    server.chat = lambda body: (time.sleep(0.05), fake.text("same"))[1]
    client = make_client(server, tmp_path, max_concurrency=4)
    results = client.chat_many([(USER, "m1", {})] * 6, progress=False)
    assert [r.text for r in results] == ["same"] * 6
    assert server.count("chat") == 1 and client.stats.cache_hits == 5


def test_embeddings_cached_per_text(server, tmp_path):
    client = make_client(server, tmp_path)
    vectors = client.embed(["alpha", "beta", "alpha"], "emb-1")
    assert vectors == [fake.hash_embedding("alpha"), fake.hash_embedding("beta"), fake.hash_embedding("alpha")]
    assert server.count("embeddings") == 1
    assert server.requests[0].body["input"] == ["alpha", "beta"]
    more = client.embed(["beta", "gamma"], "emb-1")
    assert more == [fake.hash_embedding("beta"), fake.hash_embedding("gamma")]
    assert server.requests[1].body["input"] == ["gamma"]
    # Fresh client, same cache: no request at all.
    make_client(server, tmp_path).embed(["gamma", "alpha"], "emb-1")
    assert server.count("embeddings") == 2


def test_embeddings_retry_then_raise(server, tmp_path):
    server.embed_faults.extend([fake.status(429), fake.status(502)])
    client = make_client(server, tmp_path, max_retries=2)
    assert client.embed(["x"], "emb-1") == [fake.hash_embedding("x")]
    assert server.count("embeddings") == 3
    server.embed_faults.extend([fake.status(500)] * 3)
    with pytest.raises(LLMRequestError, match="embedding request for 1 texts failed: gave up after 3 attempts"):
        client.embed(["y"], "emb-1")


def test_token_and_cost_accounting(server, tmp_path):
    server.chat = lambda body: fake.text("ok", prompt_tokens=1000, completion_tokens=500)
    client = make_client(server, tmp_path, prices={"m1": (2.0, 8.0)})
    client.chat(USER, "m1")
    client.chat([{"role": "user", "content": "again"}], "m1")
    client.chat(USER, "m1")  # cached: costs nothing
    assert client.stats.prompt_tokens == 2000 and client.stats.completion_tokens == 1000
    assert client.stats.cost_usd == pytest.approx((2000 * 2.0 + 1000 * 8.0) / 1e6, rel=1e-12)
    client.chat(USER, "unpriced-model")
    assert client.stats.unpriced_models == ["unpriced-model"]
    assert client.stats["cache_hits"] == 1


def test_api_key_is_sent_but_never_written_or_logged(server, tmp_path, caplog, monkeypatch):
    secret = "sk-test-SECRET-4242"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.chat = lambda body: fake.text("fine")
    caplog.set_level(logging.DEBUG)
    client = LLMClient(cache_dir=tmp_path / "cache", max_retries=1, backoff_base_s=0.01, seed=0)
    assert client.chat(USER, "m1").text == "fine"
    assert server.requests[-1].authorization == f"Bearer {secret}"
    # A server that echoes the key in its error: the stored error is redacted.
    server.chat = lambda body: fake.status(401, message=f"Incorrect API key provided: {secret}")
    failed = client.chat([{"role": "user", "content": "other"}], "m1")
    assert not failed.ok and secret not in failed.error and "***" in failed.error
    server.chat = lambda body: fake.status(500, message=f"upstream said {secret}")
    failed = client.chat([{"role": "user", "content": "third"}], "m1")
    assert secret not in failed.error
    assert secret not in caplog.text and "HTTP 500" in caplog.text
    assert secret not in repr(client)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text()


def test_no_key_for_the_default_endpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    client = LLMClient(cache_dir=tmp_path / "cache")
    with pytest.raises(LLMConfigError, match="set OPENAI_API_KEY"):
        client.chat(USER, "m1")


def test_torn_cache_entry_is_a_miss(server, tmp_path):
    server.chat = lambda body: fake.text("fresh")
    client = make_client(server, tmp_path)
    client.chat(USER, "m1")
    (path,) = cache_files(tmp_path)
    path.write_text('{"text": "half')
    again = make_client(server, tmp_path).chat(USER, "m1")
    assert again.text == "fresh" and not again.cached
    assert json.loads(path.read_text())["text"] == "fresh"


@pytest.mark.parametrize(
    "answer, value",
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n[1, 2]\n```\nthanks', [1, 2]),
        ('The call is {"tool": "x", "p": {"q": [1]}} as asked', {"tool": "x", "p": {"q": [1]}}),
        ("{broken {\"ok\": true}", {"ok": True}),
    ],
)
def test_extract_json(answer, value):
    assert extract_json(answer) == value


def test_extract_json_without_json():
    with pytest.raises(ValueError, match="no valid JSON"):
        extract_json("nothing to see {here")
