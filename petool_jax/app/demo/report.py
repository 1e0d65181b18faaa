"""The demo's report: report.json, report.md, accuracy.png, training.png and commands.sh.

report.json = {"rows": [{"model", "setting", "tool_acc", "tool_acc_se", "param_acc", "param_acc_se",
"n", "visible": {"n", "acc", "se"}, "hidden": {...}, "provider": {"n", "acc", "se", "uniform_guess",
"right_functionality"}, "strict_tool_acc", "strict_param_acc", "status"}], "targets": [...],
"dpo_diagnostics": {...}, "seconds", "stage_seconds", "peak_rss_mb", ...}: one row per model
(random, rule, untrained, sft, sft+dpo) and setting (p, r, c); accuracies are the `paper`
scorer's fractions (the authors' scorer; `strict_*` are eval's strict scorer), `*_se` their
binomial standard errors; `visible`/`hidden` split Tool Acc by whether the history shows the
preferred tool (analysis.py says how each figure is computed). A row whose model did not run
has status "pending" and null accuracies.
"""

from __future__ import annotations

import json
import math
import pathlib
import time

from petool_jax.files import write_json, write_text
from petool_jax.app.demo.resources import peak_rss_mb
from petool_jax.app.demo.rows import ROWS, row_dir_name
from petool_jax.petoolbench import SETTINGS

SETTING_NAMES = {"p": "preferred-only", "r": "rating-integrated", "c": "chronological"}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def load_eval_reports(out: pathlib.Path, evaluated: list[str]) -> dict[str, dict]:
    """eval's report.json of each evaluated model, read once for the table and the findings."""
    return {model: json.loads((out / "eval" / row_dir_name(model) / "report.json").read_text(encoding="utf-8"))
            for model in ROWS if model in evaluated}


def collect_rows(reports: dict[str, dict], stats: dict[str, dict] | None = None) -> list[dict]:
    stats = stats or {}
    rows = []
    for model in ROWS:
        report = reports.get(model)
        for s in SETTINGS:
            if report is None:
                rows.append({"model": model, "setting": s, "tool_acc": None, "param_acc": None, "n": 0,
                             "strict_tool_acc": None, "strict_param_acc": None, "status": "pending"})
                continue
            paper, strict = report["scores"]["paper"][s], report["scores"]["strict"][s]
            row = {"model": model, "setting": s, "tool_acc": paper["tool_acc"], "param_acc": paper["param_acc"],
                   "n": paper["n"], "strict_tool_acc": strict["tool_acc"],
                   "strict_param_acc": strict["param_acc"], "status": "done"}
            extra = stats.get(model, {}).get(s)
            if extra:
                row.update({k: extra[k] for k in ("tool_acc_se", "param_acc_se", "visible", "hidden", "provider")})
            rows.append(row)
    return rows


def model_stats(out: pathlib.Path, evaluated: list[str], test_file: str | None) -> dict[str, dict]:
    """analysis.model_stats of every evaluated model (empty without the test file)."""
    from petool_jax import petoolbench as pb
    from petool_jax.app.demo.analysis import model_stats as stats_of

    if not test_file:
        return {}
    entries = pb.load_entries(test_file)
    return {m: stats_of(out / "eval" / row_dir_name(m), entries) for m in ROWS if m in evaluated}


def mean_tool_acc(rows: list[dict], model: str) -> float | None:
    values = [r["tool_acc"] for r in rows if r["model"] == model and r["tool_acc"] is not None]
    return sum(values) / len(values) if values else None


def _pct_se(value, err) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" + (f" ± {100 * err:.1f}" if err is not None else "")


