"""A training checkpoint RUN_DIR/checkpoints/N is a model everywhere (issue 16): load,
generate, eval, export and DPO from it give what the model it holds gives (LoRA and full
fine-tuning); and data.val_size's validation loss in metrics.jsonl is the held-out
examples' loss recomputed with transformers from the exported checkpoint.

One LoRA and one full SFT run of 2 steps with a checkpoint after each (module fixture,
~1-2 min on a busy CPU): slow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval_fixtures import small_benchmark, write_json
from hf_fixtures import make_hf_model
from petool_jax.app.cli import main as petool
from train_fixtures import write_dpo, write_sft

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
COMMON = ["max_seq_len=512", "dtype=float32", "param_dtype=float32", "remat=none", "mesh.fsdp=1",
          "checkpoint_every=1", "keep_checkpoints=5", "warmup_ratio=0.0", "learning_rate=2e-2",
          "schedule=constant", "batch_size=4", "micro_batch_size=4", "max_steps=2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt_models")
    make_hf_model(root / "hf", "llama3.1", seed=7)
    write_sft(root / "sft.json", 16, seed=3, history_len=2)
    write_dpo(root / "dpo.json", 4, seed=4, history_len=2)
    for name, rank in (("lora", 4), ("full", 0)):
        assert petool(["train", "sft", f"model={root / 'hf'}", f"data.train={root / 'sft.json'}",
                       f"output_dir={root / name}", f"lora.rank={rank}", "data.val_size=0.25", *COMMON]) == 0
    return root


def _logits(path):
    import jax.numpy as jnp

    from petool_jax.loading import load_model

    bundle = load_model(path)
    tokens = jnp.array([[1, 5, 9, 22, 7, 3, 40, 2]])
    logits = bundle.model.apply({"params": bundle.params}, tokens)
    return np.asarray(logits[0] if isinstance(logits, tuple) else logits), bundle


@pytest.mark.parametrize("run", ["lora", "full"])
def test_checkpoint_loads_as_the_model_it_holds(world, run):
    final, final_bundle = _logits(world / run / "model")
    last, bundle = _logits(world / run / "checkpoints" / "2")
    earlier, _ = _logits(world / run / "checkpoints" / "1")
    np.testing.assert_array_equal(last, final)
    assert np.abs(earlier - final).max() > 1e-3  # step 1 is another model: the test can tell
    assert bundle.options.lora_rank == final_bundle.options.lora_rank == (4 if run == "lora" else 0)
    assert bundle.tokenizer is not None and bundle.tokenizer.get_vocab() == final_bundle.tokenizer.get_vocab()


@pytest.mark.parametrize("run", ["lora", "full"])
def test_export_from_checkpoint_equals_export_of_model(world, run, tmp_path):
    from safetensors.numpy import load_file

    flags = ["--merge-lora"] if run == "lora" else []
    for source in ("model", "checkpoints/2"):
        assert petool(["export", "--ckpt", str(world / run / source), "--out", str(tmp_path / source.replace("/", "_")),
                       *flags]) == 0
    a = load_file(str(tmp_path / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "checkpoints_2" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (tmp_path / "checkpoints_2" / "tokenizer.json").is_file()
    if run == "lora":
        assert petool(["export", "--ckpt", str(world / run / "checkpoints" / "1"), "--out", str(tmp_path / "peft"),
                       "--peft"]) == 0
        assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("run", ["lora", "full"])
def test_generate_and_eval_from_checkpoint(world, run, tmp_path, capsys):
    outputs = {}
    for source in ("model", "checkpoints/2"):
        capsys.readouterr()
        assert petool(["generate", "--model", str(world / run / source), "--prompt", "hello", "--chat",
                       "--max-new-tokens", "6", "--json"]) == 0
        outputs[source] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["token_ids"]
    assert outputs["model"] == outputs["checkpoints/2"] and len(outputs["model"]) > 0
    data = write_json(tmp_path / "user_entries_test.json", small_benchmark()[:2])
    predictions = {}
    for source in ("model", "checkpoints/2"):
        out = tmp_path / source.replace("/", "_")
        assert petool(["eval", "run", "--model", str(world / run / source), "--data", str(data), "--out", str(out),
                       "--settings", "p", "--max-new-tokens", "8", "--batch-size", "2"]) == 0
        predictions[source] = [(r["entry_id"], r["response"]) for r in
                               map(json.loads, (out / "predictions.jsonl").read_text().splitlines())]
    assert sorted(predictions["model"]) == sorted(predictions["checkpoints/2"])


@pytest.mark.parametrize("run", ["lora", "full"])
def test_dpo_from_checkpoint_equals_dpo_from_the_model(world, run):
    runs, finals = {}, {}
    rank = "lora.rank=4" if run == "lora" else "lora.rank=0"
    for source in ("model", "checkpoints/2"):
        out = world / f"dpo_{run}_{source.replace('/', '_')}"
        assert petool(["train", "dpo", f"model={world / run / source}", f"data.train={world / 'dpo.json'}",
                       f"output_dir={out}", rank, "dpo.reference=base",
                       *[c for c in COMMON if not c.startswith("max_steps")], "max_steps=1",
                       "checkpoint_every=100"]) == 0
        runs[source] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        finals[source] = _logits(out / "model")[0]
        if run == "lora":
            marker = json.loads((out / "model" / "petool_model.json").read_text())
            assert marker["base_model"] == str((world / "hf").resolve())
    a, b = runs["model"][0], runs["checkpoints/2"][0]
    assert a["loss"] == b["loss"] and a["rewards/margin"] == b["rewards/margin"]
    np.testing.assert_array_equal(finals["model"], finals["checkpoints/2"])
    if run == "lora":  # a trained adapter vs the base reference: the start is not the reference
        assert a["rewards/chosen"] != 0.0


def test_validation_loss_is_the_held_out_loss(world):
    import torch
    import transformers

    from petool_jax import petoolbench as pb
    from petool_jax.chat import ChatRenderer
    from petool_jax.train.sft import split_validation
    from petool_jax.train.sft_data import load_sft_examples

    run = world / "full"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r for r in records if "val_loss" in r}
    assert sorted(val) == [1, 2] and all("loss" not in r for r in val.values())
    assert sum("loss" in r for r in records) == 2

    examples = load_sft_examples([str(world / "sft.json")], ["p", "r", "c"], 0, "auto")
    train_rows, val_rows = split_validation(len(examples), 0.25, 0)
    assert len(val_rows) == 4 and not set(train_rows) & set(val_rows)
    assert petool(["export", "--ckpt", str(run / "checkpoints" / "2"), "--out", str(world / "full_hf2")]) == 0
    model = transformers.AutoModelForCausalLM.from_pretrained(world / "full_hf2", dtype=torch.float64)
    tokenizer = transformers.AutoTokenizer.from_pretrained(world / "full_hf2")
    renderer = ChatRenderer(tokenizer)
    total, tokens = 0.0, 0
    for i in val_rows:
        example = examples[i]
        entry = {pb.INSTRUCTION_KEYS["p"]: example["instruction"], "query": example["query"]}
        ids, mask = renderer.encode(pb.build_messages(entry, "p"), example["answer"])
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], dim=-1)
        picked = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        weights = torch.tensor(mask[1:], dtype=torch.float64)
        total -= float((picked * weights).sum())
        tokens += int(weights.sum())
    assert val[2]["val_tokens"] == tokens
    assert val[2]["val_loss"] == pytest.approx(total / tokens, rel=1e-4)
    assert val[1]["val_loss"] != val[2]["val_loss"]
