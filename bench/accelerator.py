"""Accelerator figures in one short run: the chip's own ceilings, MFU of the SFT step (full
fine-tuning and LoRA) for llama3.2-1b at seq 4096 (cuDNN flash attention on GPU, bf16),
LoRA MFU for an 8B shape where time allows, decode tokens/s at batch 1 against the
memory-bandwidth roofline, and a projected PEToolBench-evaluation wall time.

    python -m bench.accelerator [--out DIR] [--budget-s 270] [--smoke]

Needs only jax/flax/optax (no transformers, torch or datasets): it runs on a bare GPU image.
Every section writes accelerator.json again when it finishes, so a run cut short keeps what
it measured. --smoke runs the same code on a tiny model on CPU (a test of the script).

FLOP counts (written down; the same as the trainer's `mfu` metric):
  training FLOPs per token = 6 * N + 12 * L * T * d_q
    N   = parameters that take part in matmuls: all of them, except the input embedding
          table of an untied model (a lookup); llama3.2-1b ties it to the output head, so N
          is its full 1.236e9
    12 L T d_q = attention scores and weighted sum (2 matmuls of 2*T*d_q FLOPs per token per
          layer forward, x3 for forward + backward), counting the full T x T square (PaLM's
          convention; a causal kernel skips half, so `mfu_causal` halves this term)
  MFU = FLOPs per token * tokens per second / peak (989 TFLOP/s dense bf16, H100/H200 SXM)
  The synthetic batch has no target_idx, so the step computes logits (the output head) at
  every position, as 6N assumes; `petool train sft` on PEToolBench data computes them only
  at the answer positions, which skips most of the head's 2*d*V FLOPs per token.
  LoRA: the backward pass computes no weight gradients for the frozen weights, so the work
  actually needed is 4 * N + 6 * N_lora + attention; `mfu_useful` uses that (6N-based MFU
  overstates a LoRA step's achieved FLOP/s by about 1.5x).
Decode roofline at batch 1: every step must read all weights once plus the KV cache of the
context: bytes/token = 2 * N_all (bf16) + context * L * 2 * d_kv * 2; roofline tokens/s =
bandwidth / bytes, with bandwidth both measured here (a large copy) and the datasheet's.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import statistics
import sys
import time
import traceback

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}
HBM_DATASHEET = {"H100": 3.35e12, "H200": 4.8e12}
SEQ = 4096
PROMPT_TOKENS = 2600  # PEToolBench's median prompt length with the LLaMA-3 tokenizer
DECODE_TOKENS = 128
EVAL_NEW_TOKENS = 48  # a response of ~35 tokens plus its end token, the longest of a batch of 16


def log(*a):
    print("[accel]", *a, file=sys.stderr, flush=True)


class Report:
    def __init__(self, out: pathlib.Path, name: str):
        self.out, self.name = out, name
        self.data: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    def put(self, key, value):
        self.data[key] = value
        (self.out / f"{self.name}.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def matmul_params(config) -> int:
    n = config.num_params()
    return n if config.tie_word_embeddings else n - config.vocab_size * config.hidden_size


def lora_params(config, rank: int) -> int:
    d, q, kv, f = config.hidden_size, config.q_dim, config.kv_dim, config.intermediate_size
    per_layer = rank * ((d + q) + 2 * (d + kv) + (q + d) + 2 * (d + f) + (f + d))
    return per_layer * config.num_hidden_layers


def ceilings(smoke: bool) -> dict:
    """Measured copy bandwidth (bytes read + written) and bf16 matmul rate."""
    import jax
    import jax.numpy as jnp

    n = 2**20 if smoke else 2**30  # bf16 elements: 2 GiB on the GPU
    x = jnp.ones((n,), jnp.bfloat16)
    copy = jax.jit(lambda v: v * 2)
    jax.block_until_ready(copy(x))
    times = []
    for _ in range(10):
        t = time.perf_counter()
        jax.block_until_ready(copy(x))
        times.append(time.perf_counter() - t)
    bw = 2 * n * 2 / statistics.median(times)
    del x
    m = 256 if smoke else 8192
    a = jax.random.normal(jax.random.key(0), (m, m), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (m, m), jnp.bfloat16)
    mm = jax.jit(lambda p, q: p @ q)
    jax.block_until_ready(mm(a, b))
    times = []
    for _ in range(10):
        t = time.perf_counter()
        jax.block_until_ready(mm(a, b))
        times.append(time.perf_counter() - t)
    return {"copy_bytes_per_s": bw, "matmul_bf16_flops_per_s": 2 * m**3 / statistics.median(times)}


def sft_mfu(config, *, lora_rank: int, candidates, seq: int, peak: float, attention: str, budget_left) -> dict:
    """Compile the first (remat, micro batch) candidate whose XLA memory estimate fits, time it."""
    import jax

    from bench.train import build_petool_sft

    limit = _memory_limit()
    tried = []
    for remat, micro in candidates:
        if budget_left() < 40:
            tried.append({"remat": remat, "micro": micro, "skipped": "time budget"})
            break
        t0 = time.perf_counter()
        try:
            sft = build_petool_sft(config, micro=micro, seq=seq, lora_rank=lora_rank, dtype="bfloat16",
                                   param_dtype="float32", remat=remat, attention=attention)
        except Exception as err:  # noqa: BLE001 - an OOM at init/compile: next candidate
            tried.append({"remat": remat, "micro": micro, "error": _short(err)})
            log(f"build failed remat={remat} micro={micro}: {_short(err)}")
            gc.collect()
            continue
        need = sft.memory.get("total_bytes", 0)
        entry = {"remat": remat, "micro": micro, "compile_and_init_s": time.perf_counter() - t0,
                 "compile_s": sft.compile_seconds, "xla_memory": sft.memory}
        log(f"remat={remat} micro={micro}: compile {sft.compile_seconds:.1f}s, XLA memory {need / 2**30:.1f} GiB "
            f"of {limit / 2**30 if limit else float('nan'):.1f}")
        if limit and need > 0.97 * limit:
            entry["skipped"] = "XLA memory estimate over the device's limit"
            tried.append(entry)
            del sft
            gc.collect()
            continue
        try:
            sft.run(2)  # warm-up (first dispatch, autotuning)
            per_step = []
            for _ in range(3):
                seconds, losses = sft.run(3)
                per_step.append(seconds / 3)
        except Exception as err:  # noqa: BLE001
            entry["error"] = _short(err)
            tried.append(entry)
            log(f"run failed remat={remat} micro={micro}: {_short(err)}")
            del sft
            gc.collect()
            continue
        stats = jax.devices()[0].memory_stats() or {}
        step_s = statistics.median(per_step)
        tokens = sft.tokens_per_step
        n = matmul_params(config)
        attn = 12 * config.num_hidden_layers * seq * config.q_dim
        flops_6n = (6 * n + attn) * tokens
        flops_causal = (6 * n + attn / 2) * tokens
        useful = ((4 * n + 6 * lora_params(config, lora_rank) + attn) if lora_rank else 6 * n + attn) * tokens
        entry.update({
            "seconds_per_step": per_step, "median_seconds_per_step": step_s, "tokens_per_step": tokens,
            "tokens_per_s": tokens / step_s, "losses_last": losses,
            "flops_per_step_6n": flops_6n, "mfu": flops_6n / step_s / peak, "mfu_causal": flops_causal / step_s / peak,
            "mfu_useful": useful / step_s / peak, "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
        })
        log(f"  {step_s * 1000:.0f} ms/step, {tokens / step_s:.0f} tok/s, MFU {entry['mfu']:.1%} "
            f"(causal {entry['mfu_causal']:.1%}, useful {entry['mfu_useful']:.1%})")
        tried.append(entry)
        del sft
        gc.collect()
        return {"chosen": entry, "tried": tried, "lora_rank": lora_rank, "seq": seq, "attention": attention,
                "matmul_params": n, "attention_flops_per_token": attn}
    return {"chosen": None, "tried": tried, "lora_rank": lora_rank, "seq": seq, "attention": attention}


def decode(config, *, batches, prompt_tokens: int, new_tokens: int, bandwidth: dict, smoke: bool,
           save=lambda partial: None) -> dict:
    """petool's prefill + lax.while_loop decode (generation.py) on a random bf16 model; each
    batch size is saved as soon as it is measured (a later one may run out of memory)."""
    import jax

    from petool_jax.config import RuntimeOptions
    from petool_jax.generation import jitted_generation, prompt_bucket
    from petool_jax.loading import init_params
    from petool_jax.sharding import make_mesh

    options = RuntimeOptions(dtype="bfloat16", param_dtype="bfloat16")
    mesh = make_mesh(devices=jax.devices()[:1])
    params = init_params(config, options, mesh, seed=0)
    prefill, decode_fn = jitted_generation(config, options, new_tokens, True)
    out = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "cases": {}}
    bucket = prompt_bucket(prompt_tokens)
    for batch in batches:
        try:
            out["cases"][f"batch {batch}"] = _decode_case(config, params, mesh, prefill, decode_fn, batch, bucket,
                                                          prompt_tokens, new_tokens, bandwidth)
        except Exception as err:  # noqa: BLE001 - e.g. out of memory at a larger batch
            out["cases"][f"batch {batch}"] = {"batch": batch, "error": _short(err)}
            log(f"decode batch {batch} failed: {_short(err)}")
        save(out)
    del params
    gc.collect()
    return out


def _decode_case(config, params, mesh, prefill, decode_fn, batch, bucket, prompt_tokens, new_tokens, bandwidth):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from petool_jax.sharding import mesh_rules

    from petool_jax.generation import pack_batch

    rng = np.random.default_rng(batch)
    prompts = rng.integers(0, config.vocab_size, (batch, prompt_tokens)).tolist()
    tokens, last, start, active = (jnp.asarray(a) for a in pack_batch(prompts, batch, 0))
    bucket = int(tokens.shape[1])  # the prefill holds all but each prompt's last token
    stop = jnp.asarray([-2], jnp.int32)
    timings = {"prefill": [], "decode": []}
    compile_s = None
    for rep in range(4):
        with mesh_rules(mesh):
            t = time.perf_counter()
            cache = prefill(params, tokens, start)
            jax.block_until_ready(cache)
            t1 = time.perf_counter()
            ids, cache = decode_fn(params, cache, last, jnp.int32(bucket), active, stop,
                                   jax.random.key(rep), jnp.float32(1e-6), jnp.float32(1.0))
            jax.block_until_ready(ids)
            t2 = time.perf_counter()
        del cache
        if rep == 0:
            compile_s = t2 - t
            continue
        timings["prefill"].append(t1 - t)
        timings["decode"].append(t2 - t1)
    assert int((np.asarray(ids) >= 0).sum()) == batch * new_tokens
    step = statistics.median(timings["decode"]) / new_tokens
    context = prompt_tokens + new_tokens / 2
    kv_bytes = context * config.num_hidden_layers * 2 * config.kv_dim * 2 * batch
    weight_bytes = config.num_params() * 2
    bytes_per_step = weight_bytes + kv_bytes
    case = {"batch": batch, "prefill_s": statistics.median(timings["prefill"]), "decode_step_s": step,
            "tokens_per_s": batch / step, "first_call_s": compile_s, "timings": timings,
            "bytes_per_step_needed": bytes_per_step, "kv_cache_slots_read": bucket + new_tokens}
    for name, bw in bandwidth.items():
        case[f"roofline_tokens_per_s_{name}"] = batch * bw / bytes_per_step
        case[f"fraction_of_roofline_{name}"] = (batch / step) / (batch * bw / bytes_per_step)
    log(f"decode batch {batch}: prefill {case['prefill_s']:.3f}s, {step * 1000:.2f} ms/step, "
        f"{case['tokens_per_s']:.0f} tok/s; " + ", ".join(
            f"{k}={v:.0%}" for k, v in case.items() if k.startswith("fraction")))
    return case


def _memory_limit():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def _short(err) -> str:
    text = f"{type(err).__name__}: {err}"
    return text[:600]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results/accelerator"))
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip sections that would not finish")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: a test of this script")
    parser.add_argument("--name", default="accelerator", help="result files NAME.json and NAME.md")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: full,lora,decode,eval,8b")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    budget_left = lambda: args.budget_s - (time.perf_counter() - begin)  # noqa: E731
    if args.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

    import jax

    from petool_jax.config import load_model_config

    report = Report(pathlib.Path(args.out), args.name)
    dev = jax.devices()[0]
    kind = dev.device_kind
    chip = next((k for k in PEAK_BF16 if k in kind), None)
    from petool_jax.train.run_log import peak_flops

    peak = PEAK_BF16.get(chip) or peak_flops(kind) or 989e12
    report.put("device", {"kind": kind, "platform": dev.platform, "count": jax.device_count(),
                          "jax": jax.__version__, "peak_bf16_flops_datasheet": peak,
                          "hbm_bytes_per_s_datasheet": HBM_DATASHEET.get(chip), "memory_limit": _memory_limit()})
    skip = set(filter(None, args.skip.split(",")))
    try:
        ceil = ceilings(args.smoke)
        report.put("ceilings", ceil)
        log(f"{kind}: copy {ceil['copy_bytes_per_s'] / 1e12:.2f} TB/s, matmul {ceil['matmul_bf16_flops_per_s'] / 1e12:.0f} TFLOP/s")
    except Exception as err:  # noqa: BLE001
        ceil = {}
        report.put("ceilings", {"error": _short(err)})

    if args.smoke:
        one_b = dataclasses.replace(load_model_config("tiny"), vocab_size=512)
        eight_b = one_b
        seq, attention, prompt = 128, "xla", 100
    else:
        one_b, eight_b = load_model_config("llama3.2-1b"), load_model_config("llama3-8b-instruct")
        seq, attention, prompt = SEQ, "cudnn" if dev.platform == "gpu" else "xla", PROMPT_TOKENS
    sections = [
        ("full", lambda: sft_mfu(one_b, lora_rank=0, seq=seq, peak=peak, attention=attention, budget_left=budget_left,
                                 candidates=[("none", 4), ("none", 2), ("full", 4)])),
        ("lora", lambda: sft_mfu(one_b, lora_rank=8, seq=seq, peak=peak, attention=attention, budget_left=budget_left,
                                 candidates=[("none", 4), ("none", 2), ("full", 4)])),
        ("decode", lambda: decode(one_b, batches=[1, 16], prompt_tokens=prompt, new_tokens=DECODE_TOKENS,
                                  bandwidth={"measured": ceil.get("copy_bytes_per_s", 0) or 1,
                                             "datasheet": HBM_DATASHEET.get(chip) or ceil.get("copy_bytes_per_s", 1)},
                                  smoke=args.smoke, save=lambda partial: report.put("decode", partial))),
        ("8b", lambda: sft_mfu(eight_b, lora_rank=8, seq=seq, peak=peak, attention=attention, budget_left=budget_left,
                               candidates=[("none", 2), ("full", 2), ("full", 1)])),
    ]
    need = {"full": 60, "lora": 50, "decode": 50, "8b": 90}
    for name, fn in sections:
        if name in skip:
            continue
        if budget_left() < need[name]:
            report.put(name, {"skipped": f"time budget ({budget_left():.0f}s left)"})
            log(f"skip {name}: {budget_left():.0f}s left")
            continue
        log(f"--- {name} ({budget_left():.0f}s left)")
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - keep the other sections
            traceback.print_exc()
            result = {"error": _short(err)}
        result["section_seconds"] = time.perf_counter() - t
        report.put(name, result)
    if "decode" in report.data and "cases" in report.data["decode"]:
        b16 = report.data["decode"]["cases"].get("batch 16")
        if b16 and "error" not in b16:
            per_batch = b16["prefill_s"] + EVAL_NEW_TOKENS * b16["decode_step_s"]
            report.put("eval_projection", {
                "instances": 3000, "batch": 16, "prompt_tokens": prompt, "new_tokens_assumed": EVAL_NEW_TOKENS,
                "seconds_per_batch": per_batch, "projected_seconds": per_batch * -(-3000 // 16),
                "note": "synthetic prompts of the median length; bench.generate --device gpu measures real ones"})
    report.put("wall_seconds", time.perf_counter() - begin)
    print(json.dumps(summary(report.data), indent=1))
    (pathlib.Path(args.out) / f"{args.name}.md").write_text(table(report.data) + "\n")
    return report.data


def table(data: dict) -> str:
    dev = data["device"]
    ceil = data.get("ceilings") or {}
    lines = [f"### Accelerator: {dev['kind']} (jax {dev['jax']})", ""]
    if "copy_bytes_per_s" in ceil:
        lines += [f"Measured ceilings: copy {ceil['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write), bf16 matmul "
                  f"{ceil['matmul_bf16_flops_per_s'] / 1e12:.0f} TFLOP/s; MFU is against the datasheet's "
                  f"{dev['peak_bf16_flops_datasheet'] / 1e12:.0f} TFLOP/s.", ""]
    lines += ["| SFT step, seq 4096, bf16 | remat | micro batch | s/step | tokens/s | MFU (6N + attn) | MFU causal attn "
              "| MFU useful FLOPs | XLA memory GiB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("full", "llama3.2-1b full fine-tuning"), ("lora", "llama3.2-1b LoRA r8"),
                        ("8b", "llama3-8b LoRA r8")):
        sec = data.get(name) or {}
        c = sec.get("chosen")
        if not c:
            lines.append(f"| {label} | - | - | - | - | {sec.get('skipped') or sec.get('error') or 'not run'} | | | |")
            continue
        peak_mem = (c.get("xla_memory") or {}).get("total_bytes")
        lines.append(f"| {label} | {c['remat']} | {c['micro']} | {c['median_seconds_per_step']:.3f} "
                     f"| {c['tokens_per_s']:.0f} | {c['mfu']:.1%} | {c['mfu_causal']:.1%} | {c['mfu_useful']:.1%} "
                     f"| {peak_mem / 2**30 if peak_mem else float('nan'):.1f} |")
    cases = (data.get("decode") or {}).get("cases") or {}
    if cases:
        lines += ["", "| decode (llama3.2-1b bf16, prompt 2600) | prefill s | ms/token step | tokens/s "
                  "| roofline tok/s (measured BW) | of roofline (measured / datasheet BW) |", "|---|---|---|---|---|---|"]
        for name, c in cases.items():
            if "error" in c:
                lines.append(f"| {name} | failed: {c['error'][:120]} | | | | |")
                continue
            lines.append(f"| {name} | {c['prefill_s']:.3f} | {c['decode_step_s'] * 1000:.2f} | {c['tokens_per_s']:.0f} "
                         f"| {c['roofline_tokens_per_s_measured']:.0f} | {c['fraction_of_roofline_measured']:.0%} / "
                         f"{c['fraction_of_roofline_datasheet']:.0%} |")
    if "eval_projection" in data:
        e = data["eval_projection"]
        lines += ["", f"PEToolBench evaluation (3,000 instances, batch 16, {e['new_tokens_assumed']} new tokens) "
                  f"projected: {e['projected_seconds'] / 60:.1f} min."]
    return "\n".join(lines)


def summary(data: dict) -> dict:
    out = {}
    for name in ("full", "lora", "8b"):
        chosen = (data.get(name) or {}).get("chosen")
        if chosen:
            out[name] = {k: chosen[k] for k in ("remat", "micro", "median_seconds_per_step", "tokens_per_s", "mfu",
                                                "mfu_causal", "mfu_useful")}
    for case, c in ((data.get("decode") or {}).get("cases") or {}).items():
        if "error" in c:
            out[f"decode {case}"] = c["error"][:200]
            continue
        out[f"decode {case}"] = {k: v for k, v in c.items() if k in ("tokens_per_s", "decode_step_s", "prefill_s")
                                 or k.startswith("fraction")}
    if "eval_projection" in data:
        out["eval_projection_s"] = data["eval_projection"]["projected_seconds"]
    return out


if __name__ == "__main__":
    main()
