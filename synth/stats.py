"""stats.md and its PNG plots: what the pool held, what each stage did, what the checks
dropped, how the splits look, and whether test queries leak into training data.

Only facts about the data and the stages go in (no wall times, no cache-hit counts of this
particular run), so the same seed and sources give a byte-identical report.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from petool_jax.petoolbench import split_instruction, split_tool_name
from synth.instances import INSTRUCTION_KEYS
from petool_jax.files import write_bytes, write_text
from synth.pool import Pool
from synth.quality import CHECKS


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _flat(report: dict) -> str:
    parts = []
    for k, v in report.items():
        if k in ("llm", "mode"):
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "none"
        parts.append(f"{k}: {v}")
    return "; ".join(parts)


def _png(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    # No "Software" stamp: the bytes then depend on the data alone.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _hist_lengths(entries: list[dict], settings: list[str]) -> dict[str, list[int]]:
    return {s: [len(split_instruction(e[INSTRUCTION_KEYS[s]])[1]) for e in entries] for s in settings}


def write_stats(out: Path, config: dict, pool: Pool, stage_reports: dict, quality: dict, split_report: dict,
                leak: dict, train: list[dict], test: list[dict], failures: list[dict], built: int,
                passed: int) -> list[str]:
    settings = config["settings"]
    everything = train + test
    lines = ["# PEToolBench synthesis statistics\n"]
    lines.append(_table(["setting", "value"], [
        ["tool sources", ", ".join(Path(p).name for p in config["tool_pool"])],
        ["seed", config["seed"]], ["users asked for", config["num_users"]],
        ["settings", ",".join(settings)], ["candidates", config["candidates"]],
        ["llm.model", config["llm"]["model"]], ["embedding.model", config["embedding"]["model"]],
        ["history length", f"{config['history']['min_len']}-{config['history']['max_len']}"],
        ["test_fraction", config["test_fraction"]], ["holdout_groups", config["holdout_groups"]],
    ]))

    lines.append("\n## Tool pool\n")
    groups = pool.groups()
    rows = [
        ["tools", len(pool.tools)], ["APIs", len(pool.apis)],
        ["documented APIs (may be candidates)", sum(a.documented for a in pool.apis.values())],
        ["APIs with example instructions", sum(bool(a.examples) for a in pool.apis.values())],
        ["example instructions", sum(len(a.examples) for a in pool.apis.values())],
        ["categories", len({t.category for t in pool.tools.values()})],
        ["functionality groups", len(groups)],
        ["groups spanning two or more tools", sum(len({pool.apis[k].tool for k in v}) >= 2 for v in groups.values())],
    ]
    rows += [[k, v] for k, v in sorted(pool.report.items())]
    lines.append(_table(["what", "count"], rows))

    lines.append("\n## Stages\n")
    rows = []
    for name, report in stage_reports.items():
        llm = report.get("llm", {})
        rows.append([
            name, report.get("mode", ""), _flat(report), llm.get("requests", 0), llm.get("retries", 0),
            llm.get("failures", 0) + llm.get("json_failures", 0),
            llm.get("prompt_tokens", 0) + llm.get("completion_tokens", 0), f"{llm.get('cost_usd', 0.0):.4f}",
        ])
    lines.append(_table(["stage", "mode", "figures", "LLM requests", "retries", "failures", "tokens", "cost USD"], rows))

    lines.append("\n## Quality checks\n")
    lines.append(f"{built} instances built, {passed} passed every check; {len(everything)} in the final "
                 "splits (see Splits for what scrubbing took out of train).\n\n")
    lines.append(_table(["check", "instances dropped"], [[c, quality.get(c, 0)] for c in CHECKS]))

    lines.append("\n## Splits\n")
    lines.append(_table(["what", "value"], [[k, v] for k, v in split_report.items()]))
    lines.append("\n")
    lines.append(_table(["split", "instances", "functionality groups", "SFT rows per setting", "DPO rows per setting"], [
        ["train", len(train), len({e["func"] for e in train}), len(train), len(train)],
        ["test", len(test), len({e["func"] for e in test}), 0, 0],
    ]))

    lines.append("\n## Leakage\n")
    lines.append(_table(["what", "value"], [[k, v] for k, v in leak.items() if k not in ("examples", "leaked entry ids")]))
    if leak["examples"]:
        lines.append("\nExamples of leaked test queries:\n\n" + "".join(f"- {q}\n" for q in leak["examples"]))

    lines.append("\n## Categories of the ground truths\n")
    categories = Counter(split_tool_name(e["api_call_ground_truth"]["tool_name"])[0] for e in everything)
    top = sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append(_table(["category", "instances"], [[c, n] for c, n in top[:25]]))
    lines.append("\n![categories](categories.png)\n")

    lines.append("\n## Functionality group sizes (APIs per group, over instances)\n")
    sizes = Counter(len(e["apis_same_func"]) for e in everything)
    lines.append(_table(["APIs in group", "instances"], [[k, sizes[k]] for k in sorted(sizes)]))
    lines.append("\n![group sizes](group_sizes.png)\n")

    lines.append("\n## History lengths\n")
    lengths = _hist_lengths(everything, settings)
    rows = []
    for s in settings:
        ls = lengths[s] or [0]
        rows.append([s, min(ls), f"{sum(ls) / len(ls):.2f}", max(ls)])
    lines.append(_table(["setting", "min", "mean", "max"], rows))
    if "r" in settings and everything:
        ratings = [h["rating"] for e in everything for h in split_instruction(e[INSTRUCTION_KEYS["r"]])[1]]
        lines.append(f"\nRating-integrated histories: {ratings.count(0)} calls rated 0, {ratings.count(1)} rated 1.\n")
    lines.append("\n![history lengths](history_lengths.png)\n")

    lines.append("\n## Settings\n")
    lines.append(_table(["setting", "test instances", "SFT rows", "DPO rows"], [[s, len(test), len(train), len(train)] for s in settings]))
    lines.append("\n![settings](settings.png)\n")

    if config.get("reference"):
        from synth.compare import figures, markdown
        from petool_jax.petoolbench import load_entries

        compared = test or train
        lines.append("\n## Structure against the reference\n")
        lines.append(f"`petool synth compare` of the reference file against the synthesized "
                     f"{'test' if test else 'train'} split ({len(compared)} entries); difference = synthesized - "
                     "reference.\n\n")
        lines.append(markdown(Path(config["reference"]).name, "synthesized", figures(load_entries(config["reference"])),
                              figures(compared)))

    lines.append("\n## LLM failures\n")
    if failures:
        lines.append(_table(["stage", "item", "error"], [[f["stage"], f["item"], f["error"]] for f in failures[:50]]))
        if len(failures) > 50:
            lines.append(f"\n... and {len(failures) - 50} more.\n")
    else:
        lines.append("None.\n")

    write_text(out / "stats.md", "".join(lines))
    _png(out / "categories.png", lambda ax: (
        ax.barh([c for c, _ in top[:20]][::-1], [n for _, n in top[:20]][::-1], color="#4472c4"),
        ax.set_xlabel("instances"), ax.set_title("Ground-truth categories")))
    _png(out / "group_sizes.png", lambda ax: (
        ax.bar([str(k) for k in sorted(sizes)], [sizes[k] for k in sorted(sizes)], color="#70ad47"),
        ax.set_xlabel("APIs in the functionality group"), ax.set_ylabel("instances"),
        ax.set_title("Functionality group sizes")))

    def draw_lengths(ax) -> None:
        top_len = max([max(v) for v in lengths.values() if v] + [1])
        bins = range(0, top_len + 2)
        for s in settings:
            ax.hist(lengths[s], bins=bins, alpha=0.5, label=s)
        ax.set_xlabel("history entries")
        ax.set_ylabel("instances")
        ax.set_title("History lengths per setting")
        ax.legend()

    _png(out / "history_lengths.png", draw_lengths)

    def draw_settings(ax) -> None:
        xs = range(len(settings))
        ax.bar([x - 0.2 for x in xs], [len(train)] * len(settings), width=0.4, label="train (SFT/DPO rows)")
        ax.bar([x + 0.2 for x in xs], [len(test)] * len(settings), width=0.4, label="test")
        ax.set_xticks(list(xs), settings)
        ax.set_ylabel("instances")
        ax.set_title("Instances per setting")
        ax.legend()

    _png(out / "settings.png", draw_settings)
    return ["stats.md", "categories.png", "group_sizes.png", "history_lengths.png", "settings.png"]
