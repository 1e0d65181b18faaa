"""`petool synth compare --reference FILE --data FILE [--out DIR]`: two PEToolBench entry files
side by side on the released benchmark's structure (synth/structure_stats.py) and on what the
rule baseline (eval/runners/rule.py) makes of them, split by whether the history shows the
preferred tool (petool_jax.petoolbench_structure.preferred_visible).

"attribute evidence alone" is the rule's attribute score used on its own to choose among the
entry's same-functionality candidates (the functionality given), on the entries whose history
hides the preferred tool; "uniform" is what a uniform guess among those candidates gets
(mean of 1/k). It says whether the history's other tools carry the preference.

The rule baseline lives in eval; it is imported here, in the application-facing comparison,
and never by the synthesis stages.
"""

from __future__ import annotations

from pathlib import Path

from petool_jax import petoolbench as pb
from petool_jax.petoolbench_structure import preferred_visible
from petool_jax.files import write_json, write_text
from synth.structure_stats import SETTINGS, measure


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _spread(v) -> str:
    return "-" if v is None else "-".join(f"{x:g}" for x in v)


def _diff_pct(a, b) -> str:
    return "-" if a is None or b is None else f"{100 * (b - a):+.1f}"


def rule_figures(entries: list[dict]) -> dict:
    """Per setting: the rule's Tool Acc overall / shown / hidden, and attribute evidence alone on hidden."""
    from eval.runners.rule import attribute_scores, choose

    out = {}
    for s in SETTINGS:
        if not all(pb.INSTRUCTION_KEYS[s] in e for e in entries):
            continue
        rows = {"shown": [0, 0], "hidden": [0, 0]}
        alone, uniform, hidden_groups = 0.0, 0.0, 0
        for e in entries:
            truth = e["api_call_ground_truth"]["tool_name"]
            part = "shown" if preferred_visible(e, s) else "hidden"
            rows[part][0] += choose(e, s)["tool_name"] == truth
            rows[part][1] += 1
            if part == "hidden":
                same = pb.same_func_tool_names(e)
                group = [c for c in pb.candidates(e) if c["tool_name"] in same]
                if len(group) >= 2 and truth in [c["tool_name"] for c in group]:
                    scores = attribute_scores(pb.history_of(e, s), s, group)
                    best = max(scores)
                    winners = [c["tool_name"] for c, v in zip(group, scores) if v == best]
                    alone += (truth in winners) / len(winners)  # a tie shares the credit
                    uniform += 1 / len(group)
                    hidden_groups += 1
        n = rows["shown"][1] + rows["hidden"][1]
        out[s] = {
            "n": n, "tool_acc": (rows["shown"][0] + rows["hidden"][0]) / n if n else None,
            "n_shown": rows["shown"][1], "tool_acc_shown": rows["shown"][0] / rows["shown"][1] if rows["shown"][1] else None,
            "n_hidden": rows["hidden"][1],
            "tool_acc_hidden": rows["hidden"][0] / rows["hidden"][1] if rows["hidden"][1] else None,
            "n_hidden_with_group": hidden_groups,
            "attribute_alone_hidden": alone / hidden_groups if hidden_groups else None,
            "uniform_hidden": uniform / hidden_groups if hidden_groups else None,
        }
    return out


def figures(entries: list[dict]) -> dict:
    return {"structure": measure(entries), "rule": rule_figures(entries)}


