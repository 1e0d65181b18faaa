"""AdamW with global-norm clipping and the warmup + decay schedules (HF-equivalent)."""

from __future__ import annotations

import math

import optax

from petool_jax.train.config import OptimizerConfig


def make_schedule(opt: OptimizerConfig, total_steps: int):
    """Linear warmup over ceil(warmup_ratio * total_steps) steps (as transformers), then
    cosine or linear decay to 0, or constant."""
    peak = opt.learning_rate
    warmup = math.ceil(opt.warmup_ratio * total_steps)
    kind = opt.schedule
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), 0.0)
    if kind == "linear":
        return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup),
                                     optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1))], [warmup])
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)],
                                [warmup])


def make_optimizer(opt: OptimizerConfig, total_steps: int):
    schedule = make_schedule(opt, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(opt.max_grad_norm),
        optax.adamw(schedule, b1=opt.adam_b1, b2=opt.adam_b2, eps=opt.adam_eps, weight_decay=opt.weight_decay),
    )
    return tx, schedule
