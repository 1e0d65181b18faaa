"""`python -m bench.generate --device gpu`'s accelerator part: `eval run`'s generation of
PEToolBench instances with a random llama3.2-1b-shaped bf16 model (cold, then warm), one median
batch on that and the 8B shape (prompt vs decode time), and the projection to all 3,000
instances (see bench/generate.py's docstring for the command)."""

from __future__ import annotations

import gzip
import json
import sys
import time

from bench.generate_prompts import median_batch, petool_generate


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def random_bundle(preset: str, dtype: str, seed: int = 0):
    """A ModelBundle of random weights in `dtype` on the first device (no files, no tokenizer)."""
    import jax

    from petool_jax.config import RuntimeOptions, load_model_config
    from petool_jax.loading import ModelBundle, init_params
    from petool_jax.model import Llama
    from petool_jax.sharding import make_mesh

    config = load_model_config(preset)
    options = RuntimeOptions(dtype=dtype, param_dtype=dtype)
    mesh = make_mesh(devices=jax.devices()[:1])
    params = init_params(config, options, mesh, seed=seed)
    jax.block_until_ready(params)
    return ModelBundle(config, options, Llama(config, options), params, mesh)


def prefill_seconds(bundle, batch, new_tokens) -> float:
    """Seconds of generate_batch's prefill alone for one batch (the function it compiled)."""
    import jax

    from petool_jax.generation import jitted_generation, pack_batch
    from petool_jax.sharding import batch_sharding, mesh_rules

    prefill = jitted_generation(bundle.config, bundle.options, new_tokens, True).prefill
    tokens, _, start, _ = pack_batch(batch, len(batch), bundle.config.pad_token_id or 0)
    with mesh_rules(bundle.mesh):
        tokens = jax.device_put(tokens, batch_sharding(bundle.mesh, 2))
        start = jax.device_put(start, batch_sharding(bundle.mesh, 1))
        jax.block_until_ready(prefill(bundle.params, tokens, start))  # compiled already: a warm-up
        seconds, _ = _timed(lambda: jax.block_until_ready(prefill(bundle.params, tokens, start)))
    return seconds


def one_batch(bundle, batch, new_tokens) -> dict:
    """One batch through generate_batch (first call, then a timed second one) and its prefill
    alone: the rest is the decode loop."""
    cold, _ = petool_generate(bundle, batch, new_tokens, len(batch))
    full, _ = petool_generate(bundle, batch, new_tokens, len(batch))
    prompt = prefill_seconds(bundle, batch, new_tokens)
    return {"prompt_seconds": prompt, "full_seconds": full, "first_call_seconds": cold,
            "new_tokens": new_tokens, "decode_ms_per_step": 1000 * (full - prompt) / new_tokens}


