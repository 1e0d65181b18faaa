"""`petool synth --config FILE [key=value ...]`: build PEToolBench-style data from a tool pool."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="synthesize PEToolBench-style train/test/SFT/DPO data from a tool pool",
        description="Synthesize personalized tool-use data (PEToolBench style): tool understanding, "
        "functionality groups, user preferences, instructions, three kinds of history, instances, "
        "quality checks, splits, SFT/DPO files and stats.md. llm.model=none runs offline from a "
        "harvested PEToolBench pool.",
    )
    parser.add_argument("--config", required=True, help="YAML config (see configs/synth/petoolbench.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. num_users=50 llm.model=none")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from petool_jax.cli import UserError
    from petool_jax.llm_client import LLMConfigError
    from synth.config import load_config
    from synth.pipeline import run_pipeline

    config = load_config(args.config, args.overrides)
    try:
        summary = run_pipeline(config)
    except LLMConfigError as err:
        raise UserError(f"llm.model={config['llm']['model']}: {err} (or run offline with llm.model=none)") from None
    print(json.dumps({k: summary[k] for k in ("output_dir", "train", "test", "users", "dropped by checks",
                                              "llm failures", "stages", "total seconds")}, indent=2))
    return 0
