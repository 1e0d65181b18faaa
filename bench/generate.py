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

from bench.generate_gpu import gpu_eval, gpu_table
from bench.generate_prompts import bench_prompts, median_batch, petool_generate, petoolbench_prompts

# Tiny but not trivial: LLaMA-3 proportions (GQA 4:1, head_dim 64, SwiGLU 4x) at hidden 256.
TINY = dict(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=1, head_dim=64)


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
