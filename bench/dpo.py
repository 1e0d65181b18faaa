"""DPO pairs/s: petool's prefix-shared step vs petool's two-sequence step vs a PyTorch DPO step.

    python -m bench.dpo [--out bench/results] [--repeats 3] [--pairs 4] [--prompt-tokens 900]

The three train the same LoRA policy (rank 8, alpha 16; petool's adapter initialisation
copied into peft's) of bench.train's small random LLaMA-3-shaped model, fp32, on the same
synthetic pairs, with the paper's setting: sigmoid DPO loss, beta 0.1, reference = the base
model (the adapter switched off), AdamW lr 1e-4 constant, clipping at 1.0, loss averaged over
the step's pairs.

- petool, prefix-shared (what `petool train dpo` runs): one `prompt | chosen | rejected` row
  per pair with the prefix-shared mask (petool_jax.train.dpo.make_dpo_loss, pair_logps),
  logits only at the response positions, jitted with the state donated.
- petool, two-sequence: the textbook form, `prompt | chosen` and `prompt | rejected` rows
  (PairBatcher layout="separate"), the same pair_logps and preference_loss, same jit.
- PyTorch: transformers + peft, chosen and rejected rows concatenated into one batch as
  TRL does, full logits, reference log-probs under no_grad with the adapter disabled.

Lengths: prompts of --prompt-tokens +- 4%, responses 15-40 tokens (PEToolBench: ~2,600 and
~35; shorter prompts keep a 2-core run short). The rows are padded to petool's power-of-two
buckets; the chosen ids give both layouts the same bucket, so the shared layout does half the
rows of the two-sequence one. The three run alternately in one process (A B C, rotated each
repetition); figures are medians, ratios of pairs/s. Target: prefix sharing >= 1.7x
two-sequence. The losses of the first steps must agree across the three (same weights, pairs
and updates).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np

from bench.train import LORA_ALPHA, LORA_RANK, OPTIM, SMALL, small_config

BETA = 0.1


def synthetic_pairs(n: int, vocab: int, prompt_tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lo, hi = int(prompt_tokens * 0.96), int(prompt_tokens * 1.04)
    prompts = [rng.integers(1, vocab, rng.integers(lo, hi + 1)).tolist() for _ in range(n)]
    chosen = [rng.integers(1, vocab, rng.integers(15, 41)).tolist() for _ in range(n)]
    rejected = [rng.integers(1, vocab, rng.integers(15, 41)).tolist() for _ in range(n)]
    return prompts, chosen, rejected


class PetoolDPO:
    """petool's DPO step in one of two layouts, compiled; run(n) times n steps."""

    def __init__(self, config, params, batcher, layout: str, mesh):
        import jax
        import jax.numpy as jnp

        from petool_jax.config import RuntimeOptions
        from petool_jax.loading import place_params
        from petool_jax.model import Llama
        from petool_jax.sharding import mesh_rules
        from petool_jax.train import params as P
        from petool_jax.train.config import DpoConfig
        from petool_jax.train.dpo import dpo_normaliser, make_dpo_loss, pair_logps
        from petool_jax.train.dpo_losses import preference_loss
        from petool_jax.train.setup import place_batch
        from petool_jax.train.step import build_train_step

        options = RuntimeOptions(dtype="float32", param_dtype="float32", remat="none", lora_rank=LORA_RANK,
                                 lora_alpha=LORA_ALPHA)
        policy = Llama(config, options)
        base_model = Llama(config, dataclasses.replace(options, lora_rank=0))
        settings = DpoConfig(beta=BETA, loss="sigmoid", reference="base", label_smoothing=0.0, sft_weight=0.0,
                             simpo_gamma=0.5, negatives={})
        trainable, frozen = P.split_trainable(place_params(params, config, options, mesh), lora=True)
        self.frozen = frozen
        if layout == "shared":
            loss_fn = make_dpo_loss(policy, base_model, settings, "adapter_off")
            normaliser = dpo_normaliser
            host = batcher.batch(0)
            self.batch = place_batch(host, mesh)
            shardings = {k: v.sharding for k, v in self.batch.items()}
            self.tokens = int((host["pair_ids"] > 0).sum())
            self.padded_tokens = int(host["tokens"].size)
        else:
            def loss_fn(trainable, frozen, mb, norm):
                """The same DPO as make_dpo_loss(..., "adapter_off"), on two sequences per pair."""
                policy_params = P.merge(trainable, frozen)
                pc, _ = pair_logps(policy, policy_params, mb["chosen"])
                _, pr = pair_logps(policy, policy_params, mb["rejected"])
                rc, _ = jax.lax.stop_gradient(pair_logps(base_model, P.merge(frozen), mb["chosen"]))
                _, rr = jax.lax.stop_gradient(pair_logps(base_model, P.merge(frozen), mb["rejected"]))
                nc = jnp.maximum(mb["chosen"]["chosen_mask"].sum(-1), 1.0)
                nr = jnp.maximum(mb["rejected"]["rejected_mask"].sum(-1), 1.0)
                loss, _, _ = preference_loss("sigmoid", pc, pr, rc, rr, nc, nr, BETA)
                valid = mb["chosen"]["pair_valid"]
                return jnp.sum(loss * valid) / norm, {}

            def normaliser(batch):
                return dpo_normaliser(batch["chosen"])

            host = batcher.batch(0, layout="separate")
            self.batch = {side: place_batch(host[side], mesh) for side in ("chosen", "rejected")}
            shardings = {side: {k: v.sharding for k, v in self.batch[side].items()} for side in self.batch}
            self.tokens = int(sum((host[s]["pair_ids"] > 0).sum() for s in ("chosen", "rejected")))
            self.padded_tokens = int(sum(host[s]["tokens"].size for s in ("chosen", "rejected")))
        self.host = host
        jitted, self.state = build_train_step(loss_fn, normaliser, OPTIM, 1000, trainable, frozen, shardings, mesh)
        with mesh_rules(mesh):
            start = time.perf_counter()
            self.compiled = jitted.lower(self.state, frozen, self.batch).compile()
            self.compile_seconds = time.perf_counter() - start

    def run(self, steps: int):
        import jax

        start = time.perf_counter()
        losses = []
        for _ in range(steps):
            self.state, m = self.compiled(self.state, self.frozen, self.batch)
            losses.append(m["loss"])
        jax.block_until_ready((self.state, losses))
        return time.perf_counter() - start, [float(x) for x in losses]


