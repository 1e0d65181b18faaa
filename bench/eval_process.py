"""`petool eval run` as a whole process against an authors-style transformers loop, on the CPU.

    python -m bench.eval_process [--out bench/results] [--repeats 3] [--entries 40] [--work DIR]
                                 [--sides petool,transformers] [--extra-args "..."]

What a new user would do and time: a random 36 M-parameter LLaMA-3-shaped model (hidden 256,
4 layers, GQA 4:1, SwiGLU 1024, the real 128,256-token LLaMA-3 vocabulary from
../shared/llama3/tokenizer.model, tied embeddings; float32 safetensors in HF layout, so both
sides load the same directory) and the first --entries released entries of
../shared/petoolbench/test_dev.json.gz, all 3 settings (120 prompts at 40 entries). Both are
built once and cached under --work.

  petool:        `petool eval run --model M --data D --out O --max-new-tokens 32` with every
                 other option at its default (batch, --max-prompt-tokens 4000, scoring).
  transformers:  what the authors' run_experiment.py does: load the model, then prompt by
                 prompt apply the chat template (system = the setting's instruction, user =
                 the query), right-truncate at 4,000 tokens, `generate` greedy with
                 max_new_tokens 32, decode.

Each run is a separate process timed from outside: wall seconds from spawn to exit and the
peak RSS of its process tree (sampled every 20 ms, bench.common.run_measured). The sides
alternate (petool, transformers, petool, ...) --repeats times each; the figures are medians.
Both sides use their default threads (this VM: 2 vCPUs, shared with other work: noisy).

Results: OUT/eval_process.json and OUT/eval_process.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shlex
import shutil
import statistics
import sys
import time

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
DATA_FILE = SHARED / "petoolbench" / "test_dev.json.gz"
TOKENIZER_FILE = SHARED / "llama3" / "tokenizer.model"
# bench.generate's TINY shape with the real LLaMA-3 vocabulary, tied: 36.6 M parameters.
SHAPE = dict(vocab_size=128256, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=1, head_dim=64)
MAX_NEW_TOKENS = 32
MAX_PROMPT_TOKENS = 4000
SETTINGS = ("p", "r", "c")

HF_LOOP = r'''
import json, sys, time
start = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_dir, prompts_file, out, max_new, max_len = sys.argv[1:6]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
loaded = time.perf_counter()
rows = []
for item in json.load(open(prompts_file)):
    text = tokenizer.apply_chat_template(item["messages"], add_generation_prompt=True, tokenize=False)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False, truncation=True, max_length=int(max_len))
    with torch.no_grad():
        output = model.generate(**enc, max_new_tokens=int(max_new), do_sample=False)
    new = output[0, enc["input_ids"].shape[1]:]
    rows.append({"entry_id": item["entry_id"], "setting": item["setting"],
                 "response": tokenizer.decode(new, skip_special_tokens=True),
                 "prompt_tokens": int(enc["input_ids"].shape[1]), "new_tokens": int(new.shape[0])})
json.dump({"rows": rows, "load_seconds": loaded - start, "generate_seconds": time.perf_counter() - loaded},
          open(out, "w"))
'''




def build_inputs(work: pathlib.Path, n_entries: int) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(model dir, entries file, transformers prompts file), built once under `work`."""
    model_dir, data, prompts = work / "model", work / f"entries_{n_entries}.json", work / f"prompts_{n_entries}.json"
    if not model_dir.is_dir():
        from petool_jax.config import LlamaConfig
        from petool_jax.llama3_tokenizer import llama3_tokenizer
        from petool_jax.random_model import write_random_hf_model

        tok_dir = work / "tokenizer"
        llama3_tokenizer(TOKENIZER_FILE).save_pretrained(tok_dir)
        config = LlamaConfig(**SHAPE, rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=None,
                             max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=128000,
                             eos_token_ids=(128001, 128008, 128009))
        write_random_hf_model(config, model_dir, tokenizer_dir=tok_dir, progress=False)
    if not data.is_file() or not prompts.is_file():
        from petool_jax import petoolbench as pb

        entries = pb.load_entries(DATA_FILE)[:n_entries]
        items = [{"entry_id": e["entry_id"], "setting": s, "messages": pb.build_messages(e, s)}
                 for s in SETTINGS for e in entries]
        data.write_text(json.dumps(entries))
        prompts.write_text(json.dumps(items))
    return model_dir, data, prompts


