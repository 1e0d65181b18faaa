"""Score predictions of a run: both scorers per setting, error taxonomy, history-length bins.

Every (entry, setting) asked for is in every headline denominator: a missing prediction or
a failed request is wrong on both scorers, never dropped. The authors' API denominator
(failed calls left out) is reported beside it: n_answered, tool_acc_answered,
param_acc_answered.
"""

from __future__ import annotations

from collections import Counter

from eval.scoring_paper import score_paper
from eval.scoring_strict import score_strict
from eval.taxonomy import ERROR_TYPES, classify
from petool_jax import petoolbench as pb

SCORERS = ("paper", "strict")
TRUNCATION_FLAGS = ("cut", "lost_query", "lost_history", "descriptions_cut", "over_limit")
# Bins of the entry's `history_length` (the user's whole history; the prompt shows <= 20).
HISTORY_BIN_EDGES = (0, 20, 40, 60, 80, 100)


def history_bin(length: int) -> str:
    for low, high in zip(HISTORY_BIN_EDGES, HISTORY_BIN_EDGES[1:]):
        if low <= length < high:
            return f"{low}-{high - 1}"
    return f"{HISTORY_BIN_EDGES[-1]}+"


def history_bin_labels() -> list[str]:
    return [history_bin(low) for low in HISTORY_BIN_EDGES]


def _history_length(entry: dict, setting: str) -> int:
    value = entry.get("history_length")
    if isinstance(value, (int, str)) and str(value).isdigit():
        return int(value)
    return len(pb.history_of(entry, setting))


def score_rows(entries: list[dict], predictions: dict[tuple, dict], settings) -> list[dict]:
    """One scored row per (entry, setting), in setting-major order."""
    rows = []
    for setting in settings:
        for entry in entries:
            truth = entry["api_call_ground_truth"]
            prediction = predictions.get((entry["entry_id"], setting))
            usable = prediction is not None and prediction.get("ok", True) and prediction["response"] is not None
            response = prediction["response"] if usable else None
            paper = score_paper(response, truth)
            strict = score_strict(response, truth, pb.candidates(entry)) if usable else None
            error = classify(strict, truth["tool_name"], pb.same_func_tool_names(entry))
            rows.append({
                "entry_id": entry["entry_id"],
                "setting": setting,
                "history_bin": history_bin(_history_length(entry, setting)),
                "paper_tool": paper.tool_ok,
                "paper_param": paper.param_ok,
                "strict_tool": bool(strict and strict.tool_ok),
                "strict_param": bool(strict and strict.param_ok),
                "error_type": error,
                "predicted_tool": strict.call.tool_name if strict and strict.call else None,
                "missing": prediction is None,
                "failed": prediction is not None and not usable,
                "shortened": bool(prediction and prediction.get("shortened")),
                # What --truncation did (eval/truncation.py); absent in older predictions.
                **{k: bool(prediction and prediction.get(k)) for k in TRUNCATION_FLAGS},
                "prompt_tokens": prediction.get("prompt_tokens") if prediction else None,
            })
    return rows


def _accuracy(rows: list[dict], scorer: str) -> dict:
    n = len(rows)
    tool = sum(r[f"{scorer}_tool"] for r in rows)
    param = sum(r[f"{scorer}_param"] for r in rows)
    both = sum(r[f"{scorer}_tool"] and r[f"{scorer}_param"] for r in rows)
    # The authors' API denominator: failed calls (and missing predictions) left out.
    answered = n - sum(r["failed"] or r["missing"] for r in rows)
    return {
        "n_answered": answered,
        "tool_acc_answered": tool / answered if answered else None,
        "param_acc_answered": param / answered if answered else None,
        "n": n,
        "tool_acc": tool / n if n else None,
        "param_acc": param / n if n else None,
        # Of the answers with the right tool, how many also have the right parameters.
        "param_acc_given_tool": both / tool if tool else None,
        "call_acc": both / n if n else None,
        "tool_correct": tool,
        "param_correct": param,
        "call_correct": both,
    }


def build_report(entries: list[dict], predictions: dict[tuple, dict], settings, meta=None) -> tuple[dict, list[dict]]:
    """(report.json content, scored rows)."""
    rows = score_rows(entries, predictions, settings)
    by_setting = {s: [r for r in rows if r["setting"] == s] for s in settings}
    report = {
        "scores": {sc: {s: _accuracy(by_setting[s], sc) for s in settings} for sc in SCORERS},
        "overall": {sc: _accuracy(rows, sc) for sc in SCORERS},
        "errors": {},
        "by_history_length": {},
        "predictions": {},
        "meta": dict(meta or {}),
    }
    for s in list(settings) + ["all"]:
        subset = rows if s == "all" else by_setting[s]
        counts = Counter(r["error_type"] for r in subset if r["error_type"])
        report["errors"][s] = {t: counts.get(t, 0) for t in ERROR_TYPES}
    for sc in SCORERS:
        report["by_history_length"][sc] = {}
        for s in settings:
            bins = {}
            for label in history_bin_labels():
                in_bin = [r for r in by_setting[s] if r["history_bin"] == label]
                if in_bin:
                    acc = _accuracy(in_bin, sc)
                    bins[label] = {k: acc[k] for k in ("n", "tool_acc", "param_acc")}
            report["by_history_length"][sc][s] = bins
    for s in settings:
        subset = by_setting[s]
        tokens = [r["prompt_tokens"] for r in subset if isinstance(r["prompt_tokens"], int)]
        report["predictions"][s] = {
            "n_entries": len(subset),
            "missing": sum(r["missing"] for r in subset),
            "failed": sum(r["failed"] for r in subset),
            "shortened": sum(r["shortened"] for r in subset),
            **{k: sum(r[k] for r in subset) for k in TRUNCATION_FLAGS},
            "mean_prompt_tokens": sum(tokens) / len(tokens) if tokens else None,
            "max_prompt_tokens": max(tokens) if tokens else None,
        }
    report["meta"].update({"settings": list(settings), "n_entries": len(entries)})
    return report, rows
