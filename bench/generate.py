"""Generated tokens/s of petool's generation path (petool_jax.generation.generate_batch, what
`petool eval run --model DIR` calls) vs transformers `generate`, greedy, on the same random
LLaMA-3-shaped model (same weights) and the same PEToolBench-length prompts (~2,600 tokens).

    python -m bench.generate [--device cpu|gpu] [--out bench/results] [--repeats 3]

Prompts: real PEToolBench instances from ../shared/petoolbench/test_dev.json.gz, built as
`eval run` builds them (system = the setting's instruction, user = the query, LLaMA-3 chat
template, oldest history dropped beyond 4,000 tokens) and tokenized with the LLaMA-3
tokenizer (../shared/llama3/tokenizer.model); without ../shared, random ids of such lengths.
The 16 instances nearest the median length make the batch-16 case (as in `eval run`, which
batches length-sorted prompts), 2 of them (--batch1-prompts) the batch-1 case. Token ids
are folded into the model's vocabulary (id % vocab_size): a random model does not care
what they spell.

Both sides generate exactly --new-tokens tokens per prompt (no stop tokens). petool and
transformers run alternately in one process (A B A B ...), --repeats times; the figures are
medians over repetitions of steady-state calls; the first call of each (XLA compilation for
petool) is reported separately. A run with 1 new token measures the prompt (prefill) part,
so the per-token decode cost is (t(N) - t(1)) / (N - 1).

--device gpu also times, for a llama3.2-1b-shaped random bf16 model, `eval run`'s generation
of --gpu-instances PEToolBench instances (prompts from --prompts, a file written here by
--write-prompts, since ../shared does not travel to the GPU machine) and the prompt and
decode cost of an 8B (llama3-8b-instruct) shape on a median batch, and projects all 3,000:

    python -m bench.generate --write-prompts bench/results/generate.gpu-prompts.json.gz  # here
    python -m bench.generate --device gpu --prompts bench/results/generate.gpu-prompts.json.gz

Results: OUT/generate.{cpu,gpu}.json and .md; OUT/generate.md joins them with
OUT/generate.notes.md (the analysis, written by hand).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
# Tiny but not trivial: LLaMA-3 proportions (GQA 4:1, head_dim 64, SwiGLU 4x) at hidden 256.
TINY = dict(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=1, head_dim=64)
MAX_PROMPT_TOKENS = 4000  # eval run's default
LLAMA3_SPECIALS = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>",
                   7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>"}


# --- prompts --------------------------------------------------------------------------------

def llama3_tokenizer(model_file: pathlib.Path):
    """The LLaMA-3 tokenizer (tiktoken ranks + the 256 special tokens) with its chat template."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from petool_jax.tokenizer import LLAMA3_CHAT_TEMPLATE

    specials = [LLAMA3_SPECIALS.get(i, f"<|reserved_special_token_{i}|>") for i in range(256)]
    backend = TikTokenConverter(str(model_file), extra_special_tokens=specials).converted()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", chat_template=LLAMA3_CHAT_TEMPLATE)


def petoolbench_prompts(n_instances: int) -> list[list[int]]:
    """Token ids of the first n instances (entries in file order, settings p, r, c), exactly
    as `eval run` builds them."""
    from petool_jax import petoolbench as pb
    from petool_jax.chat import ChatRenderer

    tokenizer = llama3_tokenizer(SHARED / "llama3" / "tokenizer.model")
    entries = pb.load_entries(SHARED / "petoolbench" / "test_dev.json.gz")

    encode = ChatRenderer(tokenizer).prompt_ids

    prompts = []
    for entry in entries:
        for setting in pb.SETTINGS:
            messages, _ = pb.fit_messages(entry, setting, lambda m: len(encode(m)), MAX_PROMPT_TOKENS)
            prompts.append(encode(messages))
            if len(prompts) == n_instances:
                return prompts
    return prompts


