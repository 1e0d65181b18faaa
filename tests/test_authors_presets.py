"""configs/train/{sft,dpo}_authors.yaml and configs/eval/authors.yaml state the authors' recipe:
the values of their LLaMA-Factory YAMLs (dataset_sft/llama3_lora_sft.yaml,
dataset_dpo/llama3_lora_sft-dpo.yaml) and run_experiment.py's API call, transcribed here."""

from __future__ import annotations

import pathlib

import yaml

from petool_jax.train.config import load_train_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_sft_authors_preset_is_their_llama_factory_run():
    c = load_train_config(CONFIGS / "train" / "sft_authors.yaml", [])
    # per_device_train_batch_size 2 x gradient_accumulation_steps 8, learning_rate 1e-4, cosine,
    # warmup_ratio 0.1, 1 epoch, cutoff_len 4096, max_samples 2000, val_size 0.1, save/eval_steps 50
    assert (c.batch_size, c.micro_batch_size, c.max_seq_len, c.epochs) == (16, 2, 4096, 1)
    assert (c.optimizer.learning_rate, c.optimizer.schedule, c.optimizer.warmup_ratio) == (1e-4, "cosine", 0.1)
    assert (c.lora.rank, c.lora.alpha, c.lora.dropout) == (8, 16.0, 0.0)
    assert (c.data.prompt_format, c.data.max_samples, c.data.val_size) == ("llama_factory", 2000, 0.1)
    assert (c.checkpoint_every, c.eval_every) == (50, 50) and c.keep_checkpoints >= 100
    assert [pathlib.Path(p).name for p in c.data.train] == [f"user_entries_sft_{s}.json" for s in "prc"]


def test_dpo_authors_preset_starts_from_sft_checkpoint_50():
    c = load_train_config(CONFIGS / "train" / "dpo_authors.yaml", [])
    # adapter_name_or_path saves/.../sft/checkpoint-50; pref_loss sigmoid, pref_beta 0.1, lr 5e-6,
    # 1 x 32 accumulation, 1 epoch, cosine, warmup 0.1, cutoff 4096, max_samples 2000, save_steps 50
    assert c.model == "runs/sft_authors/checkpoints/50"
    assert (c.batch_size, c.micro_batch_size, c.optimizer.learning_rate) == (32, 1, 5e-6)
    assert (c.dpo.loss, c.dpo.beta, c.dpo.reference) == ("sigmoid", 0.1, "base")
    assert (c.data.prompt_format, c.data.max_samples, c.checkpoint_every) == ("llama_factory", 2000, 50)


def test_eval_authors_preset_is_their_api_protocol():
    values = yaml.safe_load((CONFIGS / "eval" / "authors.yaml").read_text())
    assert (values["protocol"], values["timeout_s"], values["max_retries"]) == ("authors", 10.0, 2)
    assert values["model"].startswith("openai:")
