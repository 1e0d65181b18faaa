"""The training loop shared by SFT and DPO.

A task supplies the batches (a pure function of the step), the loss and its normaliser;
the loop owns the rest: optimizer, jitted sharded step, async checkpoints with the data
position, exact resume, metrics read one step late (dispatch stays asynchronous), NaN
stop, run-directory outputs and the final model directory.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np

from petool_jax.errors import UserError
from petool_jax.sharding import mesh_rules
from petool_jax.train import params as P
from petool_jax.train.checkpointing import CheckpointStore
from petool_jax.train.config import TrainConfig, to_yaml
from petool_jax.train.run_log import RunLog, peak_flops
from petool_jax.train.setup import PolicySetup, check_micro_batch, local_micro_rows, place_batch
from petool_jax.train.step import build_train_step


@dataclasses.dataclass
class Task:
    """What distinguishes SFT from DPO."""

    name: str
    steps_per_epoch: int
    # (step, local micro rows) -> host batch of this process's rows ([accumulation, local, ...]
    # arrays, with whole-batch counts n_tokens / n_head_positions; see sft_data.Batcher)
    batch_at: Callable[[int, tuple[int, ...] | None], dict]
    loss_fn: Callable  # see step.LossFn
    normaliser: Callable
    frozen_extra: dict = dataclasses.field(default_factory=dict)  # e.g. reference weights
    summarise: Callable[[dict], dict] = lambda m: {}  # device metrics -> extra logged values
    tokens_in: Callable[[dict], int] = lambda b: int(b["n_tokens"])  # the whole batch's, on every host
    seq_len_of: Callable[[dict], int] = lambda b: int(b["tokens"].shape[-1])
    # positions where the output head runs (the losses gather logits at their targets only)
    head_positions_in: Callable[[dict], int] | None = None
    data_summary: dict = dataclasses.field(default_factory=dict)
    # (trainable, frozen) -> {"val_loss": ...} on held-out data (data.val_size), or None
    evaluate: Callable[[dict, dict], dict] | None = None


def step_flops(config, tokens: int, seq: int, head_positions: int) -> int:
    """Model FLOPs of one training step: 6 per weight per token (forward + backward) for the
    matmuls, + 12 L T d_q per token for attention (the PaLM formula), with the output head
    counted only at the positions where it runs."""
    head = config.vocab_size * config.hidden_size
    body = 6 * (config.num_params() - head) + 12 * config.num_hidden_layers * seq * config.q_dim
    return body * tokens + 6 * head * head_positions


def total_steps_of(config: TrainConfig, steps_per_epoch: int) -> int:
    if config.max_steps:
        return config.max_steps
    return int(math.ceil(config.epochs * steps_per_epoch))


def train(config: TrainConfig, policy: PolicySetup, task: Task, run_dir: pathlib.Path) -> dict:
    """Run (or resume) training; returns {"final_step", "losses"}."""
    mesh = policy.bundle.mesh
    check_micro_batch(config, mesh)
    run_dir.mkdir(parents=True, exist_ok=True)
    primary = jax.process_index() == 0
    if primary:
        (run_dir / "config.yaml").write_text(to_yaml(config))

    total = total_steps_of(config, task.steps_per_epoch)
    frozen = {**policy.frozen, **task.frozen_extra}
    store = CheckpointStore(run_dir / "checkpoints", config.keep_checkpoints)
    start = 0
    if config.resume and store.latest_step() is not None:
        start = store.latest_step()
    if start >= total:
        store.close()
        return {"final_step": start, "losses": []}

    local = local_micro_rows(mesh, config.micro_batch_size)  # each host builds only its rows
    first = place_batch(task.batch_at(start, local), mesh)
    batch_shardings = {k: v.sharding for k, v in first.items()}
    jitted, state = build_train_step(task.loss_fn, task.normaliser, config.optimizer, total, policy.trainable, frozen,
                                     batch_shardings, mesh)
    if start:
        state, progress = store.restore(start, state)
        if primary:
            print(f"resumed from step {start} (data epoch {progress['epoch']}, "
                  f"offset {progress['step_in_epoch']})")

    log = RunLog(run_dir, total, start, enabled=primary)
    config_model = policy.bundle.config
    peak = peak_flops(jax.devices()[0].device_kind)
    losses: list[float] = []
    pending: tuple[int, Any, dict, float] | None = None
    eval_every = config.eval_every or config.checkpoint_every
    last_time = time.perf_counter()

    def finish(step, metrics, host_batch, started):
        nonlocal last_time
        metrics = jax.device_get(metrics)
        loss = float(metrics["loss"])
        now = time.perf_counter()
        elapsed = max(now - last_time, 1e-9)
        last_time = now
        if not math.isfinite(loss):
            raise UserError(f"step {step}: loss is {loss}; stopping. The last good checkpoint is kept in "
                            f"{store.directory}")
        tokens = task.tokens_in(host_batch)
        record = {"step": step, "loss": loss, "learning_rate": float(metrics["learning_rate"]),
                  "grad_norm": float(metrics["grad_norm"]), "tokens_per_sec": tokens / elapsed,
                  **task.summarise(metrics)}
        if peak:
            head_positions = task.head_positions_in(host_batch) if task.head_positions_in else tokens
            flops = step_flops(config_model, tokens, task.seq_len_of(host_batch), head_positions)
            record["mfu"] = flops / elapsed / (peak * jax.device_count())
        losses.append(loss)
        if (step % config.log_every == 0) or step == total:
            log.log(record)
        return record

    try:
        for step in range(start, total):
            host_batch = task.batch_at(step, local)
            device_batch = first if step == start else place_batch(host_batch, mesh)
            with mesh_rules(mesh):
                state, metrics = jitted(state, frozen, device_batch)
            if pending is not None:
                finish(*pending)
            pending = (step + 1, metrics, host_batch, time.perf_counter())
            _fault_injection(step + 1)
            done = step + 1
            if done % config.checkpoint_every == 0 or done == total:
                finish(*pending)  # never checkpoint a state whose loss was not finite
                pending = None
                epoch, within = divmod(done, task.steps_per_epoch)
                store.save(done, state, {"step": done, "epoch": epoch, "step_in_epoch": within,
                                         "task": task.name})
            if task.evaluate is not None and (done % eval_every == 0 or done == total):
                log.log_eval({"step": done, **task.evaluate(state["trainable"], frozen)})
        if pending is not None:
            finish(*pending)
    finally:
        store.close()
        log.close()
    return {"final_step": total, "losses": losses, "state": state}


def trained_params(policy: PolicySetup, state: dict) -> dict:
    """The trained parameter tree (trainable merged with frozen)."""
    return P.merge(state["trainable"], policy.frozen)


def write_final_model(run_dir: pathlib.Path, config: TrainConfig, policy: PolicySetup, state: dict) -> pathlib.Path:
    """RUN_DIR/model: a petool model directory. LoRA runs store only the adapter plus the
    base model's path; full fine-tuning stores every weight."""
    from petool_jax.checkpoint import atomic_output_dir, write_model_dir

    out = run_dir / "model"
    host = host_values(state["trainable"])  # every process takes part in the gather
    if jax.process_index() != 0:
        return out
    extra = {"trained_by": "petool train", "run_dir": str(run_dir.resolve())}
    if policy.options.lora_rank:
        base = policy.bundle.base_path if getattr(policy.bundle, "base_path", None) else config.model
        extra.update(base_model=str(pathlib.Path(base).resolve()),
                     lora={"rank": policy.options.lora_rank, "alpha": policy.options.lora_alpha})
    with atomic_output_dir(out, overwrite=True) as tmp:
        write_model_dir(tmp, policy.bundle.config, P.merge(host), config.param_dtype,
                        tokenizer_src=_tokenizer_dir(policy), extra=extra)
    return out


def host_values(flat: dict) -> dict:
    """{key: numpy array}; with several processes each array's shards are gathered from
    all of them (device_get alone reads only this host's devices)."""
    if jax.process_count() == 1:
        return {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}
    from jax.experimental import multihost_utils

    return {k: np.asarray(multihost_utils.process_allgather(v, tiled=True)) for k, v in flat.items()}


def _tokenizer_dir(policy: PolicySetup):
    path = getattr(policy.bundle, "path", None)
    return pathlib.Path(path) if path else None


def _fault_injection(step: int) -> None:
    """Test hook: PETOOL_FAULT_KILL_AT_STEP=N sends this process SIGKILL right after step N
    is dispatched (possibly while an async checkpoint is being written), to prove that
    resume is exact and that a half-written checkpoint is never restored."""
    import os
    import signal

    if os.environ.get("PETOOL_FAULT_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
