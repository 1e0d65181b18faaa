"""The `petool` command.

Each subcommand lives in its own module exposing `register(subparsers)`; that module
adds its parser and sets `func`. Modules import jax and friends inside their run
functions, so `petool --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from petool_jax.errors import UserError  # re-exported: subcommands raise it

# (module, ...) in the order they appear in `petool --help`.
SUBCOMMAND_MODULES = (
    "petool_jax.app.commands.convert",
    "petool_jax.app.commands.models",
    "petool_jax.app.commands.export",
    "petool_jax.app.commands.generate",
    "petool_jax.app.commands.init_model",
    "petool_jax.app.commands.train",
    "eval.cli",
    "synth.cli",
    "petool_jax.app.commands.demo",
    "petool_jax.app.commands.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petool",
        description="Personalized tool learning (PEToolLLM) in JAX: "
        "convert -> train sft -> train dpo -> export -> eval; synth feeds sft/dpo/eval.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as err:
        print(f"petool {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
