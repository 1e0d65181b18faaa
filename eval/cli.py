"""`petool eval run` and `petool eval score` (with `--compare`)."""

from __future__ import annotations

import argparse
import pathlib

from petool_jax.errors import UserError

# The authors' API calls (run_experiment.py interact_openai): the openai client's own
# defaults (timeout 10 s set by them, 2 retries by the library), no temperature, no max_tokens.
PROTOCOL_DEFAULTS = {"default": {}, "authors": {"timeout_s": 10.0, "max_retries": 2}}


def parse_settings(text: str) -> list[str]:
    from petool_jax.petoolbench import EVAL_SETTINGS

    settings = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in settings if s not in EVAL_SETTINGS]
    if bad or not settings:
        raise UserError(f"--settings {text!r}: use a comma list of {','.join(EVAL_SETTINGS)} "
                        "(none = the authors' no-history prompt)")
    return list(dict.fromkeys(settings))


def _resolved(args) -> dict:
    """eval.options.run_defaults() <- the protocol's defaults <- --config <- flags, names and
    types checked against the defaults (petool_jax.config_files)."""
    from eval.options import PROTOCOLS, TRUNCATIONS, check_sampling, run_defaults
    from petool_jax import config_files

    defaults = run_defaults()
    from_file = config_files.read_yaml_mapping(args.config) if args.config else {}
    if isinstance(from_file.get("settings"), list):
        from_file["settings"] = ",".join(from_file["settings"])
    flags = {k: v for k, v in vars(args).items() if k in defaults and v is not None}
    protocol = flags.get("protocol", from_file.get("protocol", defaults["protocol"]))
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    values = dict(defaults)
    for layer, source in ((PROTOCOL_DEFAULTS[protocol], f"--protocol {protocol}"),
                          (from_file, str(args.config)), (flags, "command line")):
        config_files.merge(values, layer, source)
    for key in ("model", "data"):
        if not values[key]:
            raise UserError(f"--{key} is required (as a flag or in --config)")
    if values["truncation"] not in TRUNCATIONS:
        raise UserError(f"truncation {values['truncation']!r}: one of {', '.join(TRUNCATIONS)}")
    if protocol == "authors" and not str(values["model"]).startswith("openai:"):
        raise UserError("--protocol authors is the authors' API protocol (openai:NAME models); for a model "
                        "directory, --truncation authors reproduces their prompts")
    try:
        check_sampling(values["temperature"], values["top_p"])
    except ValueError as err:
        raise UserError(str(err)) from None
    return values


def run_command(args) -> int:
    from eval.options import RunOptions
    from eval.run import run_eval

    if args.api_key is not None:
        # On the command line a key lands in the process list and the shell history.
        raise UserError("--api-key is not accepted (a key on the command line is visible in the process "
                        "list and shell history): set OPENAI_API_KEY in the environment instead")
    v = _resolved(args)
    out = pathlib.Path(args.out)
    model = v["model"]
    if not (model == "rule" or model.startswith("openai:")):
        model = str(pathlib.Path(model).resolve())
    fields = {k: v[k] for k in RunOptions.__dataclass_fields__ if k in v}
    options = RunOptions(**{**fields, "model": model, "data": str(pathlib.Path(v["data"]).resolve()),
                            "api_key": None,  # the client reads OPENAI_API_KEY from the environment; never stored
                            "cache_dir": None if args.no_cache else str(out / "api_cache")})
    settings = parse_settings(v["settings"]) if v["settings"] else None
    report = run_eval(options, out, settings, v["limit"], retry_failed=args.retry_failed)
    _print_summary(report, out)
    return 0


def score_command(args) -> int:
    if args.compare:
        from eval.compare import compare

        print(compare(args.compare, args.out)["markdown"], end="")
        return 0
    if not args.data or not args.predictions:
        raise UserError("eval score needs --data and --predictions (or --compare DIR DIR ...)")
    from eval.predictions import load_predictions
    from eval.report import write_report_files
    from eval.scoring import build_report
    from petool_jax import petoolbench as pb

    settings = parse_settings(args.settings) if args.settings else None
    entries = pb.load_entries(args.data, settings)
    predictions = load_predictions(args.predictions, {e["entry_id"] for e in entries})
    available = pb.available_settings(entries) + (pb.NO_HISTORY,)  # `none` needs only the candidates
    present = {s for _, s in predictions}
    if settings is None:
        settings = [s for s in available if s in present] or list(available)
    stray = sorted(present - set(available))
    if stray:
        raise UserError(f"{args.predictions}: predictions for setting {stray[0]!r}, which {args.data} does not hold")
    selected = entries[:args.limit] if args.limit else entries
    meta = {"data": str(args.data), "predictions": str(args.predictions), "limit": args.limit,
            "model": args.model_name}
    report, rows = build_report(selected, predictions, settings, meta)
    write_report_files(args.out, report, rows)
    _print_summary(report, pathlib.Path(args.out))
    return 0


