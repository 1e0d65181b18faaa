"""The benchmark suite: python -m bench [train|dpo|generate|convert|scaling|accelerator|all]
[--device cpu|gpu|tpu] [--out DIR]

Each benchmark runs in its own process (its own JAX platform, its own peak RSS) and writes
NAME.json + NAME.md under --out; the suite then writes results.json (every benchmark's
figures, the machine; results_gpu.json / results_tpu.json for accelerators) and results.md
(their tables, one after the other). A run of one benchmark updates its own entry and keeps
the others' latest figures.

  cpu: train       bench.train        SFT tokens/s vs PyTorch + transformers (ABAB)
       dpo         bench.dpo          DPO pairs/s: prefix-shared vs two-sequence vs PyTorch
       generate    bench.generate     generation tokens/s vs transformers generate, batch 1 and 16
       convert     bench.convert      `petool convert` seconds and peak RSS (1B, bf16)
       scaling     bench.scaling      step time / memory vs seq length, batch, simulated devices
       eval_process bench.eval_process `petool eval run` vs a transformers loop, whole processes
  gpu/tpu: train   bench.accelerator  MFU of full fine-tuning and LoRA (1B, 8B shape), seq 4096
       generate    bench.generate --device gpu, and bench.accelerator's decode-vs-roofline
       convert     as on cpu (conversion runs on the host)
       accelerator bench.accelerator  all of its sections in one process
`all` runs every benchmark the device has (on gpu/tpu: accelerator, generate, convert).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

CPU = {"train": ["bench.train"], "dpo": ["bench.dpo"], "generate": ["bench.generate", "--device", "cpu"],
       "convert": ["bench.convert"], "scaling": ["bench.scaling"], "eval_process": ["bench.eval_process"]}
ACCEL = {"train": ["bench.accelerator", "--skip", "decode", "--name", "accelerator_train"],
         "generate": ["bench.generate", "--device", "gpu"],
         "decode": ["bench.accelerator", "--skip", "full,lora,8b", "--name", "accelerator_decode"],
         "convert": ["bench.convert"]}
ACCEL_ALL = {"accelerator": ["bench.accelerator"], "generate": ACCEL["generate"], "convert": ACCEL["convert"]}
# result file each benchmark writes under --out
OUTPUTS = {"bench.train": "train_cpu", "bench.dpo": "dpo_cpu", "bench.convert": "convert",
           "bench.scaling": "scaling", "bench.accelerator": "accelerator", "bench.eval_process": "eval_process"}


GPU_PROMPTS = pathlib.Path("bench/results/generate.gpu-prompts.json.gz")  # bench.generate --write-prompts


def plan(which: str, device: str) -> dict[str, list[str]]:
    table = CPU if device == "cpu" else dict(ACCEL)
    if device == "gpu" and GPU_PROMPTS.is_file():  # ../shared does not travel to a GPU machine
        table["generate"] = table["generate"] + ["--prompts", str(GPU_PROMPTS)]
    if device == "tpu":
        table = {k: v for k, v in table.items() if k != "generate"}  # bench.generate: cpu and gpu only
    if which == "all":
        return dict(table) if device == "cpu" else {k: table.get(k, v) for k, v in ACCEL_ALL.items()
                                                    if k in table or k == "accelerator"}
    if which == "generate" and device != "cpu":
        return {"generate": table.get("generate", []), "decode": table["decode"]}
    if which not in table:
        raise SystemExit(f"bench {which!r} is not available for --device {device} (have: {sorted(table)})")
    return {which: table[which]}


def result_name(cmd: list[str]) -> str:
    if cmd[0] == "bench.generate":
        return f"generate.{cmd[cmd.index('--device') + 1]}"
    if "--name" in cmd:
        return cmd[cmd.index("--name") + 1]
    return OUTPUTS[cmd[0]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all",
                        choices=("train", "dpo", "generate", "convert", "scaling", "eval_process", "accelerator",
                                 "all"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "tpu"))
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)

    from bench.common import machine

    which = "train" if args.which == "accelerator" else args.which
    if args.which == "accelerator" and args.device == "cpu":
        raise SystemExit("accelerator figures need --device gpu or tpu")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # results.json keeps the latest run of every benchmark (a run of one updates its entry).
    results_path = out / f"results_{args.device}.json" if args.device != "cpu" else out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"benchmarks": {}}
    results.update({"device": args.device, "machine": machine()})
    failed = 0
    for name, cmd in plan(which, args.device).items():
        if not cmd:
            continue
        full = [sys.executable, "-m", *cmd, "--out", str(out)]
        print(f"[bench] {name}: {' '.join(full[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rc = subprocess.call(full)
        stem = result_name(cmd)
        entry = {"command": " ".join(["python", "-m", *cmd, "--out", str(out)]), "returncode": rc,
                 "seconds": time.perf_counter() - start, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "files": stem}
        json_path = out / f"{stem}.json"
        if rc == 0 and json_path.is_file():
            entry["results"] = json.loads(json_path.read_text())
        else:
            failed += 1
        results["benchmarks"][name] = entry
        results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tables = []
    for name, entry in results["benchmarks"].items():
        md = out / f"{entry.get('files', name)}.md"
        if entry["returncode"] == 0 and md.is_file():
            tables.append(f"<!-- {entry['command']} ({entry['finished']}) -->\n" + md.read_text())
        else:
            tables.append(f"### {name}: failed (exit code {entry['returncode']}): {entry['command']}\n")
    header = (f"# petool benchmarks ({args.device}; {results['machine']['platform']}, "
              f"{results['machine']['cpus']} CPUs, {results['machine']['memory_gb']} GB)\n")
    md_path = results_path.with_suffix(".md")
    md_path.write_text(header + "\n" + "\n\n".join(tables) + "\n")
    print(f"[bench] wrote {results_path} and {md_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
