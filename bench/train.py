"""SFT step tokens/s: petool's jitted train step vs a plain PyTorch + transformers loop.

    python -m bench.train [--device cpu] [--out bench/results] [--repeats 5] [--steps 2]
                          [--batch 4] [--seq 512] [--cases full,lora]

Both sides train the SAME random LLaMA-3-shaped model (petool's random init, copied into
transformers.LlamaForCausalLM built from LlamaConfig.to_hf_dict()) on the SAME synthetic
batch shaped like the data pipeline's ([accumulation, micro, T] tokens, targets, loss_mask,
positions, segment_ids; full-length rows, the loss on the last 64 tokens of each row as
PEToolBench's short responses), fp32, AdamW (b1 0.9, b2 0.999, eps 1e-8, no decay, lr 1e-4
constant) with global-norm clipping at 1.0, the loss normalised by the step's target tokens.

- petool: petool_jax.train.step.build_train_step + make_sft_loss (the trainer's step), jitted once with shardings
  and the state donated (what `petool train sft` runs), remat off, XLA attention; logits
  only at the loss positions, as SequenceBatcher's target_idx asks (--full-logits: all).
- PyTorch: eager LlamaForCausalLM (sdpa attention), F.cross_entropy on fp32 logits,
  loss.backward(), clip_grad_norm_, torch.optim.AdamW (foreach).
Cases: full fine-tuning, and LoRA rank 8 / alpha 16 on all decoder linears (petool's LoRA vs
peft's, petool's adapter initialisation copied into peft's).

The two run alternately in one process (A B A B ...): each repetition times --steps steps of
one side and then of the other; figures are medians over repetitions, the ratio is petool
tokens/s over PyTorch tokens/s (target >= 1.0 for full fine-tuning on CPU). The losses of
the first steps of both sides are reported too: same weights and batch, so they must agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np

from petool_jax.train.config import OptimizerConfig

# LLaMA-3 proportions (GQA 4:1, head_dim 64, SwiGLU 4x) at hidden 256: small enough for 2 CPU
# cores, big enough that the matmuls, not the dispatch, are most of the step.
SMALL = dict(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=1, head_dim=64)
RESPONSE_TOKENS = 64
OPTIM = OptimizerConfig(learning_rate=1e-4, warmup_ratio=0.0, schedule="constant", max_grad_norm=1.0,
                        adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8, weight_decay=0.0)
LORA_RANK, LORA_ALPHA = 8, 16.0


def small_config(**overrides):
    from petool_jax.config import LlamaConfig

    fields = dict(SMALL, rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=None,
                  max_position_embeddings=16384, tie_word_embeddings=False)
    fields.update(overrides)
    return LlamaConfig(**fields)


def synthetic_batch(vocab: int, accumulation: int, micro: int, seq: int, seed: int = 0,
                    gather: bool = False) -> dict:
    """[accumulation, micro, T] arrays as SequenceBatcher yields them (no padding). With
    `gather`, also the loss positions ([.., K] target_idx/target_ids/target_mask) that
    SequenceBatcher adds, so the step computes logits only there (what `petool train sft`
    does); without, the loss step computes logits at every position."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (accumulation, micro, seq + 1), dtype=np.int32)
    mask = np.zeros((accumulation, micro, seq), np.float32)
    mask[..., -min(RESPONSE_TOKENS, seq):] = 1.0
    positions = np.broadcast_to(np.arange(seq, dtype=np.int32), mask.shape).copy()
    batch = {"tokens": ids[..., :-1].copy(), "targets": ids[..., 1:].copy(), "loss_mask": mask,
             "positions": positions, "segment_ids": np.ones(mask.shape, np.int32)}
    if gather:
        from petool_jax.train.sft_data import gather_targets

        flat = gather_targets(mask.reshape(-1, seq), batch["targets"].reshape(-1, seq))
        batch.update({k: v.reshape(accumulation, micro, -1) for k, v in flat.items()})
    return batch