def gpu_eval(args, started: float) -> dict:
    """`eval run`'s generation of --gpu-instances instances with a 1B-shaped model (cold, then
    warm), one median batch on the 1B and the 8B shape, and the projection to 3,000 with 8B."""
    import gc

    import numpy as np

    from petool_jax.generation import prompt_bucket

    with gzip.open(args.prompts, "rt") if args.prompts.endswith(".gz") else open(args.prompts) as f:
        prompts = json.load(f)[:args.gpu_instances]
    lengths = np.asarray([len(p) for p in prompts])
    order = np.sort(lengths)
    buckets = sorted({prompt_bucket(int(order[i:i + 16].max()) - 1) for i in range(0, len(order), 16)})
    res = {"instances": len(prompts), "new_tokens": args.gpu_new_tokens, "batch_size": 16,
           "prompt_tokens": {"median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
                             "max": int(lengths.max()), "total": int(lengths.sum())},
           "buckets": buckets, "models": {}}
    small = random_bundle(args.gpu_small, "bfloat16")
    prompts = [[t % small.config.vocab_size for t in p] for p in prompts]  # a no-op for LLaMA-3 shapes
    res["models"]["small"] = {"preset": args.gpu_small, "params": small.config.num_params()}
    cold, _ = _timed(lambda: petool_generate(small, prompts, args.gpu_new_tokens, 16))
    warm, _ = _timed(lambda: petool_generate(small, prompts, args.gpu_new_tokens, 16))
    res["small_eval"] = {"cold_seconds": cold, "warm_seconds": warm, "compile_seconds": cold - warm,
                         "generated_tokens": len(prompts) * args.gpu_new_tokens,
                         "tokens_per_s_warm": len(prompts) * args.gpu_new_tokens / warm}
    print(f"[bench] {args.gpu_small}: {len(prompts)} instances cold {cold:.1f}s warm {warm:.1f}s "
          f"({time.perf_counter() - started:.0f}s in)", file=sys.stderr, flush=True)
    batch = median_batch(prompts, 16)
    res["median_batch_prompt_tokens"] = [len(p) for p in batch]
    res["small_batch"] = one_batch(small, batch, args.gpu_new_tokens)
    del small
    gc.collect()
    yield res
    if time.perf_counter() - started > args.time_budget * 0.55:
        res["large_skipped"] = "time budget"
        return
    large = random_bundle(args.gpu_large, "bfloat16")
    res["models"]["large"] = {"preset": args.gpu_large, "params": large.config.num_params()}
    res["large_batch"] = one_batch(large, batch, args.gpu_new_tokens)
    del large
    gc.collect()
    scale = res["large_batch"]["full_seconds"] / res["small_batch"]["full_seconds"]
    res["projection_3000"] = {
        "method": f"{args.gpu_small} warm wall time for the {len(prompts)} instances x 3000/{len(prompts)} "
                  f"x ({args.gpu_large} / {args.gpu_small}) time on the same median batch of 16",
        "large_over_small": scale,
        "small_seconds": res["small_eval"]["warm_seconds"] * 3000 / len(prompts),
        "large_seconds": res["small_eval"]["warm_seconds"] * 3000 / len(prompts) * scale,
    }
    print(f"[bench] {args.gpu_large}: batch {res['large_batch']['full_seconds']:.2f}s; 3000 projected "
          f"{res['projection_3000']['large_seconds']:.0f}s", file=sys.stderr, flush=True)
    yield res


def gpu_table(res: dict) -> str:
    e, b = res["small_eval"], res["small_batch"]
    lines = [f"### `eval run` generation on GPU: {res['instances']} PEToolBench instances, batch 16, "
             f"{res['new_tokens']} new tokens each, random bf16 weights", "",
             "| model | what | value |", "|---|---|---|",
             f"| {res['models']['small']['preset']} | {res['instances']} instances, wall incl. compilation "
             f"| {e['cold_seconds']:.1f} s |",
             f"| {res['models']['small']['preset']} | same, all compiled (steady state) | {e['warm_seconds']:.1f} s "
             f"({e['tokens_per_s_warm']:.0f} generated tok/s) |",
             f"| {res['models']['small']['preset']} | compilation ({len(res['buckets'])} prompt buckets: "
             f"{', '.join(map(str, res['buckets']))}) | {e['compile_seconds']:.1f} s |",
             f"| {res['models']['small']['preset']} | median batch of 16: prompt part / decode step "
             f"| {b['prompt_seconds']:.3f} s / {b['decode_ms_per_step']:.2f} ms |"]
    if "large_batch" in res:
        lb, pr = res["large_batch"], res["projection_3000"]
        lines += [
            f"| {res['models']['large']['preset']} | median batch of 16: prompt part / decode step "
            f"| {lb['prompt_seconds']:.3f} s / {lb['decode_ms_per_step']:.2f} ms |",
            f"| {res['models']['large']['preset']} | all 3,000 instances (projected, steady state) "
            f"| {pr['large_seconds'] / 60:.1f} min ({pr['large_over_small']:.2f}x the small model's batch time) |",
            f"| {res['models']['small']['preset']} | all 3,000 instances (projected, steady state) "
            f"| {pr['small_seconds'] / 60:.1f} min |"]
    return "\n".join(lines)
