"""The LLM cache is keyed by the endpoint: two OpenAI-compatible servers on 127.0.0.1 that
serve a model of the same name but answer differently never share cached answers; and API
keys come from the environment only (`--api-key` is refused)."""

from __future__ import annotations

import pytest

import llm_fake_server as fake
from petool_jax.llm_cache import endpoint_of
from petool_jax.llm_client import LLMClient

USER = [{"role": "user", "content": "which tool?"}]


@pytest.fixture
def servers():
    a, b = fake.FakeOpenAIServer().start(), fake.FakeOpenAIServer().start()
    a.chat = lambda body: fake.text("answer from A")
    b.chat = lambda body: fake.text("answer from B")
    a.embedding = lambda text: [1.0, 0.0]
    b.embedding = lambda text: [0.0, 1.0]
    yield a, b
    a.stop()
    b.stop()


def client(base_url, cache_dir):
    return LLMClient(base_url=base_url, api_key="sk-test", cache_dir=cache_dir, max_retries=0, timeout_s=5)


def test_two_servers_one_model_name_never_share_cached_answers(servers, tmp_path):
    a, b = servers
    assert a.base_url != b.base_url
    cache = tmp_path / "cache"  # ONE cache directory shared by both clients
    first_a = client(a.base_url, cache).chat(USER, "same-model", temperature=0)
    first_b = client(b.base_url, cache).chat(USER, "same-model", temperature=0)
    assert (first_a.text, first_a.cached) == ("answer from A", False)
    assert (first_b.text, first_b.cached) == ("answer from B", False)  # not A's cached answer
    assert (a.count("chat"), b.count("chat")) == (1, 1)
    assert len(list(cache.rglob("*.json"))) == 2

    # Reruns are served from the cache, each from its own server's entry (a trailing slash
    # names the same endpoint), with no request sent.
    again_a = client(a.base_url + "/", cache).chat(USER, "same-model", temperature=0)
    again_b = client(b.base_url, cache).chat(USER, "same-model", temperature=0)
    assert (again_a.text, again_a.cached) == ("answer from A", True)
    assert (again_b.text, again_b.cached) == ("answer from B", True)
    assert (a.count("chat"), b.count("chat")) == (1, 1)

    # Embeddings too.
    assert client(a.base_url, cache).embed(["doc"], "same-embed") == [[1.0, 0.0]]
    assert client(b.base_url, cache).embed(["doc"], "same-embed") == [[0.0, 1.0]]
    assert (a.count("embeddings"), b.count("embeddings")) == (1, 1)


def test_endpoint_normalisation_keeps_credentials_out():
    assert endpoint_of(None) == "https://api.openai.com/v1"
    assert endpoint_of("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert endpoint_of("https://user:pw@host.example/v1") == "https://host.example/v1"


def test_eval_cli_refuses_api_key_flag(tmp_path, capsys, monkeypatch):
    from petool_jax.app.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    secret = "sk-never-on-the-command-line"
    code = main(["eval", "run", "--model", "openai:x", "--data", str(tmp_path / "d.json"),
                 "--out", str(tmp_path / "out"), "--api-key", secret])
    err = capsys.readouterr().err
    assert code == 2
    assert "--api-key is not accepted" in err and "OPENAI_API_KEY" in err and secret not in err
    assert not (tmp_path / "out").exists()
    help_text = _help(["eval", "run", "--help"], capsys)
    assert "--api-key" not in help_text and "OPENAI_API_KEY (environment only)" in " ".join(help_text.split())


def _help(args, capsys):
    from petool_jax.app.cli import main

    with pytest.raises(SystemExit):
        main(args)
    return capsys.readouterr().out