@dataclasses.dataclass
class PetoolSFT:
    """petool's SFT step on one model and batch, compiled; `run(n)` times n steps."""

    config: object
    options: object
    mesh: object
    compiled: object
    state: dict
    frozen: dict
    batch: dict
    tokens_per_step: int
    compile_seconds: float
    memory: dict

    def run(self, steps: int) -> tuple[float, list[float]]:
        """Seconds for `steps` steps (dispatch to finished), and their losses."""
        import jax

        metrics = []
        start = time.perf_counter()
        for _ in range(steps):
            self.state, m = self.compiled(self.state, self.frozen, self.batch)
            metrics.append(m["loss"])
        jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - start, [float(x) for x in metrics]

    def host_params(self) -> dict:
        """The full parameter tree (trainable merged with frozen) as numpy."""
        import jax

        from petool_jax.train import params as P

        return jax.tree.map(np.asarray, P.merge(self.state["trainable"], self.frozen))


def build_petool_sft(config, *, micro: int, seq: int, accumulation: int = 1, lora_rank: int = 0,
                     dtype: str = "float32", param_dtype: str = "float32", remat: str = "none",
                     attention: str = "xla", mesh=None, seed: int = 0, total_steps: int = 1000,
                     gather: bool = False) -> PetoolSFT:
    import jax
    import jax.numpy as jnp

    from petool_jax.config import RuntimeOptions
    from petool_jax.loading import init_params
    from petool_jax.sharding import make_mesh, mesh_rules
    from petool_jax.train import params as P
    from petool_jax.train.setup import place_batch
    from petool_jax.train.sft import make_sft_loss, sft_normaliser
    from petool_jax.train.step import build_train_step
    from petool_jax.model import Llama

    mesh = mesh if mesh is not None else make_mesh(devices=jax.devices()[:1])
    options = RuntimeOptions(dtype=dtype, param_dtype=param_dtype, remat=remat, attention=attention,
                             lora_rank=lora_rank, lora_alpha=LORA_ALPHA)
    # As load_policy: trainable weights in param_dtype, LoRA's frozen base in the compute dtype.
    init_options = dataclasses.replace(options, param_dtype=param_dtype if lora_rank == 0 else dtype)
    params = init_params(config, init_options, mesh, seed=seed)
    trainable, frozen = P.split_trainable(params, lora=lora_rank > 0)
    trainable = {k: v.astype(jnp.dtype(param_dtype)) for k, v in trainable.items()}
    del params
    batch = place_batch(synthetic_batch(config.vocab_size, accumulation, micro, seq, seed, gather), mesh)
    jitted, state = build_train_step(make_sft_loss(Llama(config, options)), sft_normaliser, OPTIM, total_steps,
                                     trainable, frozen, {k: v.sharding for k, v in batch.items()}, mesh)
    with mesh_rules(mesh):
        start = time.perf_counter()
        compiled = jitted.lower(state, frozen, batch).compile()
        compile_seconds = time.perf_counter() - start
    return PetoolSFT(config, options, mesh, compiled, state, frozen, batch,
                     tokens_per_step=accumulation * micro * seq, compile_seconds=compile_seconds,
                     memory=memory_analysis(compiled))