def synthetic_prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """Random ids with lengths spread around PEToolBench's median (~2,600 tokens)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    return [rng.randint(0, vocab, size=int(n_tok)).tolist() for n_tok in rng.randint(2450, 2750, size=n)]


def median_batch(prompts: list[list[int]], k: int) -> list[list[int]]:
    """The k prompts nearest the median length: one length-sorted batch from mid-benchmark."""
    ordered = sorted(prompts, key=len)
    mid = len(ordered) // 2
    return ordered[max(0, mid - k // 2):max(0, mid - k // 2) + k]


def bench_prompts(n_pool: int, vocab: int) -> tuple[list[list[int]], str]:
    if (SHARED / "petoolbench" / "test_dev.json.gz").is_file() and (SHARED / "llama3" / "tokenizer.model").is_file():
        pool = petoolbench_prompts(n_pool)
        source = f"PEToolBench test_dev, {n_pool} instances, LLaMA-3 tokenizer, fitted to {MAX_PROMPT_TOKENS}"
    else:
        pool = synthetic_prompts(16, vocab)
        source = "synthetic (no ../shared): random ids, 2,450-2,750 tokens"
    return [[t % vocab for t in p] for p in pool], source


# --- the two sides ----------------------------------------------------------------------------

def make_models(workdir: pathlib.Path, seed: int = 0, device: str = "cpu"):
    """A random transformers LlamaForCausalLM saved to disk, and petool's bundle of the same files."""
    import torch
    import transformers

    from petool_jax.loading import load_model

    config = transformers.LlamaConfig(**TINY, max_position_embeddings=8192, rope_theta=500000.0,
                                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1,
                                      eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(workdir, safe_serialization=True)
    bundle = load_model(workdir, with_tokenizer=False)
    return model.to("cuda" if device == "gpu" else "cpu"), bundle


def petool_generate(bundle, prompts, new_tokens, batch):
    from petool_jax.generation import generate_batch

    start = time.perf_counter()
    out = generate_batch(bundle, prompts, max_new_tokens=new_tokens, batch_size=batch, stop_ids=(), progress=False)
    return time.perf_counter() - start, out


def hf_generate(model, prompts, new_tokens, batch):
    """transformers generate on the same length-sorted batches, left-padded with a mask."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results = [None] * len(prompts)
    start = time.perf_counter()
    for begin in range(0, len(order), batch):
        idx = order[begin:begin + batch]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        with torch.no_grad():
            out = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=new_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        for r, i in enumerate(idx):
            results[i] = out[r, width:].tolist()
    return time.perf_counter() - start, results


# --- the comparison ---------------------------------------------------------------------------

def compare(args, model, bundle, cases) -> dict:
    """ABAB over repetitions; per case: steady-state medians, first-call times, ratio."""
    sides = {"petool": lambda p, n, b: petool_generate(bundle, p, n, b),
             "transformers": lambda p, n, b: hf_generate(model, p, n, b)}
    runs = {(c, s, n): [] for c in cases for s in sides for n in (args.new_tokens, 1)}
    first, outputs = {}, {}
    for c, (prompts, batch) in cases.items():
        for side, fn in sides.items():  # first calls: compilation (petool), warm-up (torch)
            for n in (args.new_tokens, 1):
                seconds, out = fn(prompts, n, batch)
                first[(c, side, n)] = seconds
                if n == args.new_tokens:
                    outputs[(c, side)] = out
    for rep in range(args.repeats):
        for c, (prompts, batch) in cases.items():
            for side, fn in sides.items():
                for n in (args.new_tokens, 1):
                    seconds, _ = fn(prompts, n, batch)
                    runs[(c, side, n)].append(seconds)
            print(f"[bench] rep {rep + 1}/{args.repeats} {c}: " + ", ".join(
                f"{s} {runs[(c, s, args.new_tokens)][-1]:.2f}s" for s in sides), file=sys.stderr, flush=True)

    results = {}
    for c, (prompts, batch) in cases.items():
        n = args.new_tokens
        tokens = n * len(prompts)
        entry = {"batch_size": batch, "prompts": len(prompts), "prompt_tokens": [len(p) for p in prompts],
                 "new_tokens_per_prompt": n, "generated_tokens_per_call": tokens}
        for side in sides:
            full, one = runs[(c, side, n)], runs[(c, side, 1)]
            med, med1 = statistics.median(full), statistics.median(one)
            entry[side] = {
                "seconds": full, "median_seconds": med, "tokens_per_s": tokens / med,
                "prompt_only_seconds": one, "median_prompt_only_seconds": med1,
                "decode_ms_per_step": 1000 * (med - med1) / (n - 1) / -(-len(prompts) // batch),
                "first_call_seconds": first[(c, side, n)],
                "first_call_extra_seconds": first[(c, side, n)] - med,
            }
        entry["ratio_tokens_per_s"] = entry["petool"]["tokens_per_s"] / entry["transformers"]["tokens_per_s"]
        same = [a == b for a, b in zip(outputs[(c, "petool")], outputs[(c, "transformers")])]
        entry["identical_rows"] = f"{sum(same)}/{len(same)}"
        results[c] = entry
    return results


def table(results: dict, title: str) -> str:
    lines = [f"### {title}", "",
             "| case | petool tok/s | transformers tok/s | ratio | petool prompt s | transformers prompt s "
             "| petool decode ms/step | transformers decode ms/step | petool first call s (compile) "
             "| identical rows |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c, e in results.items():
        p, h = e["petool"], e["transformers"]
        lines.append(
            f"| {c} | {p['tokens_per_s']:.1f} | {h['tokens_per_s']:.1f} | {e['ratio_tokens_per_s']:.2f}x "
            f"| {p['median_prompt_only_seconds']:.2f} | {h['median_prompt_only_seconds']:.2f} "
            f"| {p['decode_ms_per_step']:.1f} | {h['decode_ms_per_step']:.1f} "
            f"| {p['first_call_seconds']:.1f} ({p['first_call_extra_seconds']:+.1f}) | {e['identical_rows']} |")
    return "\n".join(lines)


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


def compose_summary(out_dir: pathlib.Path) -> None:
    """generate.md = the tables of every device run present + generate.notes.md (analysis)."""
    parts = ["# bench/generate.py: petool generation vs transformers generate", ""]
    for name in ("generate.cpu.json", "generate.gpu.json"):
        path = out_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            parts += [data["markdown"], "", f"Machine: {json.dumps(data['machine'])}; versions: "
                      f"{json.dumps(data['versions'])}; prompts: {data.get('prompts', '')}.", ""]
    notes = out_dir / "generate.notes.md"
    if notes.is_file():
        parts.append(notes.read_text())
    (out_dir / "generate.md").write_text("\n".join(parts).rstrip() + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch1-prompts", type=int, default=2)
    parser.add_argument("--pool", type=int, default=96, help="instances to pick the median-length batch from")
    parser.add_argument("--prompts", help="token ids (JSON list of lists, .gz ok) instead of ../shared")
    parser.add_argument("--write-prompts", help="write the first --gpu-instances prompts' ids here and stop")
    parser.add_argument("--gpu-instances", type=int, default=300)
    parser.add_argument("--gpu-new-tokens", type=int, default=64)
    parser.add_argument("--gpu-small", default="llama3.2-1b")
    parser.add_argument("--gpu-large", default="llama3-8b-instruct")
    parser.add_argument("--time-budget", type=float, default=300.0, help="GPU: seconds; later parts are skipped")
    parser.add_argument("--eval-timing", action="store_true",
                        help="time eval run's generation of --prompts with the --gpu-* shapes (default with gpu)")
    parser.add_argument("--skip-compare", action="store_true", help="no petool vs transformers comparison")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    os.environ["JAX_PLATFORMS"] = "cpu" if args.device == "cpu" else "cuda"
    if args.device == "gpu":
        # transformers' torch shares the GPU with JAX in this process.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.85")
    if args.write_prompts:
        prompts = petoolbench_prompts(args.gpu_instances)
        with gzip.open(args.write_prompts, "wt") as f:
            json.dump(prompts, f)
        print(f"wrote {len(prompts)} prompts to {args.write_prompts}")
        return {}

    import jax
    import torch
    import transformers

    from bench.common import machine, write_results

    out_dir = pathlib.Path(args.out)
    name = f"generate.{args.device}"
    results = {
        "benchmark": "generate", "device": args.device, "jax_device": str(jax.devices()[0]),
        "machine": {**machine(), "load_average_at_start": os.getloadavg()},
        "versions": {"jax": jax.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }

    def save(markdown_parts):
        results["markdown"] = "\n\n".join(markdown_parts)
        write_results(out_dir, name, results, results["markdown"])
        compose_summary(out_dir)

    markdown = []
    if (args.device == "gpu" or args.eval_timing) and args.prompts:
        results["gpu_eval"] = {}
        for partial in gpu_eval(args, started):
            results["gpu_eval"] = partial
            save(markdown + [gpu_table(partial)])
        markdown.append(gpu_table(results["gpu_eval"]))
        if time.perf_counter() - started > args.time_budget * 0.8 or args.skip_compare:
            return results

    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count())
    if args.prompts and args.device == "cpu":
        with gzip.open(args.prompts, "rt") if args.prompts.endswith(".gz") else open(args.prompts) as f:
            pool = [[t % TINY["vocab_size"] for t in p] for p in json.load(f)]
        source = f"{args.prompts} ({len(pool)} instances)"
    elif args.prompts:
        with gzip.open(args.prompts, "rt") if args.prompts.endswith(".gz") else open(args.prompts) as f:
            pool = [[t % TINY["vocab_size"] for t in p] for p in json.load(f)[:args.pool]]
        source = f"{args.prompts} (first {len(pool)} instances)"
    else:
        pool, source = bench_prompts(args.pool, TINY["vocab_size"])
    batch16 = median_batch(pool, 16)
    cases = {"batch 1": (batch16[::16 // args.batch1_prompts][:args.batch1_prompts], 1), "batch 16": (batch16, 16)}
    with tempfile.TemporaryDirectory(prefix="petool-bench-generate-") as work:
        model, bundle = make_models(pathlib.Path(work), device=args.device)
        compared = compare(args, model, bundle, cases)
    results.update({"model": {**TINY, "dtype": "float32"}, "prompts": source, "new_tokens": args.new_tokens,
                    "repeats": args.repeats, "cases": compared, "torch_threads": torch.get_num_threads()})
    results["machine"]["load_average_at_end"] = os.getloadavg()
    where = f"{machine()['cpus']} CPUs" if args.device == "cpu" else str(jax.devices()[0].device_kind)
    title = (f"Greedy generation, tiny random LLaMA-3 ({TINY['hidden_size']} hidden, {TINY['num_hidden_layers']} "
             f"layers, vocab {TINY['vocab_size']}, fp32), {args.new_tokens} new tokens, {args.device} ({where}), "
             f"medians of {args.repeats}")
    save(markdown + [table(compared, title)])
    return results


if __name__ == "__main__":
    main()