def cli_module(tree: pathlib.Path) -> str:
    """The petool CLI module of a source tree (it moved to petool_jax.app in issue 12)."""
    return "petool_jax.app.cli" if (tree / "petool_jax" / "app" / "cli.py").is_file() else "petool_jax.cli"


def run_side(side: str, model_dir, data, prompts, work: pathlib.Path, extra: list[str],
             before_tree: pathlib.Path | None = None) -> dict:
    from bench.common import run_measured

    out = work / f"run_{side}"
    shutil.rmtree(out, ignore_errors=True)  # eval run resumes from an existing --out: start clean
    env = {"JAX_PLATFORMS": "cpu"}
    if side in ("petool", "petool_before"):
        tree = before_tree if side == "petool_before" else pathlib.Path(__file__).resolve().parents[1]
        cmd = [sys.executable, "-m", cli_module(tree), "eval", "run", "--model", str(model_dir),
               "--data", str(data), "--out", str(out), "--max-new-tokens", str(MAX_NEW_TOKENS), *extra]
        env["PYTHONPATH"] = str(tree)  # ahead of the editable install: this tree's petool_jax/eval
    else:
        out.mkdir(parents=True)
        cmd = [sys.executable, "-c", HF_LOOP, str(model_dir), str(prompts), str(out / "rows.json"),
               str(MAX_NEW_TOKENS), str(MAX_PROMPT_TOKENS)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_measured(cmd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole process tree: the work done, less sensitive than wall time to
    # other jobs on a shared machine
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"[bench.eval_process] {side}: {run['seconds']:.1f} s, {cpu:.1f} CPU-s, "
          f"{run['peak_rss_bytes'] / 2**30:.2f} GB", file=sys.stderr, flush=True)
    return {"seconds": run["seconds"], "cpu_seconds": cpu, "peak_rss_gb": run["peak_rss_bytes"] / 2**30,
            "load_average": os.getloadavg()[0]}


def agreement(work: pathlib.Path, data) -> dict:
    """Responses equal on both sides, over prompts that neither side had to cut (<= 4,000 tokens)."""
    from eval.predictions import load_predictions

    theirs = json.loads((work / "run_transformers" / "rows.json").read_text())["rows"]
    ids = {r["entry_id"] for r in theirs}
    ours = load_predictions(work / "run_petool" / "predictions.jsonl", ids)
    uncut = [r for r in theirs if r["prompt_tokens"] < MAX_PROMPT_TOKENS]
    same = sum(ours[(r["entry_id"], r["setting"])]["response"] == r["response"] for r in uncut)
    tokens = sorted(r["prompt_tokens"] for r in theirs)
    return {"uncut_prompts": len(uncut), "identical_uncut": same, "prompts": len(theirs),
            "prompt_tokens_median": statistics.median(tokens), "prompt_tokens_max": tokens[-1],
            "new_tokens_transformers": sum(r["new_tokens"] for r in theirs)}


def summarize(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for side, rs in runs.items():
        out[side] = {"median_seconds": statistics.median(r["seconds"] for r in rs),
                     "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
                     "cpu_seconds": [round(r["cpu_seconds"], 1) for r in rs],
                     "median_peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in rs),
                     "seconds": [round(r["seconds"], 1) for r in rs],
                     "peak_rss_gb": [round(r["peak_rss_gb"], 2) for r in rs]}
    if "petool" in out and "transformers" in out:
        out["speedup"] = out["transformers"]["median_seconds"] / out["petool"]["median_seconds"]
        out["memory_ratio"] = out["petool"]["median_peak_rss_gb"] / out["transformers"]["median_peak_rss_gb"]
        out["cpu_ratio"] = out["transformers"]["median_cpu_seconds"] / out["petool"]["median_cpu_seconds"]
    if "petool_before" in out and "transformers" in out:
        out["speedup_before"] = out["transformers"]["median_seconds"] / out["petool_before"]["median_seconds"]
        out["cpu_ratio_before"] = out["transformers"]["median_cpu_seconds"] / out["petool_before"]["median_cpu_seconds"]
        out["memory_ratio_before"] = (out["petool_before"]["median_peak_rss_gb"]
                                      / out["transformers"]["median_peak_rss_gb"])
    return out


def table(r: dict) -> str:
    s = r["summary"]
    lines = [f"### Evaluation, whole process ({r['machine']['cpus']} vCPUs shared, load average "
             f"{r['load_average'][0]:.1f} at the start; {r['prompts']} prompts = {r['entries']} entries x 3 settings, "
             f"max_new_tokens {MAX_NEW_TOKENS}, {r['params'] / 1e6:.1f} M params)", "",
             "| side | median wall s | runs wall s | median CPU-s | runs CPU-s | median peak RSS GB | runs GB |",
             "|---|---|---|---|---|---|---|"]
    for side in ("petool_before", "petool", "transformers"):
        if side in s:
            lines.append(f"| {side} | {s[side]['median_seconds']:.1f} | {', '.join(map(str, s[side]['seconds']))} "
                         f"| {s[side]['median_cpu_seconds']:.1f} | {', '.join(map(str, s[side]['cpu_seconds']))} "
                         f"| {s[side]['median_peak_rss_gb']:.2f} | {', '.join(map(str, s[side]['peak_rss_gb']))} |")
    if "speedup" in s:
        lines += ["", f"petool speed-up over transformers: **{s['speedup']:.2f}x** wall, {s['cpu_ratio']:.2f}x in "
                  f"CPU-s; memory petool / transformers: **{s['memory_ratio']:.2f}x**."]
    if "speedup_before" in s:
        lines.append(f"Before ({r['before_tree']}): speed-up {s['speedup_before']:.2f}x wall, "
                     f"{s['cpu_ratio_before']:.2f}x in CPU-s, memory "
                     f"{s['memory_ratio_before']:.2f}x.")
    if "agreement" in r:
        a = r["agreement"]
        lines.append(f"Prompt tokens (transformers, right-truncated at {MAX_PROMPT_TOKENS}): median "
                     f"{a['prompt_tokens_median']:.0f}, max {a['prompt_tokens_max']}; identical responses on the "
                     f"{a['uncut_prompts']} prompts neither side cut: {a['identical_uncut']}.")
    lines.append(f"Command: `{r['command']}`")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--work", default=str(pathlib.Path(os.environ.get("TMPDIR", "/tmp"))
                                              / "petool-bench-eval-process"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entries", type=int, default=40)
    parser.add_argument("--sides", default="petool,transformers")
    parser.add_argument("--before-tree", default=None,
                        help="a source tree of petool before a change (git archive COMMIT | tar -x -C DIR): "
                             "adds the side petool_before, alternated with the others")
    parser.add_argument("--extra-args", default="", help="more `petool eval run` options (experiments)")
    parser.add_argument("--name", default="eval_process", help="result file stem")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if not DATA_FILE.is_file() or not TOKENIZER_FILE.is_file():
        raise SystemExit(f"{DATA_FILE} and {TOKENIZER_FILE} are needed")

    from bench.common import machine, write_results
    from petool_jax.config import LlamaConfig

    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, data, prompts = build_inputs(work, args.entries)
    params = LlamaConfig.from_hf_dict(json.loads((model_dir / "config.json").read_text())).num_params()
    sides = args.sides.split(",")
    before_tree = pathlib.Path(args.before_tree).resolve() if args.before_tree else None
    if before_tree:
        sides.append("petool_before")
    extra = shlex.split(args.extra_args)
    results = {"benchmark": "eval_process", "machine": machine(), "load_average": os.getloadavg(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "entries": args.entries,
               "prompts": args.entries * len(SETTINGS), "params": params, "extra_args": extra,
               "command": "python -m bench.eval_process " + " ".join(argv if argv is not None else sys.argv[1:])}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        for side in sides:
            runs[side].append(run_side(side, model_dir, data, prompts, work, extra, before_tree))
    results["runs"] = runs
    results["summary"] = summarize(runs)
    results["before_tree"] = str(before_tree) if before_tree else None
    if "petool" in sides and "transformers" in sides:
        results["agreement"] = agreement(work, data)
    results["load_average_end"] = os.getloadavg()
    write_results(args.out, args.name, results, table(results))
    return results


if __name__ == "__main__":
    main()
