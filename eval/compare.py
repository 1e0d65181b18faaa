"""`petool eval score --compare DIR DIR ...`: several scored runs in one table."""

from __future__ import annotations

import json
import pathlib

from petool_jax.files import write_json, write_text
from eval.report import SETTING_NAMES, pct
from eval.scoring import SCORERS
from eval.taxonomy import ERROR_TYPES
from petool_jax.errors import UserError
from petool_jax.petoolbench import EVAL_SETTINGS


def load_report(run_dir) -> dict:
    path = pathlib.Path(run_dir) / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (score the run first: petool eval score)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: not valid JSON: {err.msg}") from None
    for key in ("scores", "errors", "meta"):
        if key not in report:
            raise UserError(f"{path}: missing key {key!r}; not a petool eval report")
    return report


def compare(run_dirs, out) -> dict:
    runs = []
    for run_dir in run_dirs:
        report = load_report(run_dir)
        label = report["meta"].get("model") or pathlib.Path(run_dir).name
        runs.append({"dir": str(run_dir), "label": label, "report": report})
    settings = [s for s in EVAL_SETTINGS if any(s in r["report"]["scores"]["paper"] for r in runs)]
    table = {
        "runs": [
            {
                "dir": r["dir"],
                "label": r["label"],
                "scores": {sc: {s: {k: r["report"]["scores"][sc][s][k] for k in ("n", "tool_acc", "param_acc")}
                                for s in settings if s in r["report"]["scores"][sc]} for sc in SCORERS},
                "errors": r["report"]["errors"].get("all", {}),
            }
            for r in runs
        ]
    }
    lines = ["# PEToolBench comparison", ""]
    for scorer in SCORERS:
        lines += [f"## {scorer} scorer: Tool Acc / Param Acc (%)", "",
                  "| run | " + " | ".join(f"{SETTING_NAMES[s]} Tool | Param" for s in settings) + " |",
                  "|" + "---|" * (2 * len(settings) + 1)]
        for run in table["runs"]:
            cells = []
            for s in settings:
                score = run["scores"][scorer].get(s)
                cells.append(f"{pct(score['tool_acc'])} | {pct(score['param_acc'])}" if score else "- | -")
            lines.append(f"| {run['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Wrong answers by type (strict, all settings)", "",
              "| run | " + " | ".join(ERROR_TYPES) + " |", "|" + "---|" * (len(ERROR_TYPES) + 1)]
    for run in table["runs"]:
        lines.append(f"| {run['label']} | " + " | ".join(str(run["errors"].get(t, 0)) for t in ERROR_TYPES) + " |")
    markdown = "\n".join(lines) + "\n"
    out = pathlib.Path(out)
    write_json(out / "compare.json", table)
    write_text(out / "compare.md", markdown)
    table["markdown"] = markdown
    return table
