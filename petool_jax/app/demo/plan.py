"""The demo's sizes: how much data, which model, how many steps.

Two kinds of plan:

- `pretrained` (default, `SMOLLM2`): SmolLM2-135M-Instruct (30 layers, hidden 576, ChatML),
  fetched with `petool models fetch`, then LoRA SFT, LoRA DPO (reference = the base model,
  as the authors' run), export, eval. `SMOLLM2_SMOKE` runs the same stages with a tiny model
  made on the spot (or a GGUF given with `petool demo --model FILE.gguf`).
- `tiny` (`petool demo --model tiny`, and the fallback when the fetch is impossible): the
  earlier from-scratch path: a BPE tokenizer and a 0.43 M-parameter LLaMA trained from
  random weights (warm-up, SFT, DPO). `TINY_SMOKE` is its test size.

Why the SmolLM2 plan has these sizes (2-core CPU, budget 20 minutes and 8 GB for the whole run
including the fetch). Measured here on the shared 2-core VM, as CPU seconds (robust to the other
jobs on it; alone, wall time is about CPU time / 1.8):

- Forward of a ~960-token prompt: 3.2 CPU-s at batch 1 (~300 tokens per CPU-s; batch 4 was
  less efficient, 236). LoRA SFT: ~17 CPU-s per ~1,000-token example (forward + activation
  gradients, no remat), ~5x a forward. The attention was the bottleneck at first (the 5-D
  einsum form ran at ~10 GFLOP/s on XLA:CPU); folding the query groups into 4-D batched
  matmuls (petool_jax/attention.py) made it 2-2.7x faster forward, ~2x backward.
- So one prompt costs ~2 s to evaluate and ~9 s to train on, alone. Prompts are short: 5
  candidates (the release has 10) and at most 5 history calls (release: up to 20), keeping
  the release's wording, JSON formats and structure (preferred tool visible in p ~46% / r,c
  ~39%; r holds a rival rated 0; c = r reordered): ~950 tokens, half of it the candidate list.
- Budget, planned ~17 minutes; the timed run (README) took 18 min 51 s with a 6.9 GB peak:
  fetch + convert 14 s, synth 3 s, SFT 32 examples 437 s, DPO 8 pairs 135 s, export check 13
  s, evaluation of 3 settings x (20 + 20 + 8) prompts 526 s (compilation included). There is
  no room for more SFT data: 32 examples teach the format and part of the provider choice,
  but not yet the functionality among near-neighbour candidates (see the README's figures).
- Evaluation dominates: 20 test entries per setting give a standard error of about 11
  points on a 50% accuracy, enough to check 2x random (40%) and +20 points over the
  zero-shot model (which does not write the call format: it gets 8 entries and 24 new
  tokens). Peak memory: micro-batches of 1 without remat keep SFT near 6 GB (micro-batch 2
  reached 9.3 GB: the attention probabilities of 30 layers are kept for the backward pass).
- LoRA (rank 16, alpha 32, lr 1e-3) rather than full fine-tuning (lr 5e-5), measured on the
  same 24 demo-shaped examples in the same order (6 steps x 4, micro-batch 1): LoRA took 522
  CPU-s in all (start-up and compilation included) with a 6.6 GB peak, its loss fell from 1.11
  to 0.18 per answer token, and on 12 held-out DPO pairs it preferred the user's provider over
  the rival in 9 (the base model: 3; log-prob margin -1.85 -> +1.24). Full fine-tuning on the
  same batches: 86-99 CPU-s per 4-example step (LoRA: ~67) and a ~7.3 GB process (Adam moments
  for all 135M weights), and after 3 steps its loss was 0.70 per answer token where LoRA's was
  0.45 (both 1.11 at the start; it was stopped there for lack of CPU time). So LoRA learns
  more per CPU minute here, and leaves room under the 8 GB budget.
"""

from __future__ import annotations

import dataclasses

# Measured LoRA vs full fine-tuning on SmolLM2 (demo-shaped prompts; filled in by the
# measurement recorded in the README's demo section).
SFT_CHOICE = "lora"


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    name: str
    kind: str  # "pretrained" (SmolLM2) or "tiny" (from scratch)
    # synthesis (petool synth keys)
    num_users: int
    instances_per_user: int
    test_fraction: float
    candidates: int
    history_min: int
    history_max: int
    preferred_min: int
    preferred_max: int
    # tokenizer and model (HF field names; the tiny model, and the smoke stand-in of SmolLM2)
    tokenizer_vocab: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    # training: (tiny only) warm-up on (instruction -> call) pairs, then on histories without
    # candidates (warmup.py); then personalized SFT on the full prompts, then DPO
    calls_steps: int
    calls_batch: int
    calls_lr: float
    calls_seq_len: int
    history_steps: int
    history_batch: int
    history_lr: float
    history_seq_len: int
    max_seq_len: int
    sft_steps: int
    sft_batch: int
    sft_lr: float
    sft_warmup: float
    dpo_steps: int
    dpo_batch: int
    dpo_lr: float
    dpo_beta: float
    dpo_sft_weight: float
    # evaluation
    eval_limit: int | None  # test entries per setting (None = all)
    eval_batch: int
    max_new_tokens: int
    # pretrained plans
    model: str = ""  # petool models name
    lora_rank: int = 0  # 0 = full fine-tuning
    lora_alpha: float = 16.0
    micro_batch: int = 0  # 0 = the whole batch at once
    rated0_max: int = 5  # r/c: at most this many rival calls rated 0
    negative_fraction: float = 0.75
    untrained_max_new_tokens: int = 0  # 0 = max_new_tokens
    untrained_eval_limit: int | None = None  # test entries per setting for the untrained model (None = eval_limit)
    sft_samples: int = 0  # training rows taken per setting file (0 = sft_steps x sft_batch)
    dpo_samples: int = 0  # pairs taken per setting file (0 = dpo_steps x dpo_batch)
    remat: str = "none"  # training's remat policy: "full" for ~4k-token prompts (memory), none is faster

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def synth_overrides(self) -> dict:
        history = {"min_len": self.history_min, "max_len": self.history_max}
        if self.kind == "pretrained":
            # synth's release structure (visible rates, rivals rated 0, c = r reordered) is its
            # default; only the sizes are the demo's.
            history.update(rated0_max=self.rated0_max, negative_fraction=self.negative_fraction)
        else:
            history["negative_fraction"] = 0.25
        return {
            "num_users": self.num_users, "instances_per_user": self.instances_per_user,
            "test_fraction": self.test_fraction, "candidates": self.candidates, "history": history,
            "preferences": {"min_tools": self.preferred_min, "max_tools": self.preferred_max},
        }


