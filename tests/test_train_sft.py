"""SFT training: sharded == single device, accumulation == big batch, kill-and-resume,
LoRA invariants and export, NaN stop."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from petool_jax.app.cli import main as petool
from petool_jax.safetensors_io import iter_checkpoint_files
from train_fixtures import make_train_world, read_metrics, train_args

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("sft"), "sft", 48, model_seed=5, data_seed=1)


def base_args(world, out, *extra):
    return train_args("sft", world, out, "learning_rate=5e-3", "log_every=1", *extra)


def losses(run_dir):
    return [row["loss"] for row in read_metrics(run_dir)]


def model_params(run_dir):
    from petool_jax.checkpoint import load_params

    import jax

    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(load_params(run_dir / "model"))}


def test_sharded_runs_match_single_device(world, tmp_path):
    runs = {}
    for name, mesh in {"one": (1, 1, 1), "fsdp4_tensor2": (1, 4, 2), "data8": (8, 1, 1)}.items():
        out = tmp_path / name
        args = base_args(world, out, "batch_size=8", "micro_batch_size=8", "max_steps=5", "lora.rank=0",
                         "checkpoint_every=100", f"mesh.data={mesh[0]}", f"mesh.fsdp={mesh[1]}",
                         f"mesh.tensor={mesh[2]}")
        assert petool(args) == 0
        runs[name] = losses(out)
    assert len(runs["one"]) == 5 and runs["one"][-1] < runs["one"][0]
    for name in ("fsdp4_tensor2", "data8"):
        np.testing.assert_allclose(runs[name], runs["one"], atol=1e-5, rtol=0)


def base_params(world):
    import jax

    from petool_jax.loading import load_model

    bundle = load_model(world / "hf", with_tokenizer=False)
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(bundle.params)}


def test_gradient_accumulation_equals_one_big_batch(world, tmp_path):
    params = {}
    for micro in (2, 8):  # 4 x 2 vs 1 x 8
        out = tmp_path / f"micro{micro}"
        # lr 1e-3: Adam's first update is ~lr per weight, 1000x the tolerance below
        assert petool(base_args(world, out, "batch_size=8", f"micro_batch_size={micro}", "max_steps=1",
                                "lora.rank=0", "mesh.fsdp=1", "checkpoint_every=100", "learning_rate=1e-3")) == 0
        params[micro] = model_params(out)
    assert params[2].keys() == params[8].keys()
    moved = [np.abs(params[8][k] - base_params(world)[k]).max() for k in params[8]]
    assert min(moved) > 1e-4  # every parameter really moved
    for key in params[2]:
        np.testing.assert_allclose(params[2][key], params[8][key], atol=1e-6, rtol=0, err_msg=key)


def test_kill_and_resume_gives_the_same_run(world, tmp_path):
    common = ["batch_size=4", "micro_batch_size=2", "max_steps=8", "checkpoint_every=2", "lora.rank=4",
              "mesh.fsdp=1", "keep_checkpoints=2"]
    straight = tmp_path / "straight"
    assert petool(base_args(world, straight, *common)) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "petool_jax.app.cli", *base_args(world, killed, *common)]
    env = {**os.environ, "PETOOL_FAULT_KILL_AT_STEP": "5"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr[-2000:]
    steps_done = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert steps_done and max(steps_done) <= 4
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {max(steps_done)}" in resumed.stdout

    assert losses(killed) == losses(straight)  # bitwise: same data order, same updates
    a, b = model_params(straight), model_params(killed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_lora_keeps_base_weights_and_exports_merged_and_peft(world, tmp_path):
    import torch
    import transformers

    out = tmp_path / "lora"
    assert petool(base_args(world, out, "batch_size=4", "micro_batch_size=4", "max_steps=3", "lora.rank=4",
                            "lora.alpha=8", "mesh.fsdp=1", "checkpoint_every=100")) == 0
    marker = json.loads((out / "model" / "petool_model.json").read_text())
    assert marker["lora"] == {"rank": 4, "alpha": 8.0}

    from petool_jax.loading import load_model

    trained = load_model(out / "model", with_tokenizer=False)
    original = load_model(world / "hf", with_tokenizer=False)
    import jax

    for (path, base_leaf) in jax.tree_util.tree_leaves_with_path(original.params):
        node = trained.params
        for k in path:
            node = node[k.key]
        assert np.asarray(node).tobytes() == np.asarray(base_leaf).tobytes(), path  # bitwise unchanged
    adapter = trained.params["layers"]["attn"]["q_proj"]
    assert np.abs(np.asarray(adapter["lora_b"])).max() > 0  # the adapter did learn

    merged_dir, peft_dir = tmp_path / "merged", tmp_path / "peft"
    assert petool(["export", "--ckpt", str(out / "model"), "--out", str(merged_dir), "--merge-lora"]) == 0
    assert petool(["export", "--ckpt", str(out / "model"), "--out", str(peft_dir), "--peft"]) == 0
    base = {n: st.read(n) for st in iter_checkpoint_files(world / "hf") for n in st.keys()}
    merged = {n: st.read(n) for st in iter_checkpoint_files(merged_dir) for n in st.keys()}
    scale = 8.0 / 4
    for layer in range(2):
        for group, name in (("attn", "q_proj"), ("mlp", "down_proj")):
            module = trained.params["layers"][group][name]
            a, b = np.asarray(module["lora_a"][layer]), np.asarray(module["lora_b"][layer])
            hf_name = f"model.layers.{layer}.{'self_attn' if group == 'attn' else 'mlp'}.{name}.weight"
            expected = base[hf_name] + scale * (b.T @ a.T)  # torch layout [out, in]: W + s * B @ A
            np.testing.assert_allclose(merged[hf_name], expected, atol=1e-6)
    assert np.array_equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])

    import peft
    tokens = torch.arange(60)[None] % 500
    hf_merged = transformers.AutoModelForCausalLM.from_pretrained(merged_dir)
    hf_base = transformers.AutoModelForCausalLM.from_pretrained(world / "hf")
    with_adapter = peft.PeftModel.from_pretrained(hf_base, peft_dir)
    ours = trained.model.apply({"params": trained.params}, tokens.numpy())[0]
    with torch.no_grad():
        np.testing.assert_allclose(with_adapter(tokens).logits.numpy(), hf_merged(tokens).logits.numpy(), atol=1e-5)
        np.testing.assert_allclose(hf_merged(tokens).logits.numpy(), np.asarray(ours), atol=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(world, tmp_path, capsys):
    out = tmp_path / "nan"
    code = petool(base_args(world, out, "batch_size=4", "micro_batch_size=4", "max_steps=6", "lora.rank=0",
                            "mesh.fsdp=1", "checkpoint_every=1", "learning_rate=1e30", "max_grad_norm=1e30"))
    err = capsys.readouterr().err
    assert code == 2
    assert "loss is nan; stopping. The last good checkpoint is kept in" in err or \
           "loss is inf; stopping. The last good checkpoint is kept in" in err
    from petool_jax.train.checkpointing import CheckpointStore

    store = CheckpointStore(out / "checkpoints", 3)
    last = store.latest_step()
    store.close()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert last is not None and last == logged[-1]["step"]
    assert all(np.isfinite(r["loss"]) for r in logged)


def test_mfu_is_logged_on_known_chips_and_counts_the_head_where_it_runs(world, tmp_path, monkeypatch):
    import petool_jax.train.trainer as trainer
    from petool_jax.config import load_model_config

    cfg = load_model_config("llama3-8b-instruct")
    head = cfg.vocab_size * cfg.hidden_size
    # 2,600-token prompts with 64 gathered answer positions: the head's FLOPs are 1/40 of naive
    full = trainer.step_flops(cfg, tokens=2600, seq=4096, head_positions=2600)
    gathered = trainer.step_flops(cfg, tokens=2600, seq=4096, head_positions=64)
    assert full == (6 * cfg.num_params() + 12 * 32 * 4096 * 4096) * 2600
    assert full - gathered == 6 * head * (2600 - 64)

    monkeypatch.setattr(trainer, "peak_flops", lambda kind: 1e12)  # pretend the CPU is a known chip
    out = tmp_path / "mfu"
    assert petool(base_args(world, out, "batch_size=4", "micro_batch_size=4", "max_steps=2", "lora.rank=0",
                            "mesh.fsdp=1", "checkpoint_every=100")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["mfu"] < 1 for r in records)
