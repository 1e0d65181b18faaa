"""`petool experiment --config FILE [--plan cpu|full] [--limit N] [--data FILE] [--out DIR] [key=value ...]`:
the PEToolLLM recipe on a real PEToolBench release file (see petool_jax/app/experiment/).

Split a release file (the authors' user_entries_test.json format) by entry into a pool half and an
evaluation half, synthesize SFT and DPO data (the release's structure) from the pool half's tools,
fine-tune the config's model (LoRA SFT then DPO), export it, evaluate random choice, the rule
baseline, the untrained model, SFT and SFT+DPO on the evaluation half in every setting (paper
scorer) and write report.md/report.json/plots beside the paper's published rows. Every step's
command is in OUT/commands.sh. Example: petool experiment --config configs/experiments/petoolbench-
smollm2.yaml
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment", help="the whole recipe on a real PEToolBench release: split, synth, SFT, DPO, eval, report",
        description=__doc__)
    p.add_argument("--config", required=True, help="experiment YAML (configs/experiments/)")
    p.add_argument("--plan", default=None, help="a plan of the config (cpu: minutes on a CPU; full: the paper's "
                   "sizes for a GPU/TPU host); default: the config's `plan`")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate the first N entries of the evaluation half per setting (default: the plan's)")
    p.add_argument("--data", default=None, help="release file (default: the config's `data`)")
    p.add_argument("--out", default=None, help="output directory (default: the config's `output_dir`)")
    p.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. plans.cpu.sft_steps=4")
    p.set_defaults(func=run)


def run(args) -> int:
    import pathlib
    import shlex

    from petool_jax.app.demo.pipeline import prepare_out_dir
    from petool_jax.app.demo.report import results_table
    from petool_jax.errors import UserError
    from petool_jax.app.experiment.config import load_experiment_config, plan_of
    from petool_jax.app.experiment.pipeline import Experiment

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    config = load_experiment_config(args.config, args.overrides)
    if args.data:
        config["data"] = args.data
    plan = plan_of(config, args.plan)
    out = pathlib.Path(args.out or config["output_dir"])
    if not pathlib.Path(config["data"]).is_file():
        raise UserError(f"data {config['data']}: no such release file (set --data or the config's `data`)")
    prepare_out_dir(out, args.overwrite)
    experiment = Experiment(out, config, plan, limit=args.limit, config_path=args.config)
    argv = ["petool", "experiment", "--config", args.config, "--plan", args.plan or config["plan"]]
    argv += (["--limit", str(args.limit)] if args.limit else []) + (["--data", args.data] if args.data else [])
    argv += ["--out", str(out), *args.overrides]
    experiment.commands.append(f"# this run: {shlex.join(argv)}")
    report = experiment.run()
    print("\n" + results_table(report["rows"]) + "\n")
    print("\n".join(report.get("extra_markdown") or []))
    print(f"\n{report['seconds']:.0f} s, peak memory {report['peak_rss_mb']:.0f} MB. Report: {out / 'report.md'}")
    return 0
