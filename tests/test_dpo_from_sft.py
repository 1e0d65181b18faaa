"""The paper's recipe, SFT adapter -> DPO: DPO resumes a TRAINED LoRA adapter (lora_b != 0),
so the base model and the starting policy differ. With dpo.reference=base the first step's
rewards must be beta * (log p_policy - log p_base), the base being the adapter-free model;
with dpo.reference=init they are 0. The log-probs are recomputed independently with
transformers: the policy as the merged HF export, the reference as the original HF model."""

import json

import numpy as np
import pytest
import torch

from hf_fixtures import make_hf_model
from petool_jax.app.cli import main as petool
from train_fixtures import write_dpo, write_sft

pytestmark = pytest.mark.filterwarnings("ignore")

BETA = 0.5
N_PAIRS = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_dpo")
    make_hf_model(root / "hf", "llama3.1", seed=11)
    write_sft(root / "sft.json", 16, seed=2, history_len=2)
    write_dpo(root / "dpo.json", N_PAIRS, seed=5, history_len=2)
    common = ["max_seq_len=512", "dtype=float32", "param_dtype=float32", "remat=none", "mesh.fsdp=1",
              "lora.rank=4", "checkpoint_every=100", "log_every=1", "warmup_ratio=0.0"]
    assert petool(["train", "sft", f"model={root / 'hf'}", f"data.train={root / 'sft.json'}",
                   f"output_dir={root / 'sft'}", "batch_size=8", "micro_batch_size=8", "max_steps=4",
                   "learning_rate=3e-2", "schedule=constant", *common]) == 0
    assert petool(["export", "--ckpt", str(root / "sft" / "model"), "--out", str(root / "merged"),
                   "--merge-lora"]) == 0
    return root, common


def first_step_rewards(world, reference):
    root, common = world
    out = root / f"dpo_{reference}"
    assert petool(["train", "dpo", f"model={root / 'sft' / 'model'}", f"data.train={root / 'dpo.json'}",
                   f"output_dir={out}", f"batch_size={N_PAIRS}", f"micro_batch_size={N_PAIRS}", "max_steps=1",
                   f"dpo.reference={reference}", f"dpo.beta={BETA}", "learning_rate=1e-3", *common]) == 0
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote the BOS


def torch_response_logps(model_dir, tokenizer, pairs):
    """sum log p(response | prompt) for the chosen and rejected answer of every pair, from the
    transformers model in `model_dir`, in float64."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    model.eval()
    out = []
    for pair in pairs:
        messages = [{"role": "system", "content": pair["instruction"]}, {"role": "user", "content": pair["input"]}]
        prompt = encode(tokenizer, tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        sums = []
        for answer in (pair["chosen"], pair["rejected"]):
            full = encode(tokenizer, tokenizer.apply_chat_template(
                messages + [{"role": "assistant", "content": answer}], tokenize=False))
            assert full[:len(prompt)] == prompt
            with torch.no_grad():
                logits = model(torch.tensor([full])).logits[0]
            logp = torch.log_softmax(logits, dim=-1)
            sums.append(sum(float(logp[t - 1, full[t]]) for t in range(len(prompt), len(full))))
        out.append(sums)
    return np.asarray(out)  # [pairs, (chosen, rejected)]


def test_dpo_from_trained_sft_adapter_rewards_against_base_and_init(world):
    import transformers

    root, _ = world
    tokenizer = transformers.AutoTokenizer.from_pretrained(root / "hf")
    pairs = json.loads((root / "dpo.json").read_text())
    policy = torch_response_logps(root / "merged", tokenizer, pairs)
    base = torch_response_logps(root / "hf", tokenizer, pairs)
    expected_chosen, expected_rejected = (BETA * (policy - base)).mean(axis=0)
    # The trained adapter really moved the answers' log-probs, so base != init here.
    assert abs(expected_chosen) > 0.05 and abs(expected_rejected) > 0.05

    with_base = first_step_rewards(world, "base")
    np.testing.assert_allclose(with_base["rewards/chosen"], expected_chosen, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(with_base["rewards/rejected"], expected_rejected, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(with_base["logps/chosen"], policy[:, 0].mean(), atol=2e-4, rtol=1e-5)

    with_init = first_step_rewards(world, "init")
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margin"):
        assert abs(with_init[key]) < 1e-5, key
    np.testing.assert_allclose(with_init["logps/chosen"], with_base["logps/chosen"], atol=1e-5, rtol=0)
