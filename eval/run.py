"""`petool eval run`: predictions for every (entry, setting), written batch by batch, then scored.

Resumable: rows already in OUT/predictions.jsonl are skipped, a half-written last line
from a killed run is cut, and OUT/run.json pins the model, data and generation settings so
a rerun with different ones cannot mix answers into the same file.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from petool_jax.files import write_json
from eval.options import LATER_KEY_DEFAULTS, RunOptions
from eval.predictions import PredictionWriter, cut_partial_tail, load_predictions, rewrite_without
from eval.report import write_report_files
from eval.runners.select import make_runner
from eval.runners.task import EvalTask
from eval.scoring import build_report
from petool_jax import petoolbench as pb
from petool_jax.errors import UserError

PREDICTIONS = "predictions.jsonl"
RUN_RECORD = "run.json"


def _check_run_record(out: pathlib.Path, options: RunOptions) -> None:
    path = out / RUN_RECORD
    wanted = options.resume_record()
    if path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON: {err.msg}") from None
        changed = [k for k in wanted if recorded.get(k, LATER_KEY_DEFAULTS.get(k)) != wanted[k]]
        if changed:
            details = ", ".join(f"{k}: {recorded.get(k)!r} -> {wanted[k]!r}" for k in changed)
            raise UserError(f"{out} holds a run with other settings ({details}); use another --out")
    else:
        write_json(path, wanted)


def run_eval(options: RunOptions, out, settings, limit=None, retry_failed=False, runner=None) -> dict:
    """Run, write, score; returns the report. `runner` overrides --model (tests, plug-ins)."""
    out = pathlib.Path(out)
    entries = pb.load_entries(options.data, settings)
    settings = list(settings or pb.available_settings(entries))
    selected = entries[:limit] if limit else entries
    out.mkdir(parents=True, exist_ok=True)
    _check_run_record(out, options)
    path = out / PREDICTIONS
    if cut_partial_tail(path):
        print(f"[eval] {path}: dropped a half-written last line from an interrupted run", file=sys.stderr)
    if retry_failed and path.exists():
        n = rewrite_without(path, lambda row: not row.get("ok", True) or row.get("response") is None)
        print(f"[eval] retrying {n} failed predictions", file=sys.stderr)
    entry_ids = {e["entry_id"] for e in entries}
    done = load_predictions(path, entry_ids) if path.exists() else {}
    tasks = [EvalTask(e, s) for s in settings for e in selected if (e["entry_id"], s) not in done]
    total = len(selected) * len(settings)
    print(f"[eval] {total - len(tasks)}/{total} predictions already done; {len(tasks)} to go", file=sys.stderr)
    if tasks:
        runner = runner or make_runner(options.model, options)
        started, written = time.monotonic(), 0
        with PredictionWriter(path) as writer:
            batches = runner.plan(tasks, options.batch_size)
            # A runner may overlap batches (run_batches: the JAX model computes the next one
            # while a batch's rows are written); each batch is still written when it is done.
            results = (runner.run_batches(batches) if hasattr(runner, "run_batches")
                       else (runner.run_batch(batch) for batch in batches))
            for rows in results:
                writer.write_batch(rows)
                written += len(rows)
                if options.progress:
                    rate = written / max(time.monotonic() - started, 1e-9)
                    print(f"[eval] {written}/{len(tasks)} ({rate:.1f}/s)", file=sys.stderr)
        if hasattr(runner, "stats"):
            write_json(out / "api_stats.json", runner.stats())
    predictions = load_predictions(path, entry_ids)
    meta = {"model": options.model, "data": str(options.data), "predictions": str(path), "limit": limit,
            "truncation": options.truncation, "protocol": options.protocol,
            "max_prompt_tokens": options.max_prompt_tokens}
    report, rows = build_report(selected, predictions, settings, meta)
    write_report_files(out, report, rows)
    return report
