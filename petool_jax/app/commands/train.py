"""`petool train sft|dpo --config FILE [key=value ...]`.

Train with a YAML config (configs/train/) plus key=value overrides (dotted keys, e.g. lora.rank=0
mesh.fsdp=8). An unknown key is an error. The run directory (output_dir) gets config.yaml,
metrics.jsonl, tensorboard/, checkpoints/, loss.png and model/ (a petool model or LoRA adapter
directory). resume=true (default) continues from the latest checkpoint, data position included.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="SFT or DPO training (sharded, LoRA or full fine-tuning)",
                              description=__doc__)
    stage = p.add_subparsers(dest="stage", required=True)
    for name, text in (("sft", "supervised fine-tuning on tool calls"),
                       ("dpo", "direct preference optimisation (preferred vs non-preferred tool)")):
        s = stage.add_parser(name, help=text)
        s.add_argument("--config", default=None, help="YAML preset, e.g. configs/train/sft_paper.yaml")
        s.add_argument("overrides", nargs="*", help="key=value overrides")
        s.set_defaults(func=run)


def run(args) -> int:
    from petool_jax.train.config import load_train_config

    config = load_train_config(args.config, args.overrides)
    if args.stage == "sft":
        from petool_jax.train.sft import run_sft

        result = run_sft(config)
    else:
        from petool_jax.train.dpo import run_dpo

        result = run_dpo(config)
    summary = {"final_step": result["final_step"], "model_dir": result.get("model_dir"),
               "last_loss": result["losses"][-1] if result["losses"] else None, "data": result.get("data")}
    print(json.dumps(summary))
    return 0
