"""`petool experiment`: model -> split -> synth (pool half) -> SFT -> DPO -> export -> eval (evaluation half) -> report.

The demo's stages (petool_jax/app/demo/pipeline.py), on a real release file instead of the
built-in catalog: the release is split by entry (split.py); `petool synth` harvests the tool
pool from the pool half only and synthesizes SFT and DPO data with the release's structure;
training rows that hold an evaluation query are dropped; the trained models, the untrained
one, random choice and the rule baseline are evaluated on the evaluation half with the paper
scorer; the report puts the paper's published rows beside them. The evaluation half is read
by nothing but `petool eval run` (and the leakage filter, which only removes training rows).

Output layout (OUT = the config's output_dir):
    data/pool_half.json, data/eval_half.json, data/split.json   the split (release format, ids)
    data/synth.yaml, data/synth/                                 petool synth from the pool half
    data/train/user_entries_{sft,dpo}_{p,r,c}.json                its SFT/DPO files minus leaked rows
    runs/sft, runs/dpo, hf/, eval/<model>/, report.md, report.json, *.png, commands.sh
"""

from __future__ import annotations

import json
import pathlib

from petool_jax.app.demo.data_files import DataFiles
from petool_jax.app.demo.pipeline import Demo
from petool_jax.petoolbench import SETTINGS
from petool_jax.errors import UserError


class Experiment(Demo):
    def __init__(self, out: pathlib.Path, config: dict, plan, limit: int | None = None, log=None,
                 config_path: str | None = None):
        from petool_jax.models_registry import MODELS

        model = str(config["model"])
        source = None if model in MODELS else model
        if source is not None and not pathlib.Path(source).exists():
            raise UserError(f"model {model}: not a known model ({', '.join(sorted(MODELS))}) and no such file "
                            "or directory")
        if source is None:
            import dataclasses

            plan = dataclasses.replace(plan, model=model)
        super().__init__(out, plan, seed=int(config["seed"]), eval_limit=limit, log=log, model_source=source)
        self.config = config
        self.config_path = config_path
        self.release = pathlib.Path(config["data"])
        if not self.release.is_file():
            raise UserError(f"data {self.release}: no such release file")
        self.split: dict | None = None

    def stages(self):
        return [("model", self.stage_pretrained), ("split", self.stage_split), ("data", self.stage_data),
                ("sft", self.stage_sft), ("dpo", self.stage_dpo), ("export", self.stage_export),
                ("eval", self.stage_eval)]

    def stage_split(self) -> None:
        from petool_jax.app.experiment.split import write_split

        folder = self.out / "data"
        fraction = float(self.config["split"]["pool_fraction"])
        self.note(f"split: {self.release} by entry, seed {self.seed}, pool fraction {fraction} -> "
                  f"{folder / 'pool_half.json'}, {folder / 'eval_half.json'} (petool_jax.app.experiment.split)")
        self.split = write_split(self.release, folder, self.seed, fraction)
        self.facts["split"] = {k: self.split[k] for k in ("release", "entries", "seed", "pool_fraction")} | {
            "pool": len(self.split["pool_ids"]), "evaluation": len(self.split["eval_ids"])}

    def stage_data(self) -> None:
        import yaml

        from petool_jax.files import write_json
        from petool_jax import petoolbench as pb
        from petool_jax.app.experiment.split import evaluation_queries, scrub_rows

        folder = self.out / "data"
        synth_dir = folder / "synth"
        config = {"tool_pool": [str((folder / "pool_half.json").resolve())], "output_dir": str(synth_dir),
                  "seed": self.seed, "settings": ",".join(SETTINGS), "llm": {"model": "none"},
                  **self.plan.synth_overrides()}
        (folder / "synth.yaml").write_text(
            "# petool synth config written by petool experiment: tools harvested from the POOL half only\n"
            + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.petool("synth", "--config", folder / "synth.yaml")
        queries = evaluation_queries(pb.load_entries(folder / "eval_half.json"))
        train_dir = folder / "train"
        leakage, sft, dpo = {}, [], []
        for kind, files in (("sft", sft), ("dpo", dpo)):
            for s in SETTINGS:
                name = f"user_entries_{kind}_{s}.json"
                rows, counts = scrub_rows(json.loads((synth_dir / name).read_text(encoding="utf-8")), queries)
                write_json(train_dir / name, rows)
                leakage[name] = counts
                files.append(train_dir / name)
        dropped = sum(v["dropped_query_is_an_evaluation_query"] for v in leakage.values())
        cut = sum(v["history_calls_cut"] for v in leakage.values())
        self.note(f"leakage filter: training rows whose query is an evaluation-half query dropped ({dropped}), history "
                  f"calls quoting one cut ({cut}) -> {train_dir} (petool_jax.app.experiment.split.scrub_rows)")
        self.facts["leakage"] = leakage
        self.files = DataFiles(
            source=f"synthesized from the tools of the pool half of {self.release}",
            train_entries=synth_dir / "user_entries_train.json", sft=sft, dpo=dpo,
            test=folder / "eval_half.json", texts_from=sft)

    def stage_eval(self) -> None:
        super().stage_eval()
        self.facts["disjoint"] = self.check_evaluated_entries()

    def check_evaluated_entries(self) -> dict:
        """Every evaluated entry is in the evaluation half and none is in the pool half."""
        pool = {str(i) for i in self.split["pool_ids"]}
        evaluation = {str(i) for i in self.split["eval_ids"]}
        seen = set()
        for name, _ in self.eval_targets():
            path = self.out / "eval" / name.replace("+", "_") / "predictions.jsonl"
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    seen.add(str(json.loads(line)["entry_id"]))
        if seen & pool or not seen <= evaluation:
            raise UserError(f"evaluated entries outside the evaluation half: {sorted(seen - evaluation)[:5]}")
        return {"evaluated_entries": len(seen), "in_pool_half": 0, "outside_evaluation_half": 0}

    def report_title(self) -> str:
        return f"petool experiment: PEToolBench ({self.release.name}) with {self.plan.model or 'the given model'}"

    def extra_sections(self, report: dict) -> list[str]:
        """The paper's published rows beside ours (they cover the whole 1,000-entry test file and an 8B model)."""
        rows = self.config.get("paper_rows") or []
        if not rows:
            return []
        ours = {(r["model"], r["setting"]): r for r in report["rows"] if r["status"] == "done"}
        n = max((r["n"] for r in report["rows"] if r["status"] == "done"), default=0)
        lines = ["", "## Beside the paper's published rows (%, paper scorer)", "",
                 "The paper's rows are for its whole test set (1,000 entries) and 7-8B models or APIs; this run's "
                 f"are for {n} entries of the evaluation half per setting (± one standard error).", "",
                 "| source | model | setting | Tool Acc | Param Acc |", "|---|---|---|---|---|"]
        lines += [f"| paper | {r['model']} | {r['setting']} | {r['tool_acc']:.1f} | {r['param_acc']:.1f} |" for r in rows]
        for (model, setting), r in ours.items():
            se_t = r.get("tool_acc_se")
            se_p = r.get("param_acc_se")
            lines.append(f"| this run | {model} | {setting} | {100 * r['tool_acc']:.1f}"
                         + (f" ± {100 * se_t:.1f}" if se_t is not None else "") + f" | {100 * r['param_acc']:.1f}"
                         + (f" ± {100 * se_p:.1f}" if se_p is not None else "") + " |")
        return lines