def results_table(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(f"{SETTING_NAMES[s]} Tool | Param" for s in SETTINGS) + " |",
             "|---|" + "---|---|" * len(SETTINGS)]
    for model in ROWS:
        cells = []
        for s in SETTINGS:
            row = next(r for r in rows if r["model"] == model and r["setting"] == s)
            cells.append("pending | pending" if row["status"] == "pending"
                         else f"{_pct_se(row['tool_acc'], row.get('tool_acc_se'))} | "
                              f"{_pct_se(row['param_acc'], row.get('param_acc_se'))}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def split_table(rows: list[dict]) -> str:
    """Tool Acc where the history shows the preferred tool vs where it must be inferred, and the
    provider choice among right-functionality answers next to the uniform guess."""
    lines = ["| model | setting | Tool Acc, preferred tool visible (n) | Tool Acc, hidden (n) | "
             "right functionality | preferred among those | uniform guess |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "done" or "visible" not in row:
            continue
        vis, hid, prov = row["visible"], row["hidden"], row["provider"]
        lines.append(f"| {row['model']} | {row['setting']} | {_pct_se(vis['acc'], vis['se'])} ({vis['n']}) | "
                     f"{_pct_se(hid['acc'], hid['se'])} ({hid['n']}) | "
                     f"{_pct_se(prov['right_functionality']['acc'], prov['right_functionality']['se'])} | "
                     f"{_pct_se(prov['acc'], prov['se'])} ({prov['n']}) | {_pct(prov['uniform_guess'])} |")
    return "\n".join(lines)


def targets_table(items: list[dict]) -> str:
    lines = ["| target | measured | bar | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {_pct(t['value'])} | {_pct(t['bar'])} | {'yes' if t['met'] else 'NO'} |"
              for t in items]
    return "\n".join(lines)


def provider_choice(report: dict) -> tuple[float, float] | None:
    """(share of answers calling an API of the right functionality, share of those calling the
    user's preferred provider), from eval's strict scores and error taxonomy, all settings."""
    errors, strict = report["errors"]["all"], report["overall"]["strict"]
    right_func = strict["tool_correct"] + errors["preference_mismatch"]
    if not strict["n"] or not right_func:
        return None
    return right_func / strict["n"], strict["tool_correct"] / right_func


def findings(rows: list[dict], facts: dict, reports: dict[str, dict] | None = None) -> list[str]:
    """Sentences computed from the numbers (nothing here is written in advance)."""
    out = []
    random_mean, expected = mean_tool_acc(rows, "random"), facts.get("random_expected_tool_acc")
    if random_mean is not None and expected is not None:
        out.append(f"Random choice among candidates scored {_pct(random_mean)}% Tool Acc (mean of the settings); "
                   f"its expected value on this test split is {_pct(expected)}%.")
    for model in ("sft", "sft+dpo", "rule"):
        value = mean_tool_acc(rows, model)
        if value is not None and expected:
            out.append(f"{model}: {_pct(value)}% Tool Acc, {value / expected:.1f}x the expected random choice.")
    chance = facts.get("provider_chance")
    for model in ("sft", "sft+dpo"):
        split = provider_choice(reports[model]) if chance is not None and model in (reports or {}) else None
        if split is None:
            continue
        func, preferred = split
        verdict = ("well above that guess: it reads the preference from the history" if preferred >= chance + 0.1
                   else "within 10 points of that guess: it hardly reads the preference from the history")
        out.append(f"{model}: {_pct(func)}% of answers call an API of the right functionality; of those, "
                    f"{_pct(preferred)}% call the user's preferred provider, where a uniform guess among the "
                    f"functionally equivalent candidates gives {_pct(chance)}% ({verdict}).")
    sft, dpo = mean_tool_acc(rows, "sft"), mean_tool_acc(rows, "sft+dpo")
    if sft is not None and dpo is not None:
        verdict = "better than" if dpo > sft else "no better than" if dpo == sft else "worse than"
        ses = [r.get("tool_acc_se") for r in rows if r["model"] in ("sft", "sft+dpo") and r.get("tool_acc_se") is not None]
        noise = ""
        if len(ses) == 2 * len(SETTINGS):
            one_se = math.sqrt(sum(e * e for e in ses)) / len(SETTINGS)  # of the difference of the two means
            noise = (f" (difference {100 * (dpo - sft):+.1f} points, one standard error of the difference "
                     f"{100 * one_se:.1f})")
        out.append(f"SFT+DPO ({_pct(dpo)}%) is {verdict} SFT ({_pct(sft)}%) on Tool Acc{noise}.")
        diag = facts.get("dpo_diagnostics")
        if diag and diag.get("last_quarter_mean"):
            last = diag["last_quarter_mean"]
            parts = [f"{k} {last[k]:.3f}" for k in ("rewards/accuracy", "rewards/margin", "rewards/chosen",
                                                     "rewards/rejected", "logps/chosen", "logps/rejected")
                     if k in last]
            first = diag["first"]
            out.append(f"DPO's own measurements ({diag['steps']} steps, mean of the last quarter; first step "
                       f"loss {first.get('loss', float('nan')):.3f}, margin {first.get('rewards/margin', float('nan')):.3f}): "
                       + ", ".join(parts) + ".")
    elif dpo is None:
        out.append(f"SFT+DPO: {facts.get('dpo', 'pending')}.")
    return out


def _metrics(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot(out: pathlib.Path, rows: list[dict], facts: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(ROWS)
    for ax, key, title in ((axes[0], "tool_acc", "Tool Acc"), (axes[1], "param_acc", "Param Acc")):
        for i, model in enumerate(ROWS):
            chosen = [next(r for r in rows if r["model"] == model and r["setting"] == s) for s in SETTINGS]
            values = [r[key] for r in chosen]
            errors = [100 * (r.get(f"{key}_se") or 0) for r in chosen]
            xs = np.arange(len(SETTINGS)) + (i - (len(ROWS) - 1) / 2) * width
            ax.bar(xs, [100 * v if v is not None else 0 for v in values], width, label=model, yerr=errors,
                   capsize=2)
        if key == "tool_acc" and facts.get("random_expected_tool_acc") is not None:
            ax.axhline(100 * facts["random_expected_tool_acc"], color="gray", ls="--", lw=1,
                       label="random (expected)")
        ax.set_xticks(np.arange(len(SETTINGS)), [SETTING_NAMES[s] for s in SETTINGS])
        ax.set_ylim(0, 118)  # headroom above 100% for the legend
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(f"{title} on the demo test split (paper scorer)")
    axes[0].legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    plt.close(fig)
    written.append("accuracy.png")

    runs = {name: _metrics(out / "runs" / name / "metrics.jsonl")
            for name in ("warmup_calls", "warmup_history", "sft", "dpo")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, label in (("warmup_calls", "warm-up: (instruction -> call) pairs"),
                        ("warmup_history", "warm-up: histories without candidates"), ("sft", "personalized SFT")):
        if runs[name]:
            axes[0].plot([m["step"] for m in runs[name]], [m["loss"] for m in runs[name]], label=label)
    axes[0].set_title("SFT loss (per target token)")
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=8)
    dpo = runs["dpo"]
    if dpo:
        axes[1].plot([m["step"] for m in dpo], [m["loss"] for m in dpo], label="loss")
        for key in ("rewards/accuracy", "rewards/margin"):
            if key in dpo[0]:
                axes[1].plot([m["step"] for m in dpo], [m[key] for m in dpo], label=key)
        axes[1].legend(fontsize=8)
    axes[1].set_title("DPO" if dpo else "DPO (pending)")
    axes[1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    written.append("training.png")
    return written


def render_markdown(report: dict) -> str:
    facts = report["facts"]
    plan = facts["plan"]
    pretrained = plan["kind"] == "pretrained"
    path = ("pretrained model -> synthesis -> LoRA SFT -> DPO" if pretrained
            else "synthesis -> BPE tokenizer -> tiny LLaMA from scratch -> SFT -> DPO")
    lines = [f"# {report.get('title', 'petool demo')}", "",
             f"The whole PEToolLLM pipeline on a CPU: {path} -> HF export -> evaluation. The figures below come "
             "from this run (see the README for the paper-scale recipe).", ""]
    if facts.get("fallback"):
        lines += [f"**Fallback:** {facts['fallback']}", ""]
    lines.append(f"- data: {facts['data']['source']} (test file `{facts['data']['test']}`)")
    if "catalog" in facts:
        c = facts["catalog"]
        lines.append(f"- catalog: {c['categories']} categories, {c['functionality_groups']} functionality groups, "
                     f"{c['tools']} tools ({c['providers_per_group'][0]}-{c['providers_per_group'][1]} per group), "
                     f"{c['apis']} APIs, {c['example_instructions']} example instructions")
    if facts.get("pretrained"):
        lines.append(f"- starting model: {facts['pretrained']['source']}")
    model = facts.get("model", {})
    if model:
        lines.append(f"- model: LLaMA architecture, {model['num_hidden_layers']} layers, hidden {model['hidden_size']}, "
                     f"{model['num_attention_heads']} heads ({model['num_key_value_heads']} KV), vocab "
                     f"{model['vocab_size']}: {model['parameters']:,} parameters")
    if pretrained:
        tuning = (f"LoRA rank {plan['lora_rank']} alpha {plan['lora_alpha']}" if plan["lora_rank"]
                  else "full fine-tuning")
        lines.append(f"- sizes: plan `{plan['name']}`, {plan['candidates']} candidates per instance, history "
                     f"{plan['history_min']}-{plan['history_max']} calls; {tuning}; SFT {plan['sft_steps']} steps x "
                     f"{plan['sft_batch']} (lr {plan['sft_lr']}), DPO {plan['dpo_steps']} steps x {plan['dpo_batch']} "
                     f"(lr {plan['dpo_lr']}, beta {plan['dpo_beta']}, reference {facts.get('dpo_reference', '?')}), "
                     f"max_seq_len {plan['max_seq_len']}; eval: first {facts.get('eval_limit') or 'all'} test entries "
                     f"per setting, max_new_tokens {plan['max_new_tokens']}")
    else:
        lines.append(f"- sizes: plan `{plan['name']}`, {plan['candidates']} candidates per instance, "
                     f"history {plan['history_min']}-{plan['history_max']} calls; warm-up {plan['calls_steps']} steps x "
                     f"{plan['calls_batch']} on {facts.get('warmup_calls_rows', '?')} (instruction -> call) pairs and "
                     f"{plan['history_steps']} steps x {plan['history_batch']} on {facts.get('warmup_history_rows', '?')} "
                     f"histories without candidates; SFT {plan['sft_steps']} steps x "
                     f"{plan['sft_batch']}, DPO {plan['dpo_steps']} steps x {plan['dpo_batch']} (beta {plan['dpo_beta']}), "
                     f"max_seq_len {plan['max_seq_len']}")
    lines.append(f"- DPO: {facts.get('dpo', 'pending')}")
    export = facts.get("export")
    if export:
        if export["status"] == "passed":
            lines.append(f"- export: `{export['hf_dir']}` reloaded with transformers; logits match the JAX model "
                         f"(max abs difference {export['max_abs_logit_diff']:.2e} over {export['tokens']} tokens)")
        else:
            lines.append(f"- export: `{export['hf_dir']}` reload check {export['status']}: {export['reason']}")
    lines += ["", "## Results (%, paper scorer, ± one standard error; every test entry counts)", "",
              results_table(report["rows"]), ""]
    lines += [f"- {s}" for s in report["findings"]]
    if any("visible" in r for r in report["rows"]):
        lines += ["", "## Preferred tool visible in the history or not; provider choice", "",
                  "Visible: the setting's history holds a call of the preferred tool (copy it); hidden: it must be "
                  "inferred (from the attributes the user's other tools share, and in r/c by elimination of the "
                  "rival rated 0). Provider: among answers calling an API of the right functionality, the share "
                  "calling the preferred one, next to a uniform guess among those equivalent candidates.", "",
                  split_table(report["rows"])]
    lines += report.get("extra_markdown") or []
    if report.get("targets"):
        lines += ["", "## Targets (issue 15)", "", targets_table(report["targets"])]
    lines += ["", "Strict scorer, Tool Acc (%): " + "; ".join(
        f"{m} " + "/".join(_pct(next(r for r in report['rows'] if r['model'] == m and r['setting'] == s)
                                ['strict_tool_acc']) for s in SETTINGS) for m in ROWS) + " (p/r/c)",
              "", "Per-model details (error taxonomy, history length, plots): `eval/<model>/report.md`; side by side: "
              "`eval/compare/compare.md`.", "",
              "![accuracy](accuracy.png)", "", "![training](training.png)", "",
              "## Time and memory", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["stage_seconds"].items()]
    lines += [f"| total | {report['seconds']:.1f} |", "", f"Peak resident memory: {report['peak_rss_mb']:.0f} MB.", "",
              "## Commands", "", "Every stage ran a `petool` command (all in `commands.sh`):", "", "```"]
    lines += report["commands"] + ["```", ""]
    return "\n".join(lines)


def write_report(out: pathlib.Path, facts: dict, stage_seconds: dict, started: float, commands: list[str],
                 evaluated: list[str], title: str = "petool demo", extra_sections=None) -> dict:
    """extra_sections(report) -> markdown lines placed after the results (the experiment's paper rows)."""
    from petool_jax.app.demo.analysis import dpo_diagnostics, targets

    t0 = time.monotonic()
    reports = load_eval_reports(out, evaluated)
    stats = model_stats(out, evaluated, facts.get("data", {}).get("test"))
    rows = collect_rows(reports, stats)
    facts = {**facts, "dpo_diagnostics": dpo_diagnostics(out / "runs" / "dpo" / "metrics.jsonl")}
    plots = plot(out, rows, facts)
    write_text(out / "commands.sh", "#!/usr/bin/env bash\n# The commands petool demo ran, in order.\nset -e\n"
                 + "\n".join(commands) + "\n")
    stage_seconds = {**stage_seconds, "report": round(time.monotonic() - t0, 2)}
    report = {"title": title, "rows": rows, "targets": targets(stats, facts.get("random_expected_tool_acc")),
              "dpo_diagnostics": facts["dpo_diagnostics"], "seconds": round(time.monotonic() - started, 2),
              "stage_seconds": stage_seconds, "peak_rss_mb": round(peak_rss_mb(), 1), "scorer": "paper",
              "findings": findings(rows, facts, reports), "plots": plots, "commands": commands, "facts": facts}
    if extra_sections is not None:
        report["extra_markdown"] = extra_sections(report)
    write_text(out / "report.md", render_markdown(report))
    write_json(out / "report.json", report)
    return report
