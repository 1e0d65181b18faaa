"""Personalized DPO: prefix-shared pairs, reference strategies (base / init / precomputed),
the losses of dpo_losses.py and an optional SFT term on the chosen answer."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from petool_jax.attention import prefix_shared_spec, require_mask_kernel
from petool_jax.errors import UserError
from petool_jax.files import write_npy
from petool_jax.model import Llama
from petool_jax.sharding import mesh_rules
from petool_jax.train import params as P
from petool_jax.train.config import DpoConfig, TrainConfig
from petool_jax.train.dpo_data import PairBatcher, load_pairs, pair_fingerprint, tokenized_pairs
from petool_jax.train.dpo_losses import LOSSES, REFERENCE_FREE, preference_loss
from petool_jax.train.setup import load_policy, maybe_initialize_distributed, mesh_from_config, place_batch
from petool_jax.train.trainer import Task, train, write_final_model

REFERENCES = ("base", "init", "precomputed")
REF_PREFIX = "ref/"


def pair_logps(model, params, mb):
    """Summed float32 log-probs of the chosen and rejected responses, each [B, P]."""
    batch, pairs, k = mb["chosen_idx"].shape
    mask = prefix_shared_spec(mb["pair_ids"], mb["branch_ids"])  # dense for xla, per block for blockwise
    gather = jnp.concatenate([mb["chosen_idx"].reshape(batch, -1), mb["rejected_idx"].reshape(batch, -1)], axis=1)
    targets = jnp.concatenate([mb["chosen_targets"].reshape(batch, -1),
                               mb["rejected_targets"].reshape(batch, -1)], axis=1)
    logits, _ = model.apply({"params": params}, mb["tokens"], mb["positions"], mask_BxTxS=mask, gather_BxN=gather)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_logp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    chosen = (token_logp[:, :pairs * k].reshape(batch, pairs, k) * mb["chosen_mask"]).sum(-1)
    rejected = (token_logp[:, pairs * k:].reshape(batch, pairs, k) * mb["rejected_mask"]).sum(-1)
    return chosen, rejected


def checked_dpo(d: DpoConfig) -> DpoConfig:
    """The DPO section, refused when its loss or reference strategy is unknown."""
    if d.loss not in LOSSES:
        raise UserError(f"dpo.loss {d.loss!r} is not one of {LOSSES}")
    if d.reference not in REFERENCES:
        raise UserError(f"dpo.reference {d.reference!r} is not one of {REFERENCES}")
    return d


REFERENCE_MODES = ("none", "precomputed", "adapter_off", "frozen_copy")


def reference_mode(s: DpoConfig, lora: bool) -> str:
    """How the reference log-probs are obtained:
    none         reference-free losses (simpo, orpo);
    precomputed  read from the batch (computed once before training);
    adapter_off  the base weights with the LoRA adapter disabled (reference=base, LoRA);
    frozen_copy  the starting trainable weights kept frozen under "ref/" (reference=init,
                 and reference=base for full fine-tuning, where base and start coincide)."""
    if s.loss in REFERENCE_FREE:
        return "none"
    if s.reference == "precomputed":
        return "precomputed"
    if s.reference == "base" and lora:
        return "adapter_off"
    return "frozen_copy"


def make_dpo_loss(policy_model, base_model, s: DpoConfig, mode: str):
    """loss_fn(trainable, frozen, micro_batch, n_pairs) for step.make_train_step; reference
    log-probs never enter the gradient."""

    def reference_logps(frozen, mb):
        if mode == "none":
            zeros = jnp.zeros(mb["pair_valid"].shape, jnp.float32)
            return zeros, zeros
        if mode == "precomputed":
            return mb["ref_chosen"], mb["ref_rejected"]
        base = {k: v for k, v in frozen.items() if not k.startswith(REF_PREFIX)}
        if mode == "adapter_off":
            return jax.lax.stop_gradient(pair_logps(base_model, P.merge(base), mb))
        ref = {k[len(REF_PREFIX):]: v for k, v in frozen.items() if k.startswith(REF_PREFIX)}
        return jax.lax.stop_gradient(pair_logps(policy_model, P.merge(ref, base), mb))

    def loss_fn(trainable, frozen, mb, norm):
        base = {k: v for k, v in frozen.items() if not k.startswith(REF_PREFIX)}
        pc, pr = pair_logps(policy_model, P.merge(trainable, base), mb)
        rc, rr = reference_logps(frozen, mb)
        nc = jnp.maximum(mb["chosen_mask"].sum(-1), 1.0)
        nr = jnp.maximum(mb["rejected_mask"].sum(-1), 1.0)
        loss, reward_c, reward_r = preference_loss(s.loss, pc, pr, rc, rr, nc, nr, s.beta, s.label_smoothing,
                                                   s.simpo_gamma)
        if s.sft_weight:
            loss = loss + s.sft_weight * (-pc / nc)
        valid = mb["pair_valid"]

        def mean(x):
            return jnp.sum(x * valid) / norm

        aux = {"rewards/chosen": mean(reward_c), "rewards/rejected": mean(reward_r),
               "rewards/accuracy": mean((reward_c > reward_r).astype(jnp.float32)),
               "rewards/margin": mean(reward_c - reward_r), "logps/chosen": mean(pc), "logps/rejected": mean(pr)}
        return mean(loss), aux

    return loss_fn


def dpo_normaliser(batch):
    return jnp.maximum(jnp.sum(batch["pair_valid"]), 1.0)


def precompute_reference(policy_model, params, batcher: PairBatcher, mesh, n_pairs: int) -> np.ndarray:
    """[n_pairs, 2] reference log-probs (chosen, rejected) from the starting policy, one pass
    over the data in training's own batch shapes. Each host builds only its own rows (as in
    training); the log-probs come back replicated and the rows' pair indices are a pure
    function of the step, so every host fills the whole table."""
    from petool_jax.sharding import replicated
    from petool_jax.train.setup import local_micro_rows

    out = np.full((n_pairs, 2), np.nan, np.float64)
    step_fn = jax.jit(lambda prm, mb: pair_logps(policy_model, prm, mb), out_shardings=replicated(mesh))
    micro = batcher.micro_batch_size
    local = local_micro_rows(mesh, micro)
    for step in range(batcher.steps_per_epoch()):
        _, rows = batcher.rows_of_step(step)
        device = place_batch(batcher.batch(step, local=local), mesh)
        for a in range(batcher.batch_size // micro):
            mb = {k: v[a] for k, v in device.items()}
            with mesh_rules(mesh):
                c, r = (np.asarray(x) for x in jax.device_get(step_fn(params, mb)))
            for m, row in enumerate(rows[a * micro:(a + 1) * micro]):
                for slot, i in enumerate(row):
                    out[i] = c[m, slot], r[m, slot]
    if np.isnan(out).any():
        raise RuntimeError("precomputed reference: some pairs were never visited")
    return out


def check_attention(config: TrainConfig) -> None:
    """Prefix-shared pairs need their mask (the rejected answer must not see the chosen one)."""
    require_mask_kernel(config.attention, "DPO (prefix-shared pairs)")


def build_dpo_task(config: TrainConfig, policy, run_dir: pathlib.Path, log=print) -> tuple[Task, dict]:
    check_attention(config)
    s = checked_dpo(config.dpo)
    data = config.data
    paths = list(data.train)
    tokenizer = policy.bundle.tokenizer
    pairs = load_pairs(paths, list(data.settings), s.negatives, config.seed, data.max_samples, data.format)
    ds, summary = tokenized_pairs(pairs, paths, tokenizer, data.prompt_format, config.max_seq_len,
                                  pathlib.Path(data.cache_dir or run_dir / "cache"),
                                  {"pairs": pair_fingerprint(pairs)}, log=log)
    batcher = PairBatcher(prompts=ds["prompt_ids"], chosen=ds["chosen_ids"], rejected=ds["rejected_ids"],
                          batch_size=config.batch_size, micro_batch_size=config.micro_batch_size,
                          max_seq_len=config.max_seq_len, seed=config.seed,
                          packing=data.packing, pairs_per_row=8, pad_id=tokenizer.pad_token_id or 0)
    policy_model = Llama(policy.bundle.config, policy.options)
    base_model = Llama(policy.bundle.config, dataclasses.replace(policy.options, lora_rank=0))
    frozen_extra: dict = {}
    reference = None
    mode = reference_mode(s, policy.options.lora_rank > 0)
    if mode == "frozen_copy":  # the starting trainable weights (for LoRA: the adapter only)
        frozen_extra = {REF_PREFIX + k: jnp.array(v, copy=True) for k, v in policy.trainable.items()}
    elif mode == "precomputed":
        reference = _load_or_compute_reference(run_dir, policy, policy_model, batcher, len(ds), ds, log)

    def batch_at(step, local=None):
        batch = batcher.batch(step, local=local)
        if reference is not None:
            batch["ref_chosen"] = reference[batch["pair_index"], 0].astype(np.float32)
            batch["ref_rejected"] = reference[batch["pair_index"], 1].astype(np.float32)
        return batch

    task = Task(name="dpo", steps_per_epoch=batcher.steps_per_epoch(), batch_at=batch_at,
                loss_fn=make_dpo_loss(policy_model, base_model, s, mode), normaliser=dpo_normaliser,
                frozen_extra=frozen_extra,
                summarise=lambda m: {k: float(m[k]) for k in m if "/" in k},
                tokens_in=lambda b: int(b["n_tokens"]),
                head_positions_in=lambda b: int(b["n_head_positions"]),
                data_summary=summary)
    return task, {"batcher": batcher, "reference": reference}


def _load_or_compute_reference(run_dir, policy, policy_model, batcher, n_pairs, ds, log):
    """Reference log-probs stored with the run (recomputed only if the pairs changed)."""
    import hashlib

    key = hashlib.sha256(np.asarray([len(p) for p in ds["prompt_ids"]] + [len(c) for c in ds["chosen_ids"]]
                                    ).tobytes()).hexdigest()[:16]
    path = run_dir / f"reference_logps-{key}.npy"
    if path.is_file():
        log(f"reference log-probs from {path}")
        return np.load(path)
    params = P.merge(policy.trainable, policy.frozen)
    reference = precompute_reference(policy_model, params, batcher, policy.bundle.mesh, n_pairs)
    write_npy(path, reference)
    log(f"precomputed reference log-probs for {n_pairs} pairs -> {path}")
    return reference


def run_dpo(config: TrainConfig) -> dict:
    check_attention(config)  # before any weights are loaded
    checked_dpo(config.dpo)
    maybe_initialize_distributed()
    run_dir = pathlib.Path(config.output_dir)
    mesh = mesh_from_config(config)
    policy = load_policy(config.model, config, mesh)
    task, _ = build_dpo_task(config, policy, run_dir)
    result = train(config, policy, task, run_dir)
    if "state" in result:
        result["model_dir"] = str(write_final_model(run_dir, config, policy, result["state"]))
    result["data"] = task.data_summary
    return result
