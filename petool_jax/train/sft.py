"""Personalized SFT: masked cross-entropy over the assistant's tokens, in fp32, divided by
the number of assistant tokens of the whole optimizer step."""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from petool_jax.train import params as P
from petool_jax.train.config import TrainConfig
from petool_jax.train.setup import load_policy, maybe_initialize_distributed, mesh_from_config
from petool_jax.train.sft_data import SequenceBatcher, check_batch_has_targets, tokenized_dataset
from petool_jax.train.trainer import Task, train, write_final_model


def token_log_probs(model, params, tokens, positions, segment_ids, targets, gather=None):
    """log p(target | prefix) in float32: [B, T] for every position, or [B, K] at the
    positions in `gather` (targets then [B, K])."""
    logits, _ = model.apply({"params": params}, tokens, positions, segment_ids_BxT=segment_ids, gather_BxN=gather)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def make_sft_loss(model, packing: bool = True):
    """Without packing the segment ids (1 on the example, 0 on right padding) are not passed:
    causal attention already hides the padding from real tokens, and the mask kind stays
    plain causal, which `attention: auto` may run with cuDNN on a GPU."""

    def loss_fn(trainable, frozen, mb, norm):
        params = P.merge(trainable, frozen)
        segments = mb["segment_ids"] if packing else None
        if "target_idx" in mb:  # logits only where the loss is (see sft_data.gather_targets)
            logp = token_log_probs(model, params, mb["tokens"], mb["positions"], segments,
                                   mb["target_ids"], gather=mb["target_idx"])
            mask = mb["target_mask"]
        else:
            logp = token_log_probs(model, params, mb["tokens"], mb["positions"], segments, mb["targets"])
            mask = mb["loss_mask"]
        return -jnp.sum(logp * mask) / norm, {"target_tokens": jnp.sum(mask)}

    return loss_fn


def sft_normaliser(batch):
    return jnp.maximum(jnp.sum(batch["loss_mask"]), 1.0)


def build_sft_task(config: TrainConfig, tokenizer, model, run_dir: pathlib.Path, log=print, mesh=None) -> Task:
    data = config.data
    paths = list(data.train)
    cache_dir = pathlib.Path(data.cache_dir or run_dir / "cache")
    ds, summary = tokenized_dataset(paths, tokenizer, list(data.settings), data.prompt_format,
                                    config.max_seq_len, data.max_samples, data.format, cache_dir, log=log)
    sequences, masks = ds["input_ids"], ds["assistant_mask"]
    train_rows, val_rows = split_validation(len(sequences), data.val_size, config.seed)
    batcher = SequenceBatcher(sequences=[sequences[i] for i in train_rows], masks=[masks[i] for i in train_rows],
                              batch_size=config.batch_size, micro_batch_size=config.micro_batch_size,
                              max_seq_len=config.max_seq_len, seed=config.seed,
                              packing=data.packing, pad_id=tokenizer.pad_token_id or 0)
    evaluate = None
    if val_rows:
        summary = {**summary, "validation": len(val_rows)}
        log(f"{len(val_rows)} examples held out for validation (data.val_size={data.val_size})")
        val_batcher = SequenceBatcher(sequences=[sequences[i] for i in val_rows], masks=[masks[i] for i in val_rows],
                                      batch_size=config.micro_batch_size, micro_batch_size=config.micro_batch_size,
                                      max_seq_len=config.max_seq_len, seed=config.seed,
                                      packing=False, pad_id=tokenizer.pad_token_id or 0)
        evaluate = make_validation(make_sft_loss(model, packing=False), val_batcher, mesh)
    if data.packing and config.attention == "cudnn":
        from petool_jax.errors import UserError

        raise UserError("data.packing needs attention=xla (the cuDNN path is causal-only, without segments)")

    def batch_at(step, local=None):
        batch = batcher.batch(step, local)
        check_batch_has_targets(batch, step)
        return batch

    return Task(name="sft", steps_per_epoch=batcher.steps_per_epoch(), batch_at=batch_at,
                loss_fn=make_sft_loss(model, data.packing), normaliser=sft_normaliser,
                summarise=lambda m: {"target_tokens": int(m["target_tokens"])},
                head_positions_in=lambda b: int(b["n_head_positions"]), data_summary=summary, evaluate=evaluate)


def split_validation(n: int, val_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, validation rows): ceil(val_size * n) rows drawn with `seed` (LLaMA-Factory's
    val_size; its own split draws with another generator, so the rows differ)."""
    if val_size <= 0:
        return list(range(n)), []
    n_val = math.ceil(val_size * n)
    if n_val >= n:
        from petool_jax.errors import UserError

        raise UserError(f"data.val_size={val_size} leaves no training examples of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def make_validation(loss_fn, batcher: SequenceBatcher, mesh):
    """(trainable, frozen) -> {"val_loss", "val_tokens"}: the masked cross-entropy of every
    held-out example once (epoch 0 of `batcher`, one micro-batch a step), per target token."""
    from petool_jax.sharding import mesh_rules
    from petool_jax.train.setup import place_batch

    @jax.jit
    def summed(trainable, frozen, batch):
        return loss_fn(trainable, frozen, jax.tree.map(lambda x: x[0], batch), jnp.float32(1.0))

    def evaluate(trainable, frozen) -> dict:
        total, tokens = 0.0, 0.0
        for step in range(batcher.steps_per_epoch()):
            batch = place_batch(batcher.batch(step), mesh)
            with mesh_rules(mesh):
                loss, aux = summed(trainable, frozen, batch)
            total, tokens = total + float(loss), tokens + float(aux["target_tokens"])
        return {"val_loss": total / max(tokens, 1.0), "val_tokens": int(tokens)}

    return evaluate


def run_sft(config: TrainConfig) -> dict:
    maybe_initialize_distributed()
    run_dir = pathlib.Path(config.output_dir)
    mesh = mesh_from_config(config)
    policy = load_policy(config.model, config, mesh)
    from petool_jax.model import Llama

    model = Llama(policy.bundle.config, policy.options)
    task = build_sft_task(config, policy.bundle.tokenizer, model, run_dir, mesh=mesh)
    result = train(config, policy, task, run_dir)
    if "state" in result:
        result["model_dir"] = str(write_final_model(run_dir, config, policy, result["state"]))
    result["data"] = task.data_summary
    return result


def host_params(tree) -> dict:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
