"""The benchmark suite's own arithmetic and plumbing (no timings are asserted anywhere)."""

import argparse
import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


def test_flop_counts_match_the_model():
    import flax.linen as nn

    from bench.accelerator import lora_params, matmul_params
    from petool_jax.config import RuntimeOptions, load_model_config
    from petool_jax.loading import boxed_abstract_params
    from petool_jax.train import params as P

    tiny = load_model_config("tiny")
    abstract = nn.meta.unbox(boxed_abstract_params(tiny, RuntimeOptions(lora_rank=8)))
    flat = P.flatten(abstract)
    n_lora = sum(int(np.prod(v.shape)) for k, v in flat.items() if P.is_lora_key(k))
    n_base = sum(int(np.prod(v.shape)) for k, v in flat.items() if not P.is_lora_key(k))
    assert lora_params(tiny, 8) == n_lora
    assert tiny.num_params() == n_base
    # Untied: the input embedding is a lookup, not a matmul; tied: the table is the head.
    assert matmul_params(tiny) == tiny.num_params() - tiny.vocab_size * tiny.hidden_size
    tied = dataclasses.replace(tiny, tie_word_embeddings=True)
    assert matmul_params(tied) == tied.num_params()


def test_synthetic_batch_gathers_exactly_the_loss_positions():
    from bench.train import RESPONSE_TOKENS, synthetic_batch

    b = synthetic_batch(vocab=100, accumulation=2, micro=3, seq=96, seed=1, gather=True)
    assert b["tokens"].shape == b["loss_mask"].shape == (2, 3, 96)
    assert b["target_idx"].shape[:2] == (2, 3)
    for a in range(2):
        for r in range(3):
            where = np.nonzero(b["loss_mask"][a, r])[0]
            assert len(where) == RESPONSE_TOKENS
            k = int(b["target_mask"][a, r].sum())
            np.testing.assert_array_equal(b["target_idx"][a, r, :k], where)
            np.testing.assert_array_equal(b["target_ids"][a, r, :k], b["targets"][a, r, where])
    np.testing.assert_array_equal(b["tokens"][..., 1:], b["targets"][..., :-1])


def test_suite_plans():
    from bench.__main__ import plan, result_name

    assert list(plan("all", "cpu")) == ["train", "dpo", "generate", "convert", "scaling", "eval_process"]
    assert result_name(plan("eval_process", "cpu")["eval_process"]) == "eval_process"
    assert plan("train", "gpu")["train"][0] == "bench.accelerator"
    assert "generate" not in plan("all", "tpu")
    assert result_name(["bench.generate", "--device", "cpu"]) == "generate.cpu"
    assert result_name(["bench.accelerator", "--name", "accelerator_train"]) == "accelerator_train"
    with pytest.raises(SystemExit):
        plan("dpo", "gpu")


@pytest.mark.slow
def test_sft_sides_compute_the_same_training(tmp_path):
    """petool's step and the PyTorch loop start from the same weights and batch: their losses
    agree over several AdamW steps (full fine-tuning and LoRA with the adapter copied)."""
    from bench.train import compare_case, small_config

    config = small_config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=512,
                          num_attention_heads=4, num_key_value_heads=1, head_dim=16)
    args = argparse.Namespace(batch=2, seq=64, accumulation=1, steps=3, repeats=1, full_logits=False)
    for rank in (0, 8):
        out = compare_case(config, rank, args)
        assert out["first_loss_abs_diff"] < 1e-5
        assert out["last_first_steps_loss_abs_diff"] < 1e-4


@pytest.mark.slow
def test_accelerator_script_smoke(tmp_path):
    """bench.accelerator end to end on a tiny model on CPU, without torch/transformers."""
    block = ("import sys, runpy\n"
             "class B:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in {'torch', 'transformers', 'datasets', 'peft', 'tensorboardX'}:\n"
             "            raise ImportError(name)\n"
             "sys.meta_path.insert(0, B())\n"
             f"sys.argv = ['bench.accelerator', '--smoke', '--out', {str(tmp_path)!r}, '--skip', '8b']\n"
             "runpy.run_module('bench.accelerator', run_name='__main__')\n")
    root = pathlib.Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", block], check=True, capture_output=True, text=True, cwd=root)
    data = json.loads((tmp_path / "accelerator.json").read_text())
    assert data["full"]["chosen"]["tokens_per_s"] > 0 and data["lora"]["chosen"]["mfu_useful"] > 0
    assert set(data["decode"]["cases"]) == {"batch 1", "batch 16"}
    assert (tmp_path / "accelerator.md").read_text().startswith("### Accelerator")
