"""A scored run on disk: report.json, scored.jsonl, report.md and three PNG plots.

report.json = {"scores": {SCORER: {SETTING: {"n", "tool_acc", "param_acc",
"param_acc_given_tool", "call_acc", ...}}}, "overall", "errors", "by_history_length",
"predictions", "meta"} (see eval.scoring.build_report).
"""

from __future__ import annotations

import json
import pathlib

from petool_jax.files import write_bytes, write_json, write_text
from eval.scoring import SCORERS, history_bin_labels
from eval.taxonomy import ERROR_TYPES

SETTING_NAMES = {"p": "preferred-only", "r": "rating-integrated", "c": "chronological", "none": "no history"}
PLOTS = ("accuracy_by_setting.png", "accuracy_by_history_length.png", "error_types.png")


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def render_markdown(report: dict, title: str = "PEToolBench evaluation") -> str:
    settings = report["meta"]["settings"]
    lines = [f"# {title}", ""]
    meta = report["meta"]
    for key in ("model", "data", "predictions", "limit"):
        if meta.get(key) is not None:
            lines.append(f"- {key}: `{meta[key]}`")
    lines += ["", "## Accuracy (%)", "",
              "Tool Acc / Param Acc per setting, as in the paper's tables; every entry is in the "
              "denominator. `paper` = the authors' scorer, `strict` = candidates, schema and "
              "JSON-normalised values checked.", ""]
    header = "| scorer | " + " | ".join(f"{SETTING_NAMES.get(s, s)} Tool | Param" for s in settings) + " | all Tool | Param |"
    lines += [header, "|" + "---|" * (2 * len(settings) + 3)]
    for scorer in SCORERS:
        cells = [f"{pct(report['scores'][scorer][s]['tool_acc'])} | {pct(report['scores'][scorer][s]['param_acc'])}"
                 for s in settings]
        overall = report["overall"][scorer]
        lines.append(f"| {scorer} | " + " | ".join(cells) + f" | {pct(overall['tool_acc'])} | {pct(overall['param_acc'])} |")
    lines += ["", "Param Acc given the right tool / whole-call accuracy (%):", "",
              "| scorer | " + " | ".join(f"{s} Param given tool | call" for s in settings) + " |",
              "|" + "---|" * (2 * len(settings) + 1)]
    for scorer in SCORERS:
        cells = [f"{pct(report['scores'][scorer][s]['param_acc_given_tool'])} | {pct(report['scores'][scorer][s]['call_acc'])}"
                 for s in settings]
        lines.append(f"| {scorer} | " + " | ".join(cells) + " |")

    lines += _answered_section(report, settings)
    lines += ["", "## Errors (strict), count (% of the setting's entries)", "",
              "| error type | " + " | ".join(settings) + " | all |", "|" + "---|" * (len(settings) + 2)]
    for error in ERROR_TYPES:
        cells = []
        for s in list(settings) + ["all"]:
            n = report["scores"]["strict"][s]["n"] if s != "all" else report["overall"]["strict"]["n"]
            count = report["errors"][s][error]
            cells.append(f"{count} ({pct(count / n if n else None)})")
        lines.append(f"| {error} | " + " | ".join(cells) + " |")

    lines += ["", "## Accuracy by history length (strict Tool Acc %, n)", "",
              "| history length | " + " | ".join(settings) + " |", "|" + "---|" * (len(settings) + 1)]
    for label in history_bin_labels():
        cells = []
        for s in settings:
            b = report["by_history_length"]["strict"][s].get(label)
            cells.append(f"{pct(b['tool_acc'])} (n={b['n']})" if b else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "## Predictions", "",
              "| setting | entries | missing | failed | shortened prompts | mean prompt tokens |",
              "|---|---|---|---|---|---|"]
    for s in settings:
        p = report["predictions"][s]
        mean = "-" if p["mean_prompt_tokens"] is None else f"{p['mean_prompt_tokens']:.0f}"
        lines.append(f"| {s} | {p['n_entries']} | {p['missing']} | {p['failed']} | {p['shortened']} | {mean} |")
    lines += _truncation_section(report, settings)
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(lines)


