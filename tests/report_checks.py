"""Independent recomputation of what an eval report states, for the report-content tests:
Tool/Param Acc with the authors' own scorer, tool-level error types straight from the
candidates and `apis_same_func`, the report.md table rows, and the numbers drawn in the PNGs
(read back from the matplotlib figures before they are rasterised)."""

from __future__ import annotations

import json

from petool_jax import petoolbench as pb
from test_eval_scoring_paper import authors_calculate_scores


def authors_scores(entries: list[dict], rows: dict, setting: str) -> tuple[float, float]:
    """(Tool Acc, Param Acc) of one setting by the authors' calculate_scores; a missing or
    failed prediction has no response (counts as wrong, stays in the denominator)."""
    results = []
    for entry in entries:
        row = rows.get((entry["entry_id"], setting)) or {}
        results.append({"response": row.get("response"), "api_call_ground_truth": entry["api_call_ground_truth"]})
    return authors_calculate_scores(results)


def tool_error_counts(entries: list[dict], rows: dict, settings) -> dict[str, int]:
    """For answers that are one JSON call with the wrong tool: a non-candidate tool is a
    hallucination, a functionally equivalent tool (apis_same_func) a preference mismatch,
    another candidate a functionality mismatch."""
    counts = {"tool_hallucination": 0, "preference_mismatch": 0, "functionality_mismatch": 0}
    for entry in entries:
        truth = entry["api_call_ground_truth"]["tool_name"]
        names = {c["tool_name"] for c in pb.candidates(entry)}
        for setting in settings:
            call = json.loads(rows[(entry["entry_id"], setting)]["response"])
            if call["tool_name"] == truth:
                continue
            if call["tool_name"] not in names:
                counts["tool_hallucination"] += 1
            elif call["tool_name"] in pb.same_func_tool_names(entry):
                counts["preference_mismatch"] += 1
            else:
                counts["functionality_mismatch"] += 1
    return counts


def markdown_accuracy_row(scorer: str, per_setting: list[tuple[float, float]], overall: tuple[float, float]) -> str:
    cells = [f"{100 * t:.1f} | {100 * p:.1f}" for t, p in per_setting]
    return f"| {scorer} | " + " | ".join(cells) + f" | {100 * overall[0]:.1f} | {100 * overall[1]:.1f} |"


class PlotCapture:
    """Replaces eval.report._png: keeps what each figure draws, then renders it as usual."""

    def __init__(self, monkeypatch):
        import eval.report as report

        self.figures: list[dict] = []
        original = report._png

        def capture(fig):
            ax = fig.axes[0]
            self.figures.append({
                "title": ax.get_title(),
                "bars": [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches],
                "lines": {line.get_label(): list(zip(line.get_xdata(), line.get_ydata())) for line in ax.lines},
                "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
            })
            return original(fig)

        monkeypatch.setattr(report, "_png", capture)

    def by_title(self, title: str) -> dict:
        return next(f for f in self.figures if f["title"] == title)