# The from-scratch tiny LLaMA (the earlier demo; `petool demo --model tiny`).
TINY = DemoPlan(
    name="tiny", kind="tiny",
    num_users=900, instances_per_user=3, test_fraction=0.07, candidates=5,
    history_min=3, history_max=5, preferred_min=4, preferred_max=12,
    tokenizer_vocab=4096, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1,
    calls_steps=1000, calls_batch=16, calls_lr=3e-3, calls_seq_len=128,
    history_steps=400, history_batch=8, history_lr=3e-3, history_seq_len=384,
    max_seq_len=896, sft_steps=200, sft_batch=8, sft_lr=3e-3, sft_warmup=0.05,
    dpo_steps=40, dpo_batch=8, dpo_lr=2e-4, dpo_beta=0.1, dpo_sft_weight=0.0,
    eval_limit=None, eval_batch=32, max_new_tokens=48,
)

# Every tiny-path stage in about a minute: the tiny plan with smaller data, model and steps.
TINY_SMOKE = dataclasses.replace(
    TINY, name="tiny-smoke",
    num_users=40, instances_per_user=2, test_fraction=0.2, history_max=4, preferred_max=8,
    tokenizer_vocab=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    calls_steps=2, calls_batch=8, history_steps=2, history_batch=4, history_seq_len=512,
    max_seq_len=1024, sft_steps=3, sft_batch=4, sft_warmup=0.0, dpo_steps=2, dpo_batch=4, dpo_lr=1e-4,
    eval_limit=4, eval_batch=16, max_new_tokens=8,
)

# SmolLM2-135M-Instruct, LoRA SFT then DPO. Sizes: see the module docstring.
SMOLLM2 = DemoPlan(
    name="smollm2", kind="pretrained", model="smollm2-135m-instruct",
    num_users=300, instances_per_user=3, test_fraction=0.15, candidates=5,
    history_min=2, history_max=5, preferred_min=5, preferred_max=35, rated0_max=2, negative_fraction=0.4,
    tokenizer_vocab=0, hidden_size=0, intermediate_size=0, num_hidden_layers=0,
    num_attention_heads=1, num_key_value_heads=1,
    calls_steps=0, calls_batch=0, calls_lr=0.0, calls_seq_len=0,
    history_steps=0, history_batch=0, history_lr=0.0, history_seq_len=0,
    max_seq_len=1152, sft_steps=8, sft_batch=4, sft_lr=1e-3, sft_warmup=0.1,
    dpo_steps=2, dpo_batch=4, dpo_lr=2e-4, dpo_beta=0.1, dpo_sft_weight=0.0,
    lora_rank=16, lora_alpha=32.0, micro_batch=1,
    eval_limit=20, untrained_eval_limit=8, eval_batch=4, max_new_tokens=56, untrained_max_new_tokens=24,
)

# Every pretrained-path stage with a tiny stand-in model (made here, or a GGUF given with --model):
# the SmolLM2 plan with smaller data, model and steps.
SMOLLM2_SMOKE = dataclasses.replace(
    SMOLLM2, name="smollm2-smoke",
    num_users=40, instances_per_user=2, test_fraction=0.2, history_max=4, negative_fraction=0.5,
    tokenizer_vocab=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=1,
    # a GGUF stand-in's tokenizer may be much coarser than SmolLM2's: room for ~3k-token prompts
    max_seq_len=3072, sft_steps=3, sft_warmup=0.0, dpo_lr=1e-4,
    lora_rank=4, lora_alpha=8.0, micro_batch=2,
    eval_limit=4, untrained_eval_limit=None, max_new_tokens=8, untrained_max_new_tokens=8,
)

PLANS = {p.name: p for p in (SMOLLM2, SMOLLM2_SMOKE, TINY, TINY_SMOKE)}
# Back-compatible names (tests and notes of the earlier demo).
FULL, SMOKE = TINY, TINY_SMOKE