def memory_analysis(compiled) -> dict:
    """XLA's own account of the step's device memory (bytes), where the backend gives one."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return {}
    if m is None:
        return {}
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes")
    out = {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}
    if out:
        # Arguments + temporaries + outputs that do not alias a (donated) argument.
        out["total_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("temp_size_in_bytes", 0)
                              + out.get("output_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
    return out


# --- the PyTorch reference ----------------------------------------------------------------------

LORA_TARGETS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "attn", "gate_proj": "mlp",
                "up_proj": "mlp", "down_proj": "mlp"}


def torch_llama(config, host_params: dict, lora_rank: int = 0):
    """transformers.LlamaForCausalLM (fp32, sdpa attention) holding petool's weights; with
    lora_rank, wrapped by peft with petool's adapter copied in (lora_A = lora_a^T, lora_B =
    lora_b^T, scale alpha / rank on both sides)."""
    import torch
    import transformers

    from petool_jax.export import hf_tensor_source

    hf_config = transformers.LlamaConfig(**config.to_hf_dict("float32"))
    hf_config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(hf_config)
    specs, produce = hf_tensor_source(config, host_params)
    state = {name: torch.from_numpy(np.array(produce(name), np.float32)) for name, _, _ in specs}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()  # shares the embedding's tensor
    if unexpected or [k for k in missing if "rotary" not in k and k not in tied]:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if lora_rank:
        import peft

        lora = peft.LoraConfig(r=lora_rank, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                               target_modules=list(LORA_TARGETS))
        model = peft.get_peft_model(model, lora)
        layers = host_params["layers"]
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_" not in name:
                    continue
                parts = name.split(".")
                layer, module = int(parts[parts.index("layers") + 1]), parts[parts.index("lora_A" if "lora_A" in parts
                                                                                       else "lora_B") - 1]
                leaf = layers[LORA_TARGETS[module]][module]["lora_a" if "lora_A" in parts else "lora_b"][layer]
                param.copy_(torch.from_numpy(np.array(leaf, np.float32).T))
    return model


class TorchSFT:
    """The plain loop a PyTorch user would write, on the same weights and batch."""

    def __init__(self, config, host_params: dict, batch: dict, lora_rank: int = 0):
        import torch

        model = torch_llama(config, host_params, lora_rank)
        model.train()
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=OPTIM.learning_rate, betas=(OPTIM.adam_b1, OPTIM.adam_b2),
                                     eps=OPTIM.adam_eps, weight_decay=OPTIM.weight_decay)
        self.batch = {k: torch.from_numpy(np.array(v)) for k, v in batch.items()}
        self.batch = {k: (v.long() if k in ("tokens", "targets", "positions") else v) for k, v in self.batch.items()}
        self.tokens_per_step = int(np.prod(batch["tokens"].shape))

    def step(self) -> float:
        import torch
        import torch.nn.functional as F

        b = self.batch
        norm = b["loss_mask"].sum().clamp(min=1.0)
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for i in range(b["tokens"].shape[0]):
            logits = self.model(input_ids=b["tokens"][i], position_ids=b["positions"][i]).logits
            nll = F.cross_entropy(logits.float().flatten(0, 1), b["targets"][i].flatten(), reduction="none")
            loss = (nll * b["loss_mask"][i].flatten()).sum() / norm
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.params, OPTIM.max_grad_norm)
        self.opt.step()
        return total

    def run(self, steps: int) -> tuple[float, list[float]]:
        start = time.perf_counter()
        losses = [self.step() for _ in range(steps)]
        return time.perf_counter() - start, losses


# --- the comparison -----------------------------------------------------------------------------

def compare_case(config, lora_rank: int, args) -> dict:
    petool = build_petool_sft(config, micro=args.batch, seq=args.seq, accumulation=args.accumulation,
                              lora_rank=lora_rank, gather=not args.full_logits)
    torch_side = TorchSFT(config, petool.host_params(), {k: np.asarray(v) for k, v in petool.batch.items()},
                          lora_rank)
    sides = {"petool": petool, "pytorch": torch_side}
    first = {}
    losses = {}
    for name, side in sides.items():  # first call: petool's first dispatch, torch's warm-up
        seconds, loss = side.run(args.steps)
        first[name], losses[name] = seconds, loss
    runs = {name: [] for name in sides}
    for rep in range(args.repeats):
        for name, side in (sides.items() if rep % 2 == 0 else reversed(sides.items())):
            seconds, _ = side.run(args.steps)
            runs[name].append(seconds / args.steps)
        print(f"[bench.train] lora={lora_rank} rep {rep + 1}/{args.repeats}: "
              + ", ".join(f"{n} {runs[n][-1]:.3f}s/step" for n in sides), file=sys.stderr, flush=True)
    tokens = petool.tokens_per_step
    out = {"lora_rank": lora_rank, "tokens_per_step": tokens,
           "petool_compile_seconds": petool.compile_seconds, "petool_memory": petool.memory,
           "first_steps_loss": losses}
    for name in sides:
        med = statistics.median(runs[name])
        out[name] = {"seconds_per_step": runs[name], "median_seconds_per_step": med, "tokens_per_s": tokens / med,
                     "first_call_seconds_per_step": first[name] / args.steps}
    out["ratio"] = out["petool"]["tokens_per_s"] / out["pytorch"]["tokens_per_s"]
    out["first_loss_abs_diff"] = abs(losses["petool"][0] - losses["pytorch"][0])
    out["last_first_steps_loss_abs_diff"] = abs(losses["petool"][-1] - losses["pytorch"][-1])
    return out


def table(results: dict) -> str:
    r = results
    lines = [f"### SFT step, {r['model_desc']}, batch {r['batch']} x seq {r['seq']}"
             f" (x{r['accumulation']} accumulation), fp32, {r['device']}: {r['machine']['cpus']} CPUs", "",
             "| case | petool tok/s | PyTorch tok/s | ratio (target >= 1.0) | petool s/step | PyTorch s/step "
             "| petool compile s | loss diff (step 1 / step n) |", "|---|---|---|---|---|---|---|---|"]
    for name, c in r["cases"].items():
        lines.append(f"| {name} | {c['petool']['tokens_per_s']:.0f} | {c['pytorch']['tokens_per_s']:.0f} "
                     f"| {c['ratio']:.2f}x | {c['petool']['median_seconds_per_step']:.3f} "
                     f"| {c['pytorch']['median_seconds_per_step']:.3f} | {c['petool_compile_seconds']:.1f} "
                     f"| {c['first_loss_abs_diff']:.1e} / {c['last_first_steps_loss_abs_diff']:.1e} |")
    lines += ["", f"petool computes logits at {r['petool_logits']}; PyTorch at every position (HF's loop). "
              f"Medians of {r['repeats']} alternating repetitions of {r['steps']} steps each; "
              f"torch threads {r['torch_threads']}; jax {r['versions']['jax']}, torch {r['versions']['torch']}, "
              f"transformers {r['versions']['transformers']}."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu",),
                        help="the side-by-side runs on CPU; accelerator figures: bench.accelerator")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repetition")
    parser.add_argument("--batch", type=int, default=4, help="micro batch (rows)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--cases", default="full,lora")
    parser.add_argument("--full-logits", action="store_true",
                        help="petool computes logits at every position (default: only at the loss positions, "
                             "as `petool train sft` does)")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import torch
    import transformers

    from bench.common import machine, write_results

    torch.set_num_threads(os.cpu_count())
    config = small_config()
    cases = {}
    for case in args.cases.split(","):
        rank = {"full": 0, "lora": LORA_RANK}[case]
        name = "full fine-tuning" if rank == 0 else f"LoRA r{LORA_RANK} (peft on the PyTorch side)"
        cases[name] = compare_case(config, rank, args)
    results = {
        "benchmark": "train", "device": args.device, "jax_device": str(jax.devices()[0]),
        "model": {**SMALL, "dtype": "float32", "params": config.num_params()},
        "model_desc": (f"random LLaMA-3-shaped model ({config.num_params() / 1e6:.1f}M params: hidden "
                       f"{SMALL['hidden_size']}, {SMALL['num_hidden_layers']} layers, GQA 4:1, vocab {SMALL['vocab_size']})"),
        "batch": args.batch, "seq": args.seq, "accumulation": args.accumulation, "steps": args.steps,
        "petool_logits": "every position" if args.full_logits else f"loss positions only ({RESPONSE_TOKENS} per row)",
        "repeats": args.repeats, "cases": cases, "machine": machine(), "torch_threads": torch.get_num_threads(),
        "versions": {"jax": jax.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }
    write_results(args.out, f"train_{args.device}", results, table(results))
    return results


if __name__ == "__main__":
    main()
