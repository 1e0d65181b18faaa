"""`petool demo [--out DIR] [--data FILE_OR_DIR] [--smoke] [--seed N]`: the whole pipeline offline."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline offline on a CPU: synth, SFT, DPO, export, eval, report",
        description="Synthesize PEToolBench-style data from a built-in tool catalog (offline), train a "
        "byte-level BPE tokenizer and a tiny LLaMA on it, SFT then DPO, export to HF (reloaded with "
        "transformers when torch is installed), evaluate random choice, the rule baseline, the untrained, "
        "SFT and SFT+DPO models, and write report.md, report.json and plots. About 9 minutes on a "
        "2-core CPU; --smoke runs every stage with tiny sizes in about a minute.")
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
    import pathlib

    from petool_jax.demo.pipeline import Demo, prepare_out_dir
    from petool_jax.demo.plan import FULL, SMOKE
    from petool_jax.demo.report import results_table
    from petool_jax.errors import UserError

    if args.eval_limit is not None and args.eval_limit < 1:
        raise UserError(f"--eval-limit {args.eval_limit}: must be at least 1")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    if args.data is not None and not pathlib.Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or directory")
    out = pathlib.Path(args.out)
    prepare_out_dir(out, args.overwrite)
    eval_limit = args.eval_limit
    if eval_limit is None and args.data is not None and not args.smoke:
        eval_limit = 100
    demo = Demo(out, SMOKE if args.smoke else FULL, seed=args.seed, data=args.data, eval_limit=eval_limit)
    report = demo.run()
    print("\n" + results_table(report["rows"]) + "\n")
    for line in report["findings"]:
        print(line)
    print(f"\n{report['seconds']:.0f} s, peak memory {report['peak_rss_mb']:.0f} MB. "
          f"Report: {out / 'report.md'} (report.json, accuracy.png, training.png, commands.sh)")
    return 0
