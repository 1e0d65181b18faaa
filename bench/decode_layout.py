"""Decode step time of a llama3.2-1b-shaped bf16 model at batch 1 against the HBM roofline,
with the layer scan rolled (unroll=1) vs fully unrolled, side by side in one process.

    python -m bench.decode_layout [--out DIR]

Tests the hypothesis (BENCHMARKS.md) that slicing stacked layer weights inside a rolled
scan costs extra memory traffic per decode step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

from petool_jax.attention import cache_mask
from petool_jax.config import RuntimeOptions, load_model_config
from petool_jax.loading import init_params
from petool_jax.model import Llama, init_cache
from petool_jax.sharding import make_mesh


def decode_steps(config, options, params, context: int, steps: int):
    model = Llama(config, options)
    cache_len = context + steps

    @jax.jit
    def run(params, cache, token):
        def body(i, carry):
            cache, token = carry
            slot = context + i
            mask = cache_mask(jnp.zeros((1,), jnp.int32), slot, 1, cache_len)
            logits, cache = model.apply({"params": params}, token[:, None], jnp.full((1, 1), slot), mask,
                                        cache=cache, cache_index=slot)
            return cache, jnp.argmax(logits[:, -1], -1).astype(jnp.int32)

        return jax.lax.fori_loop(0, steps, body, (cache, token))

    cache = init_cache(config, 1, cache_len, jnp.bfloat16)
    token = jnp.zeros((1,), jnp.int32)
    jax.block_until_ready(run(params, cache, token))  # compile
    times = []
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(run(params, cache, token))
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="llama3.2-1b")
    parser.add_argument("--context", type=int, default=2600)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--bandwidth", type=float, default=2.41e12, help="measured copy bandwidth, bytes/s")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    config = load_model_config(args.preset)
    base = RuntimeOptions(dtype="bfloat16", param_dtype="bfloat16")
    params = init_params(config, base, make_mesh(devices=jax.devices()[:1]))
    weight_bytes = config.num_params() * 2
    kv_bytes = (args.context + args.steps / 2) * config.num_hidden_layers * 2 * config.kv_dim * 2
    roofline_step = (weight_bytes + kv_bytes) / args.bandwidth
    rows = {}
    for rep in range(2):  # ABAB
        for name, unroll in (("scan rolled", 1), ("scan unrolled", config.num_hidden_layers)):
            step = decode_steps(config, dataclasses.replace(base, scan_unroll=unroll), params, args.context,
                                args.steps)
            rows.setdefault(name, []).append(step)
    result = {"device": jax.devices()[0].device_kind, "preset": args.preset, "context": args.context,
              "roofline_step_s": roofline_step,
              "cases": {k: {"step_s": statistics.median(v), "fraction_of_roofline": roofline_step / statistics.median(v)}
                        for k, v in rows.items()}}
    lines = [f"### decode step, {args.preset} bf16, batch 1, context {args.context}, {result['device']}", "",
             "| layer scan | ms/step | tokens/s | of roofline |", "|---|---|---|---|"]
    for name, case in result["cases"].items():
        lines.append(f"| {name} | {case['step_s'] * 1e3:.2f} | {1 / case['step_s']:.0f} | "
                     f"{case['fraction_of_roofline']:.0%} |")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode_layout.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "decode_layout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