def _print_summary(report: dict, out: pathlib.Path) -> None:
    from eval.report import pct

    for scorer, by_setting in report["scores"].items():
        parts = [f"{s}: tool {pct(m['tool_acc'])} param {pct(m['param_acc'])}" for s, m in by_setting.items()]
        print(f"{scorer:6s} " + " | ".join(parts))
    print(f"report: {out / 'report.md'}")


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model on PEToolBench (run, score, compare)")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    run = commands.add_parser("run", help="generate predictions for every entry and setting, then score them",
                              description="Resumable: rerunning the same command skips what is done.")
    run.add_argument("--model", help="rule | openai:NAME | a model directory (HF or petool) or a training "
                                      "checkpoint RUN_DIR/checkpoints/N")
    run.add_argument("--data", help="user_entries_test.json(.gz) or user_entries_test_{p,r,c}.json")
    run.add_argument("--out", required=True, help="run directory (predictions.jsonl, report.*)")
    run.add_argument("--config", help="YAML of defaults for these options (configs/eval/)")
    run.add_argument("--settings", help="comma list of p,r,c,none (default: every setting the data holds; "
                                         "none = the authors' no-history prompt)")
    run.add_argument("--limit", type=int, help="only the first N entries")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--max-prompt-tokens", type=int,
                     help="prompt token budget (default 4000, the authors')")
    run.add_argument("--truncation", choices=("history", "authors"),
                     help="history (default): oldest history entries, then the longest candidate descriptions "
                          "go; authors: their tokenizer call (second BOS, right cut: long prompts lose the query)")
    run.add_argument("--protocol", choices=("default", "authors"),
                     help="API models: authors = their request (no temperature, no max_tokens, 10 s timeout), "
                          "NFKC-normalised replies, failed calls out of the denominator (the report shows both)")
    run.add_argument("--max-new-tokens", type=int)
    run.add_argument("--temperature", type=float, help="0 = greedy (default); must be >= 0")
    run.add_argument("--top-p", type=float, help="in (0, 1]; 1 (default) = no nucleus cut")
    run.add_argument("--seed", type=int)
    run.add_argument("--prompt-format", choices=("system_user", "alpaca_user"))
    run.add_argument("--dtype", help="JAX models: float32 | bfloat16")
    run.add_argument("--base-url", help="API models: default OPENAI_BASE_URL; the key is read from "
                                         "OPENAI_API_KEY (environment only)")
    run.add_argument("--api-key", help=argparse.SUPPRESS)  # refused: keys come from OPENAI_API_KEY only
    run.add_argument("--concurrency", type=int, help="API models: requests in flight")
    run.add_argument("--max-retries", type=int)
    run.add_argument("--timeout", dest="timeout_s", type=float, help="API models: seconds per request")
    run.add_argument("--backoff-base", dest="backoff_base_s", type=float,
                     help="API models: first retry waits up to this many seconds")
    run.add_argument("--no-cache", action="store_true", help="API models: no response cache in OUT/api_cache")
    run.add_argument("--retry-failed", action="store_true", help="resend requests recorded as failed")
    run.set_defaults(func=run_command)

    score = commands.add_parser("score", help="score predictions (paper + strict), write report.json/.md and plots",
                                description="With --compare, put several scored run directories in one table.")
    score.add_argument("--data")
    score.add_argument("--predictions")
    score.add_argument("--out", required=True)
    score.add_argument("--settings", help="comma list of p,r,c,none (default: the settings present in the predictions)")
    score.add_argument("--limit", type=int, help="only the first N entries (as in the run)")
    score.add_argument("--model-name", help="a label for the report")
    score.add_argument("--compare", nargs="+", metavar="DIR", help="scored run directories to put side by side")
    score.set_defaults(func=score_command)