class TorchDPO:
    """The PyTorch DPO step (TRL's concatenated forward), on the two-sequence batch."""

    def __init__(self, config, host_params, separate: dict):
        import torch

        from bench.train import torch_llama

        self.model = torch_llama(config, host_params, LORA_RANK)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=OPTIM.learning_rate, betas=(OPTIM.adam_b1, OPTIM.adam_b2),
                                     eps=OPTIM.adam_eps, weight_decay=OPTIM.weight_decay)
        c, r = separate["chosen"], separate["rejected"]

        def t(x, long=False):
            x = torch.from_numpy(np.array(x[0]))  # accumulation 1
            return x.long() if long else x

        self.tokens = torch.cat([t(c["tokens"], True), t(r["tokens"], True)])
        self.positions = torch.cat([t(c["positions"], True), t(r["positions"], True)])
        self.idx = torch.cat([t(c["chosen_idx"], True), t(r["rejected_idx"], True)])[:, 0]  # [2B, K]
        self.targets = torch.cat([t(c["chosen_targets"], True), t(r["rejected_targets"], True)])[:, 0]
        self.mask = torch.cat([t(c["chosen_mask"]), t(r["rejected_mask"])])[:, 0]
        self.valid = t(c["pair_valid"])[:, 0]
        self.pairs = self.valid.shape[0]

    def logps(self, model):
        import torch

        logits = model(input_ids=self.tokens, position_ids=self.positions).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        rows = torch.arange(logp.shape[0])[:, None]
        token_logp = logp[rows, self.idx].gather(-1, self.targets[..., None])[..., 0]
        summed = (token_logp * self.mask).sum(-1)
        return summed[:self.pairs], summed[self.pairs:]

    def step(self) -> float:
        import torch
        import torch.nn.functional as F

        self.opt.zero_grad(set_to_none=True)
        pc, pr = self.logps(self.model)
        with torch.no_grad(), self.model.disable_adapter():
            rc, rr = self.logps(self.model)
        h = (pc - rc) - (pr - rr)
        loss = (-F.logsigmoid(BETA * h) * self.valid).sum() / self.valid.sum().clamp(min=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, OPTIM.max_grad_norm)
        self.opt.step()
        return float(loss.detach())

    def run(self, steps: int):
        start = time.perf_counter()
        losses = [self.step() for _ in range(steps)]
        return time.perf_counter() - start, losses


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu",))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1, help="steps per timed repetition")
    parser.add_argument("--pairs", type=int, default=4, help="pairs per optimizer step")
    parser.add_argument("--prompt-tokens", type=int, default=900)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import torch
    import transformers

    from bench.common import machine, write_results
    from petool_jax.config import RuntimeOptions
    from petool_jax.loading import init_params
    from petool_jax.sharding import make_mesh
    from petool_jax.train.dpo_data import PairBatcher

    torch.set_num_threads(os.cpu_count())
    config = small_config()
    mesh = make_mesh(devices=jax.devices()[:1])
    options = RuntimeOptions(dtype="float32", param_dtype="float32", lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA)
    # A random adapter (lora_b too), so that policy and reference differ from the first step.
    params = init_params(config, options, mesh, seed=0)
    params = jax.tree.map(np.asarray, params)
    rng = np.random.default_rng(1)
    for group in params["layers"].values():
        for module in group.values():
            if "lora_b" in module:
                module["lora_b"] = (rng.standard_normal(module["lora_b"].shape) * 0.02).astype(np.float32)
    prompts, chosen, rejected = synthetic_pairs(args.pairs, config.vocab_size, args.prompt_tokens)
    bucket_len = max(len(p) + len(c) + len(r) for p, c, r in zip(prompts, chosen, rejected))
    max_seq = 1 << (bucket_len - 1).bit_length()
    batcher = PairBatcher(prompts, chosen, rejected, batch_size=args.pairs, micro_batch_size=args.pairs,
                          max_seq_len=max_seq, seed=0)
    sides = {"petool prefix-shared": PetoolDPO(config, params, batcher, "shared", mesh),
             "petool two-sequence": PetoolDPO(config, params, batcher, "separate", mesh)}
    sides["PyTorch (transformers + peft)"] = TorchDPO(config, params, batcher.batch(0, layout="separate"))
    first, losses = {}, {}
    for name, side in sides.items():
        first[name], losses[name] = side.run(2)
    runs = {name: [] for name in sides}
    names = list(sides)
    for rep in range(args.repeats):
        for name in names[rep % 3:] + names[:rep % 3]:
            seconds, _ = sides[name].run(args.steps)
            runs[name].append(seconds / args.steps)
        print(f"[bench.dpo] rep {rep + 1}/{args.repeats}: " + ", ".join(f"{n} {runs[n][-1]:.2f}s" for n in names),
              file=sys.stderr, flush=True)
    shared, separate = sides[names[0]], sides[names[1]]
    results = {
        "benchmark": "dpo", "device": args.device, "jax_device": str(jax.devices()[0]),
        "model": {**SMALL, "params": config.num_params(), "dtype": "float32", "lora_rank": LORA_RANK},
        "pairs_per_step": args.pairs, "prompt_tokens": [len(p) for p in prompts],
        "chosen_tokens": [len(c) for c in chosen], "rejected_tokens": [len(r) for r in rejected],
        "rows": {"shared": list(shared.host["tokens"].shape), "separate": list(separate.host["chosen"]["tokens"].shape)},
        "real_tokens_per_step": {names[0]: shared.tokens, names[1]: separate.tokens, names[2]: separate.tokens},
        "padded_tokens_per_step": {names[0]: shared.padded_tokens, names[1]: separate.padded_tokens,
                                   names[2]: separate.padded_tokens},
        "compile_seconds": {names[0]: shared.compile_seconds, names[1]: separate.compile_seconds},
        "first_two_losses": losses, "repeats": args.repeats, "steps": args.steps, "sides": {},
        "machine": machine(), "torch_threads": torch.get_num_threads(),
        "versions": {"jax": jax.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }
    for name in names:
        med = statistics.median(runs[name])
        results["sides"][name] = {"seconds_per_step": runs[name], "median_seconds_per_step": med,
                                  "pairs_per_s": args.pairs / med}
    pps = {n: results["sides"][n]["pairs_per_s"] for n in names}
    results["ratio_shared_vs_two_sequence"] = pps[names[0]] / pps[names[1]]
    results["ratio_shared_vs_pytorch"] = pps[names[0]] / pps[names[2]]
    results["ratio_two_sequence_vs_pytorch"] = pps[names[1]] / pps[names[2]]
    results["max_loss_diff_vs_shared"] = {n: max(abs(a - b) for a, b in zip(losses[n], losses[names[0]]))
                                          for n in names[1:]}
    lines = [f"### DPO step (sigmoid, beta {BETA}, reference = base, LoRA r{LORA_RANK}), {args.pairs} pairs/step, "
             f"prompts ~{args.prompt_tokens} tokens, responses 15-40; small LLaMA-3 ({config.num_params() / 1e6:.1f}M), "
             f"fp32, {args.device}: {machine()['cpus']} CPUs", "",
             "| side | rows x length | pairs/s | s/step | vs two-sequence | vs PyTorch | loss diff vs shared (2 steps) |",
             "|---|---|---|---|---|---|---|"]
    shapes = {names[0]: f"{shared.host['tokens'].shape[1]} x {shared.host['tokens'].shape[2]}",
              names[1]: f"{2 * separate.host['chosen']['tokens'].shape[1]} x {separate.host['chosen']['tokens'].shape[2]}",
              names[2]: f"{2 * separate.host['chosen']['tokens'].shape[1]} x {separate.host['chosen']['tokens'].shape[2]}"}
    for n in names:
        s = results["sides"][n]
        diff = results["max_loss_diff_vs_shared"].get(n)
        lines.append(f"| {n} | {shapes[n]} | {s['pairs_per_s']:.2f} | {s['median_seconds_per_step']:.2f} "
                     f"| {pps[n] / pps[names[1]]:.2f}x | {pps[n] / pps[names[2]]:.2f}x "
                     f"| {'-' if diff is None else f'{diff:.1e}'} |")
    lines += ["", f"Prefix sharing vs two-sequence: {results['ratio_shared_vs_two_sequence']:.2f}x (target >= 1.7x). "
              f"Medians of {args.repeats} rotated repetitions; torch threads {torch.get_num_threads()}."]
    write_results(args.out, f"dpo_{args.device}", results, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()