# (label, key, kind): kind "pct" = a share, "len" = (min, median, max), "range" = (min, max), "num"
STRUCTURE_ROWS = [
    ("entries", "entries", "num"),
    *[(f"a call of the preferred tool appears in the history: {s}", f"visible_{s}", "pct") for s in SETTINGS],
    *[(f"the exact ground-truth API appears in the {s} history", f"exact_api_in_{s}", "pct") for s in SETTINGS],
    ("p: a rival's call appears", "rival_in_p", "pct"),
    ("r: a same-functionality rival rated 0 is present", "r_rival_rated0", "pct"),
    ("r: a rival rated 1 is present", "r_rival_rated1", "pct"),
    ("r: the preferred tool rated 0", "r_preferred_rated0", "pct"),
    ("r: every rated-0 call is a rival's", "r_rated0_only_rivals", "pct"),
    ("c holds exactly r's calls, all rated-0 calls first", "c_is_r_rated0_first", "pct"),
    ("c's rated-1 calls are the end of p, in p's order", "c_rated1_is_p_suffix", "pct"),
    ("r: fraction of calls rated 0, mean", "r_rated0_fraction_mean", "num3"),
    ("r: fraction of calls rated 0, min-max", "r_rated0_fraction_range", "range"),
    *[(f"history length {s} (min-median-max)", f"length_{s}", "len") for s in SETTINGS],
    ("same-functionality candidates: 2", "same_func_2", "pct"),
    ("same-functionality candidates: 3", "same_func_3", "pct"),
    ("same-functionality candidates: 4+", "same_func_4plus", "pct"),
    ("distractors from the ground truth's category", "distractors_same_category", "pct"),
    ("the query text appears in the r/c history as a rated-0 call", "query_in_r_rated0", "pct"),
    ("the p history's calls are a subset of r's", "p_subset_of_r", "pct"),
    ("the ground truth is among the candidates", "truth_among_candidates", "pct"),
    ("10 candidates", "candidates_10", "pct"),
]


def _cells(kind: str, a, b) -> tuple[str, str, str]:
    if kind == "pct":
        return _pct(a), _pct(b), _diff_pct(a, b)
    if kind == "num3":
        return ("-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}",
                "-" if a is None or b is None else f"{b - a:+.3f}")
    if kind in ("len", "range"):
        fmt = (lambda v: "-" if v is None else "-".join(f"{x:.2f}" for x in v)) if kind == "range" else _spread
        return fmt(a), fmt(b), ""
    return str(a), str(b), "-" if a is None or b is None else f"{b - a:+d}"


def table_rows(ref: dict, data: dict) -> list[list[str]]:
    rows = []
    for label, key, kind in STRUCTURE_ROWS:
        rows.append([label, *_cells(kind, ref["structure"].get(key), data["structure"].get(key))])
    for s in SETTINGS:
        a, b = ref["rule"].get(s), data["rule"].get(s)
        if a is None or b is None:
            continue
        for label, key, n_key in (("all", "tool_acc", "n"), ("preferred tool shown", "tool_acc_shown", "n_shown"),
                                  ("preferred tool hidden", "tool_acc_hidden", "n_hidden")):
            rows.append([f"rule baseline Tool Acc, {s}, {label} (n {a[n_key]} / {b[n_key]})",
                         *_cells("pct", a[key], b[key])])
        rows.append([f"rule attribute evidence alone, {s}, hidden, among same-functionality candidates "
                     f"(n {a['n_hidden_with_group']} / {b['n_hidden_with_group']})",
                     *_cells("pct", a["attribute_alone_hidden"], b["attribute_alone_hidden"])])
        rows.append([f"uniform guess among them, {s}, hidden", *_cells("pct", a["uniform_hidden"], b["uniform_hidden"])])
    return rows


def markdown(ref_name: str, data_name: str, ref: dict, data: dict) -> str:
    header = ["statistic", f"reference ({ref_name})", f"data ({data_name})", "difference (points)"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
    for row in table_rows(ref, data):
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def compare_files(reference: str | Path, data: str | Path, out: str | Path | None = None) -> str:
    """The comparison as markdown; with `out`, also compare.md and compare.json there."""
    ref_entries = pb.load_entries(reference)
    data_entries = pb.load_entries(data)
    ref, dat = figures(ref_entries), figures(data_entries)
    text = ("# Structure comparison\n\n"
            "Shares are of entries (distractors: of non-group candidates); \"shown\"/\"hidden\": whether the "
            "setting's history holds a call of the preferred tool. Difference = data - reference.\n\n"
            + markdown(Path(reference).name, Path(data).name, ref, dat))
    if out is not None:
        out = Path(out)
        write_text(out / "compare.md", text)
        write_json(out / "compare.json", {"reference": str(reference), "data": str(data), "reference_figures": ref,
                                          "data_figures": dat})
    return text
