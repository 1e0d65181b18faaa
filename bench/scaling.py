"""How petool's SFT step time and memory grow with sequence length, batch size and the number
of (simulated) devices of the sharded step, with a PNG plot of each.

    python -m bench.scaling [--out bench/results] [--sweeps seq,batch,devices,attention]
                            [--seqs 1024,2048,4096,8192] [--batches 1,2,4,8] [--devices 1,2,4,8]
                            [--attn-seqs 512,...,16384] [--attn-impls xla,blockwise] [--mem-budget-gb 8]

Every point runs in its own process (so its peak RSS is its own, and the device count can be
set): `XLA_FLAGS=--xla_force_host_platform_device_count=N` makes N CPU devices, the mesh is
fsdp=N (the project's default layout: parameters, gradients and Adam moments split N ways,
the batch rows too). The model is bench.train's small LLaMA-3-shaped one, fp32, full
fine-tuning, the step as `petool train sft` jits it (remat=full, the training default, XLA
attention), with the loss (and so the logits) at every position: a language-model step
whose cost does not depend on how long the answers are. Figures per point: median step seconds over --steps timed steps after one
warm-up step, tokens/s, compile seconds, XLA's memory account of the compiled step (per
device: arguments + temporaries + non-aliased outputs) and the process's peak RSS.

On a CPU host the simulated devices share the same cores, so the device sweep shows the
sharding's overhead and the per-device memory, not a speed-up.

The attention sweep (`--sweeps attention`, written to scaling_attention.*; `--sweeps abab`
times both kernels alternately in one process, scaling_attention_abab.*; neither is part of
the default run) compares the attention kernels over sequence lengths: the same step with
attention=xla and attention=blockwise, one device, batch 1, packed-row segment ids, logits
only at the last 64 positions (what `petool train sft` computes) so the output head does not
hide the attention, on a 2-layer version of the small model (attention is per layer; two
keep the long points affordable). A point whose compiled step XLA says needs more than
--mem-budget-gb is compiled but not run and recorded as "did not fit" (the VM is shared: a
16k xla step asks for tens of GB). A step slower than 60 s is timed once after its warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

SEQ_SWEEP_BATCH = 1
BATCH_SWEEP_SEQ = 1024
DEVICE_SWEEP = (8, 512)  # global batch rows, seq


ATTN_LAYERS = 2
SLOW_STEP_S = 60.0


def point(spec: dict) -> dict:
    """One measurement, in this process (the child side)."""
    import jax

    from bench.train import build_petool_sft, small_config
    from petool_jax.sharding import make_mesh

    mesh = make_mesh(1, spec["devices"], 1)
    config = small_config(**({"num_hidden_layers": spec["layers"]} if spec.get("layers") else {}))
    sft = build_petool_sft(config, micro=spec["batch"], seq=spec["seq"], remat=spec["remat"], mesh=mesh,
                           attention=spec.get("attention", "xla"), gather=spec.get("gather", False))
    budget = spec.get("mem_budget_bytes")
    if budget and sft.memory.get("total_bytes", 0) > budget:
        return {**spec, "did_not_fit": True, "compile_seconds": sft.compile_seconds, "xla_memory": sft.memory}
    warm = sft.run(1)[0]
    steps = 1 if warm > SLOW_STEP_S else spec["steps"]
    times = [sft.run(1)[0] for _ in range(steps)]
    step = statistics.median(times)
    return {**spec, "jax_devices": jax.device_count(), "seconds_per_step": times, "median_seconds_per_step": step,
            "tokens_per_step": sft.tokens_per_step, "tokens_per_s": sft.tokens_per_step / step,
            "compile_seconds": sft.compile_seconds, "xla_memory": sft.memory}


def measure(spec: dict) -> dict | None:
    import tempfile

    from bench.common import run_measured

    env = {"JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                         f" --xla_force_host_platform_device_count={spec['devices']}").strip()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "point.json")
        try:
            r = run_measured([sys.executable, "-m", "bench.scaling", "--point", json.dumps(spec),
                              "--point-out", path], env=env)
        except RuntimeError as err:  # e.g. out of memory at the longest sequence
            print(f"[bench.scaling] {spec} failed: {str(err)[-300:]}", file=sys.stderr, flush=True)
            return None
        with open(path) as f:
            result = json.load(f)
    result["peak_rss_bytes"] = r["peak_rss_bytes"]
    if result.get("did_not_fit"):
        print(f"[bench.scaling] {spec}: did not fit (XLA asks {result['xla_memory']['total_bytes'] / 2**30:.1f} GiB)",
              file=sys.stderr, flush=True)
        return result
    print(f"[bench.scaling] {spec}: {result['median_seconds_per_step']:.2f} s/step, "
          f"XLA {result['xla_memory'].get('total_bytes', 0) / 2**20:.0f} MiB, RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB",
          file=sys.stderr, flush=True)
    return result


def plot(points: list[dict], x_key: str, x_label: str, title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p[x_key] for p in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(xs, [p["median_seconds_per_step"] for p in points], "o-", label="step time")
    ax1.set_xlabel(x_label)
    ax1.set_ylabel("seconds per step")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(xs, [str(x) for x in xs])
    ax1b = ax1.twinx()
    ax1b.plot(xs, [p["tokens_per_s"] for p in points], "s--", color="tab:green", label="tokens/s")
    ax1b.set_ylabel("tokens/s", color="tab:green")
    ax1.set_title("step time (line), tokens/s (dashed)")
    ax2.plot(xs, [p["xla_memory"].get("total_bytes", 0) / 2**20 for p in points], "o-",
             label="XLA: compiled step, per device")
    ax2.plot(xs, [p["peak_rss_bytes"] / 2**20 for p in points], "s--", label="process peak RSS")
    ax2.set_xlabel(x_label)
    ax2.set_ylabel("MiB")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(xs, [str(x) for x in xs])
    ax2.legend()
    ax2.set_title("memory")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(sweeps: dict) -> str:
    lines = []
    names = {"seq": ("sequence length", "seq"), "batch": ("batch size", "batch"), "devices": ("devices (fsdp)", "devices")}
    for sweep, points in sweeps.items():
        label, key = names[sweep]
        p0 = points[0]
        fixed = {"seq": f"batch {p0['batch']}", "batch": f"seq {p0['seq']}",
                 "devices": f"global batch {p0['batch']} x seq {p0['seq']}"}[sweep]
        lines += [f"#### vs {label} ({fixed}, remat={p0['remat']}, fp32 full fine-tuning, logits at every position)", "",
                  f"| {label} | s/step | tokens/s | time vs first | XLA memory/device MiB | peak RSS MiB | compile s |",
                  "|---|---|---|---|---|---|---|"]
        for p in points:
            lines.append(f"| {p[key]} | {p['median_seconds_per_step']:.2f} | {p['tokens_per_s']:.0f} "
                         f"| {p['median_seconds_per_step'] / p0['median_seconds_per_step']:.2f}x "
                         f"| {p['xla_memory'].get('total_bytes', 0) / 2**20:.0f} | {p['peak_rss_bytes'] / 2**20:.0f} "
                         f"| {p['compile_seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--sweeps", default="seq,batch,devices")  # attention: see the module doc
    parser.add_argument("--seqs", default="1024,2048,4096,8192")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--attn-seqs", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--attn-impls", default="xla,blockwise")
    parser.add_argument("--mem-budget-gb", type=float, default=8.0)
    parser.add_argument("--abab-seqs", default="512,1024,2048,4096",
                        help="--sweeps abab: lengths timed A B A B in one process")
    parser.add_argument("--abab-rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--remat", default="full")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    parser.add_argument("--point-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point:
        with open(args.point_out, "w") as f:
            json.dump(point(json.loads(args.point)), f)
        return {}

    import pathlib

    from bench.common import machine, write_results
    from bench.train import SMALL, small_config

    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    base = {"steps": args.steps, "remat": args.remat}
    plans = {
        "seq": [dict(base, seq=s, batch=SEQ_SWEEP_BATCH, devices=1) for s in ints(args.seqs)],
        "batch": [dict(base, seq=BATCH_SWEEP_SEQ, batch=b, devices=1) for b in ints(args.batches)],
        "devices": [dict(base, seq=DEVICE_SWEEP[1], batch=DEVICE_SWEEP[0], devices=n) for n in ints(args.devices)],
        "attention": [dict(base, seq=s, batch=1, devices=1, attention=impl, layers=ATTN_LAYERS, gather=True,
                           mem_budget_bytes=int(args.mem_budget_gb * 2**30))
                      for s in ints(args.attn_seqs) for impl in args.attn_impls.split(",")],
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.sweeps.split(",")
    results = {}
    if "attention" in names:
        results["attention"] = attention_sweep(plans["attention"], out)
        names.remove("attention")
    if "abab" in names:
        results["abab"] = abab_sweep(ints(args.abab_seqs), args.abab_rounds, out)
        names.remove("abab")
    if not names:
        return results
    sweeps = {}
    for name in names:
        sweeps[name] = [p for p in (measure(spec) for spec in plans[name]) if p is not None]
        if not sweeps[name]:
            del sweeps[name]
    titles = {"seq": ("seq", "sequence length (tokens)"), "batch": ("batch", "batch size (rows)"),
              "devices": ("devices", "simulated CPU devices (fsdp)")}
    config = small_config()
    desc = f"SFT step, small LLaMA-3 ({config.num_params() / 1e6:.1f}M params), CPU: {machine()['cpus']} cores"
    failed = {name: [s for s in plans[name] if not any(all(p[k] == v for k, v in s.items()) for p in sweeps.get(name, []))]
              for name in names}
    for name, points in sweeps.items():
        key, label = titles[name]
        plot(points, key, label, desc, out / f"scaling_{name}.png")
    results.update({"benchmark": "scaling", "model": {**SMALL, "params": config.num_params(), "dtype": "float32"},
                    "sweeps": sweeps, "failed_points": {k: v for k, v in failed.items() if v}, "machine": machine(),
                    "plots": [f"scaling_{name}.png" for name in sweeps]})
    write_results(out, "scaling", results, f"### {desc}\n\n" + table(sweeps))
    return results


def attention_sweep(plan: list[dict], out) -> dict:
    """xla vs blockwise over sequence lengths -> scaling_attention.{json,md}. A point that
    fails twice (e.g. killed for memory) is recorded as failed (its error is in the log)."""
    from bench.common import machine, write_results
    from bench.train import SMALL, small_config

    import time

    points = []
    for spec in plan:
        result = measure(spec)
        if result is None:  # one retry: a crash may be transient (the VM is shared)
            time.sleep(30)
            result = measure(spec)
        points.append(result if result is not None else {**spec, "failed": True})
    config = small_config(num_hidden_layers=ATTN_LAYERS)
    results = {"benchmark": "scaling_attention",
               "model": {**SMALL, "num_hidden_layers": ATTN_LAYERS, "params": config.num_params(), "dtype": "float32"},
               "points": points, "crossover_seq": crossover(points), "machine": machine()}
    desc = (f"SFT step, attention xla vs blockwise, small LLaMA-3 with {ATTN_LAYERS} layers "
            f"({config.num_params() / 1e6:.1f}M params), batch 1, CPU: {machine()['cpus']} cores")
    write_results(out, "scaling_attention", results, f"### {desc}\n\n" + attention_table(points))
    return results


def abab_sweep(seqs: list[int], rounds: int, out) -> dict:
    """`--sweeps abab` -> scaling_attention_abab.{json,md}: see `alternating`."""
    from bench.common import machine, write_results

    rows = alternating(seqs, rounds)
    results = {"benchmark": "scaling_attention_abab", "layers": ATTN_LAYERS, "rounds": rounds, "rows": rows,
               "machine": machine()}
    table = (f"### SFT step, xla vs blockwise in one process, A B A B ({rounds} rounds, medians), "
             f"small LLaMA-3 with {ATTN_LAYERS} layers, batch 1\n\n"
             "| seq | xla s/step | blockwise s/step | xla / blockwise |\n|---|---|---|---|\n")
    table += "".join(f"| {r['seq']} | {r['median']['xla']:.2f} | {r['median']['blockwise']:.2f} "
                     f"| {r['xla_over_blockwise']:.2f} |\n" for r in rows)
    write_results(out, "scaling_attention_abab", results, table)
    return results


def alternating(seqs: list[int], rounds: int) -> list[dict]:
    """xla and blockwise steps compiled in ONE process and timed alternately (A B A B ...),
    so that a shared machine's load drifts over both alike: the crossover's evidence."""
    import statistics

    from bench.train import build_petool_sft, small_config

    config = small_config(num_hidden_layers=ATTN_LAYERS)
    rows = []
    for seq in seqs:
        steps = {impl: build_petool_sft(config, micro=1, seq=seq, remat="full", attention=impl, gather=True)
                 for impl in ("xla", "blockwise")}
        times = {impl: [] for impl in steps}
        for impl, sft in steps.items():
            sft.run(1)  # warm-up
        for _ in range(rounds):
            for impl, sft in steps.items():
                times[impl].append(sft.run(1)[0])
        med = {impl: statistics.median(t) for impl, t in times.items()}
        rows.append({"seq": seq, "seconds": times, "median": med, "xla_over_blockwise": med["xla"] / med["blockwise"]})
        print(f"[bench.scaling] ABAB {seq}: xla {med['xla']:.2f} s, blockwise {med['blockwise']:.2f} s, "
              f"xla/blockwise {rows[-1]['xla_over_blockwise']:.2f}", file=sys.stderr, flush=True)
        del steps
    return rows


def crossover(points: list[dict]) -> int | None:
    """The shortest measured length from which blockwise's step is no slower than xla's at
    every longer measured length (xla points that did not fit count as slower)."""
    by = {(p["seq"], p["attention"]): p for p in points}
    seqs = sorted({p["seq"] for p in points})
    faster = []
    for s in seqs:
        x, b = by.get((s, "xla")), by.get((s, "blockwise"))
        if b is None or b.get("did_not_fit") or b.get("failed"):
            faster.append(False)
        elif x is None or x.get("did_not_fit") or x.get("failed"):
            faster.append(True)
        else:
            faster.append(b["median_seconds_per_step"] <= x["median_seconds_per_step"])
    for i, s in enumerate(seqs):
        if all(faster[i:]):
            return s
    return None


def attention_table(points: list[dict]) -> str:
    lines = ["| seq | attention | s/step | steps timed | tokens/s | XLA temporaries MiB | XLA total MiB "
             "| peak RSS MiB | compile s |", "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        mem = p.get("xla_memory", {})
        temp = f"{mem['temp_size_in_bytes'] / 2**20:,.0f}" if "temp_size_in_bytes" in mem else "-"
        total = f"{mem['total_bytes'] / 2**20:,.0f}" if "total_bytes" in mem else "-"
        if p.get("failed"):
            lines.append(f"| {p['seq']} | {p['attention']} | failed twice (see the run's log) | - | - | - | - | - | - |")
            continue
        if p.get("did_not_fit"):
            lines.append(f"| {p['seq']} | {p['attention']} | did not fit (XLA asks "
                         f"{mem.get('total_bytes', 0) / 2**30:.1f} GiB > budget) | - | - | {temp} | {total} | - | - |")
            continue
        lines.append(f"| {p['seq']} | {p['attention']} | {p['median_seconds_per_step']:.2f} "
                     f"| {len(p['seconds_per_step'])} | {p['tokens_per_s']:.0f} | {temp} | {total} "
                     f"| {p['peak_rss_bytes'] / 2**20:,.0f} | {p['compile_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
