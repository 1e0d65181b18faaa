"""What the demo's (and the experiment's) numbers mean: standard errors, the visible/hidden
split, the provider choice, the targets of issue 15 and DPO's own diagnostics.

Everything is computed from eval's per-answer file (`eval/<model>/scored.jsonl`: one row per
entry and setting with `paper_tool`, `paper_param`, `predicted_tool`) and the test entries,
so a figure here always matches the `paper` scorer's accuracy in eval's report.json.

- Standard error of an accuracy p over n answers: sqrt(p (1 - p) / n) (binomial).
- Visible / hidden: whether the setting's history holds a call of the preferred tool
  (`petoolbench_structure.preferred_visible`); hidden entries need the preference inferred
  (in r/c also by elimination: the rival of the query's group is there, rated 0).
- Provider choice: among answers calling an API of the right functionality (a candidate
  functionally equivalent to the truth), the share calling the preferred one, next to the
  uniform guess among those equivalent candidates on the same answers.
"""

from __future__ import annotations

import json
import math
import pathlib

from petool_jax import petoolbench as pb
from petool_jax.petoolbench import SETTINGS
from petool_jax.petoolbench_structure import preferred_visible


def se(p: float | None, n: int) -> float | None:
    """Binomial standard error of a fraction p over n answers."""
    if p is None or n <= 0:
        return None
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def _share(flags: list[bool]) -> dict:
    n = len(flags)
    p = sum(flags) / n if n else None
    return {"n": n, "acc": p, "se": se(p, n)}


def read_scored(eval_dir: pathlib.Path) -> list[dict]:
    path = pathlib.Path(eval_dir) / "scored.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def equivalent_candidates(entry: dict) -> set[str]:
    """Candidates functionally equivalent to the ground truth (the truth included)."""
    names = {c["tool_name"] for c in pb.candidates(entry)}
    return (pb.same_func_tool_names(entry) | {entry["api_call_ground_truth"]["tool_name"]}) & names


def setting_stats(scored: list[dict], entries: dict, setting: str) -> dict:
    """Tool/Param Acc with standard errors, the visible/hidden split and the provider choice."""
    rows = [r for r in scored if r["setting"] == setting]
    tool = [bool(r["paper_tool"]) for r in rows]
    param = [bool(r["paper_param"]) for r in rows]
    visible = [preferred_visible(entries[r["entry_id"]], setting) for r in rows]
    right_func, preferred, guess = [], [], []
    for r in rows:
        entry = entries[r["entry_id"]]
        same = equivalent_candidates(entry)
        if r.get("predicted_tool") in same:
            right_func.append(True)
            preferred.append(r["predicted_tool"] == entry["api_call_ground_truth"]["tool_name"])
            guess.append(1.0 / len(same))
        else:
            right_func.append(False)
    t, p = _share(tool), _share(param)
    provider = _share(preferred)
    provider["uniform_guess"] = sum(guess) / len(guess) if guess else None
    provider["right_functionality"] = _share(right_func)
    return {
        "n": len(rows), "tool_acc": t["acc"], "tool_acc_se": t["se"], "param_acc": p["acc"], "param_acc_se": p["se"],
        "visible": _share([x for x, v in zip(tool, visible) if v]),
        "hidden": _share([x for x, v in zip(tool, visible) if not v]),
        "provider": provider,
    }


def model_stats(eval_dir: pathlib.Path, entries: list[dict]) -> dict[str, dict]:
    by_id = {e["entry_id"]: e for e in entries}
    scored = read_scored(eval_dir)
    return {s: setting_stats(scored, by_id, s) for s in SETTINGS if any(r["setting"] == s for r in scored)}


def mean_over_settings(stats: dict[str, dict], key: str = "tool_acc") -> tuple[float | None, float | None]:
    """Mean of a per-setting accuracy and its standard error (settings treated as independent)."""
    values = [(stats[s][key], stats[s][f"{key}_se"]) for s in SETTINGS if s in stats and stats[s][key] is not None]
    if not values:
        return None, None
    mean = sum(v for v, _ in values) / len(values)
    return mean, math.sqrt(sum(e * e for _, e in values)) / len(values)


def targets(stats: dict[str, dict[str, dict]], random_expected: float | None = None) -> list[dict]:
    """The issue's targets, each with the measured value, the bar and whether it is met.

    "2x random" uses random choice's EXPECTED Tool Acc on the evaluated entries (the mean of
    1 / number of candidates; the measured random row beside it is one noisy draw of it)."""
    out = []
    final, random, untrained, sft = (stats.get(m) for m in ("sft+dpo", "random", "untrained", "sft"))
    if not final:
        return out
    for s in SETTINGS:
        if s not in final:
            continue
        chance = random_expected if random_expected is not None else (random or {}).get(s, {}).get("tool_acc")
        if chance is not None:
            out.append({"target": f"sft+dpo Tool Acc >= 2x random (expected {100 * chance:.1f}%) ({s})",
                        "value": final[s]["tool_acc"], "bar": 2 * chance, "met": final[s]["tool_acc"] >= 2 * chance})
    mean_final, _ = mean_over_settings(final)
    if untrained:
        mean_untrained, _ = mean_over_settings(untrained)
        out.append({"target": "sft+dpo mean Tool Acc >= untrained + 20 points", "value": mean_final,
                    "bar": mean_untrained + 0.20, "met": mean_final >= mean_untrained + 0.20})
    for s in ("r", "c"):
        if s in final and final[s]["provider"]["acc"] is not None:
            prov = final[s]["provider"]
            bar = prov["uniform_guess"] + 0.25
            out.append({"target": f"sft+dpo preferred provider among right-functionality answers >= uniform guess "
                        f"+ 25 points ({s})", "value": prov["acc"], "bar": bar, "met": prov["acc"] >= bar})
    if sft:
        mean_sft, se_sft = mean_over_settings(sft)
        _, se_final = mean_over_settings(final)
        one_se = math.sqrt(se_sft ** 2 + se_final ** 2)
        out.append({"target": "sft+dpo mean Tool Acc not below sft by more than one standard error",
                    "value": mean_final, "bar": mean_sft - one_se, "met": mean_final >= mean_sft - one_se})
    return out


def dpo_diagnostics(metrics_path: pathlib.Path) -> dict | None:
    """DPO's own measurements, first and last logged step: rewards (beta x log-ratio against the
    reference) of chosen and rejected answers, their margin and how often chosen wins, and the
    policy's log-probs where the trainer logs them."""
    path = pathlib.Path(metrics_path)
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return None
    keys = [k for k in rows[0] if k.startswith(("rewards/", "logps/", "logits/")) or k == "loss"]
    pick = lambda row: {k: row[k] for k in keys if k in row}  # noqa: E731
    tail = rows[-max(1, len(rows) // 4):]  # the last quarter of the run, averaged: less noisy than one step
    last_quarter = {k: sum(r[k] for r in tail if k in r) / len(tail) for k in keys}
    return {"steps": len(rows), "first": pick(rows[0]), "last": pick(rows[-1]), "last_quarter_mean": last_quarter}