def _truncation_section(report: dict, settings) -> list[str]:
    """What --truncation did to the prompts, per setting (eval/truncation.py)."""
    meta = report["meta"]
    model = str(meta.get("model") or "")
    if "truncation" not in meta or model == "rule" or model.startswith("openai:"):
        return []  # nothing was truncated: the rule reads the entry, an API gets the whole prompt
    mode = meta["truncation"]
    how = ("the authors' tokenizer call: a right cut, so the end of the prompt (the query, the assistant "
           "header) goes first" if mode == "authors" else
           "oldest history entries first, then the longest candidate descriptions; never the query")
    lines = ["", "## Truncation", "",
             f"Budget {meta.get('max_prompt_tokens', '-')} tokens, `--truncation {mode}`: {how}. Prompts per setting:",
             "", "| setting | cut | lost the query | lost all history | descriptions shortened | still over the budget |",
             "|---|---|---|---|---|---|"]
    for s in settings:
        p = report["predictions"][s]
        lines.append(f"| {s} | " + " | ".join(str(p.get(k, "-")) for k in
                                              ("cut", "lost_query", "lost_history", "descriptions_cut", "over_limit"))
                     + " |")
    return lines


def _answered_section(report: dict, settings) -> list[str]:
    """Accuracy with failed API calls left out of the denominator (the authors' way), shown
    beside the headline whenever a call failed or the run used --protocol authors."""
    failed = sum(report["predictions"][s]["failed"] + report["predictions"][s]["missing"] for s in settings)
    if not failed and report["meta"].get("protocol") != "authors":
        return []
    lines = ["", "## Accuracy over answered requests (%), the authors' API denominator", "",
             "Failed or missing answers are left out here (the authors' run_experiment.py skipped failed "
             "API calls); above they count as wrong. n = answered / all.", "",
             "| scorer | " + " | ".join(f"{SETTING_NAMES.get(s, s)} Tool | Param | n" for s in settings) + " |",
             "|" + "---|" * (3 * len(settings) + 1)]
    for scorer in SCORERS:
        cells = []
        for s in settings:
            m = report["scores"][scorer][s]
            cells.append(f"{pct(m.get('tool_acc_answered'))} | {pct(m.get('param_acc_answered'))} | "
                         f"{m.get('n_answered', '-')}/{m['n']}")
        lines.append(f"| {scorer} | " + " | ".join(cells) + " |")
    return lines


def _accuracy_figure(fig, ax, title: str, ylabel: str) -> bytes:
    """A percentage axis (0-100), legend and title; the figure as PNG bytes, then closed."""
    import matplotlib.pyplot as plt

    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(title)
    png = _png(fig)
    plt.close(fig)
    return png


def _png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def render_plots(report: dict) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["meta"]["settings"]
    plots = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    series = [(sc, m) for sc in SCORERS for m in ("tool_acc", "param_acc")]
    width = 0.8 / len(series)
    for k, (scorer, metric) in enumerate(series):
        values = [100 * (report["scores"][scorer][s][metric] or 0) for s in settings]
        ax.bar([i + k * width for i in range(len(settings))], values, width,
               label=f"{scorer} {metric.replace('_acc', '')}")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(settings))])
    ax.set_xticklabels([SETTING_NAMES.get(s, s) for s in settings])
    plots["accuracy_by_setting.png"] = _accuracy_figure(fig, ax, "Accuracy per setting", "accuracy (%)")

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [b for b in history_bin_labels()
              if any(b in report["by_history_length"]["strict"][s] for s in settings)]
    for s in settings:
        bins = report["by_history_length"]["strict"][s]
        xs = [i for i, label in enumerate(labels) if label in bins]
        ax.plot(xs, [100 * bins[labels[i]]["tool_acc"] for i in xs], marker="o", label=f"{s} tool (strict)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_xlabel("user history length")
    plots["accuracy_by_history_length.png"] = _accuracy_figure(fig, ax, "Accuracy vs history length",
                                                               "tool accuracy (%)")

    fig, ax = plt.subplots(figsize=(7, 4))
    left = [0] * len(settings)
    for error in ERROR_TYPES:
        counts = [report["errors"][s][error] for s in settings]
        ax.barh(settings, counts, left=left, label=error)
        left = [a + b for a, b in zip(left, counts)]
    ax.set_xlabel("wrong answers (strict)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Error types")
    plots["error_types.png"] = _png(fig)
    plt.close(fig)
    return plots


def write_report_files(out, report: dict, rows: list[dict], title: str = "PEToolBench evaluation") -> None:
    out = pathlib.Path(out)
    write_json(out / "report.json", report)
    write_text(out / "scored.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_text(out / "report.md", render_markdown(report, title))
    for name, data in render_plots(report).items():
        write_bytes(out / name, data)
