"""Bad checkpoints and paths give a clear error naming the problem and leave nothing
half-written behind."""

import json
import os

import numpy as np
import pytest

from hf_fixtures import make_hf_model
from petool_jax.app.cli import main as petool
from petool_jax.safetensors_io import SafetensorsFile, write_file


@pytest.fixture()
def hf_dir(tmp_path):
    path = tmp_path / "hf"
    make_hf_model(path, "llama3", num_layers=1)
    return path


def convert_error(capsys, hf, out):
    code = petool(["convert", "--hf", str(hf), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]
    return err


def rewrite(path, edit):
    """Rewrite a safetensors file through `edit(dict of arrays) -> dict of arrays`."""
    st = SafetensorsFile(path)
    tensors = edit({k: st.read(k) for k in st.keys()})
    specs = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    write_file(path, specs, tensors.__getitem__)


def test_missing_weights_file(hf_dir, capsys):
    os.remove(hf_dir / "model.safetensors")
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert "no model.safetensors or model.safetensors.index.json" in err


def test_missing_shard_listed_in_index(tmp_path, capsys):
    hf = tmp_path / "hf"
    make_hf_model(hf, "llama3", max_shard_size="60KB")
    index = json.loads((hf / "model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[1]
    os.remove(hf / victim)
    err = convert_error(capsys, hf, tmp_path / "out")
    assert f"shard files missing: ['{victim}']" in err


def test_truncated_file(hf_dir, capsys):
    path = hf_dir / "model.safetensors"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert "model.safetensors: truncated file: tensor" in err
    assert f"but the file has {size - 100} bytes" in err


def test_wrong_shape(hf_dir, capsys):
    rewrite(hf_dir / "model.safetensors",
            lambda t: {**t, "model.layers.0.mlp.up_proj.weight": np.zeros((100, 64), np.float32)})
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert "wrong shapes: model.layers.0.mlp.up_proj.weight in model.safetensors: [100, 64], expected [128, 64]" in err


def test_missing_and_unexpected_keys_are_listed(hf_dir, capsys):
    def edit(tensors):
        tensors = dict(tensors)
        del tensors["model.norm.weight"], tensors["model.layers.0.self_attn.k_proj.weight"]
        tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(16, np.float32)
        tensors["model.layers.7.mlp.up_proj.weight"] = np.ones((128, 64), np.float32)  # only 1 layer
        return tensors

    rewrite(hf_dir / "model.safetensors", edit)
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert "missing tensors (2): ['model.layers.0.self_attn.k_proj.weight', 'model.norm.weight']" in err
    assert "unexpected tensors (2): ['model.layers.0.self_attn.q_norm.weight', " \
           "'model.layers.7.mlp.up_proj.weight']" in err


@pytest.mark.parametrize("model_type,arch", [("mistral", "MistralForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_unsupported_architecture(hf_dir, capsys, model_type, arch):
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(model_type=model_type, architectures=[arch])
    (hf_dir / "config.json").write_text(json.dumps(config))
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert f"unsupported architecture (model_type='{model_type}', architectures=['{arch}'])" in err


def test_unsupported_llama_variants(hf_dir, capsys):
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    assert "attention_bias=True is not supported" in convert_error(capsys, hf_dir, hf_dir.parent / "o1")
    rope = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 500000.0}
    (hf_dir / "config.json").write_text(json.dumps({**config, "rope_parameters": rope}))
    assert "rope type 'yarn' is not supported" in convert_error(capsys, hf_dir, hf_dir.parent / "o2")


def test_existing_output_is_refused_unless_overwrite(hf_dir, tmp_path, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert petool(["convert", "--hf", str(hf_dir), "--out", str(out)]) == 2
    assert "already exists (pass --overwrite to replace it)" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
    assert petool(["convert", "--hf", str(hf_dir), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "petool_model.json").is_file()
    # export refuses an existing directory the same way
    hf_out = tmp_path / "hf_out"
    hf_out.mkdir()
    assert petool(["export", "--ckpt", str(out), "--out", str(hf_out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_failed_write_leaves_previous_output_intact(hf_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ckpt"
    assert petool(["convert", "--hf", str(hf_dir), "--out", str(out)]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    import petool_jax.convert as convert

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(convert, "write_model_files", boom)
    with pytest.raises(OSError, match="disk full"):
        petool(["convert", "--hf", str(hf_dir), "--out", str(out), "--overwrite"])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_of_non_petool_dir(hf_dir, tmp_path, capsys):
    assert petool(["export", "--ckpt", str(hf_dir), "--out", str(tmp_path / "x")]) == 2
    assert "not a petool model directory (no petool_model.json)" in capsys.readouterr().err


def test_pickle_only_checkpoint_is_refused(hf_dir, capsys):
    os.rename(hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin")
    err = convert_error(capsys, hf_dir, hf_dir.parent / "out")
    assert "only pickle weights (*.bin/*.pth) found; petool loads safetensors only" in err
