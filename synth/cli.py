"""`petool synth --config FILE [key=value ...]`: build PEToolBench-style data from a tool pool.
`petool synth compare --reference FILE --data FILE [--out DIR]`: two entry files side by side
on the released benchmark's structure and on the rule baseline (synth/compare.py)."""

from __future__ import annotations

import argparse

USAGE = ("petool synth --config FILE [key=value ...]\n"
         "       petool synth compare --reference FILE --data FILE [--out DIR]")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        usage=USAGE,
        help="synthesize PEToolBench-style train/test/SFT/DPO data from a tool pool; `synth compare` "
        "checks data against a reference file",
        description="Synthesize personalized tool-use data (PEToolBench style): tool understanding, "
        "functionality groups, user preferences, instructions, three kinds of history, instances, "
        "quality checks, splits, SFT/DPO files and stats.md. llm.model=none runs offline from a "
        "harvested PEToolBench pool. `petool synth compare --reference FILE --data FILE` prints the "
        "released benchmark's structure statistics and the rule baseline's Tool Acc for both files.",
    )
    parser.add_argument("--config", help="YAML config (see configs/synth/petoolbench.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. num_users=50 llm.model=none; or the word `compare`")
    parser.add_argument("--reference", help="compare: the reference entry file (e.g. a released test file)")
    parser.add_argument("--data", help="compare: the entry file to check against it (e.g. user_entries_test.json)")
    parser.add_argument("--out", help="compare: also write compare.md and compare.json into this folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petool_jax.errors import UserError

    if args.overrides[:1] == ["compare"]:
        if args.config or args.overrides[1:]:
            raise UserError("compare takes --reference FILE --data FILE [--out DIR], no --config or key=value")
        if not args.reference or not args.data:
            raise UserError("compare needs --reference FILE and --data FILE")
        from synth.compare import compare_files

        print(compare_files(args.reference, args.data, args.out), end="")
        return 0
    if args.reference or args.data or args.out:
        raise UserError("--reference/--data/--out belong to `petool synth compare`")
    if not args.config:
        raise UserError(f"the following arguments are required: --config (usage: {USAGE})")
    return _synthesize(args)


def _synthesize(args: argparse.Namespace) -> int:
    import json

    from petool_jax.errors import UserError
    from petool_jax.llm_replies import LLMConfigError
    from synth.config import load_synth_config
    from synth.pipeline import run_pipeline

    config = load_synth_config(args.config, args.overrides)
    try:
        summary = run_pipeline(config)
    except LLMConfigError as err:
        raise UserError(f"llm.model={config['llm']['model']}: {err} (or run offline with llm.model=none)") from None
    print(json.dumps({k: summary[k] for k in ("output_dir", "train", "test", "users", "dropped by checks",
                                              "llm failures", "stages", "total seconds")}, indent=2))
    return 0
