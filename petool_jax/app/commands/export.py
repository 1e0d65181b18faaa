"""`petool export`: petool model directory -> HF directory."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="petool model directory -> HF directory",
                              description="Write sharded safetensors (<= 5 GB a shard, with index), "
                              "config.json, generation_config.json and the tokenizer files, loadable by "
                              "transformers.AutoModelForCausalLM.from_pretrained.")
    p.add_argument("--ckpt", required=True, help="petool model directory or training checkpoint RUN_DIR/checkpoints/N")
    p.add_argument("--out", required=True, help="HF directory to create")
    p.add_argument("--max-shard-bytes", type=int, default=5 * 10**9)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    lora = p.add_mutually_exclusive_group()
    lora.add_argument("--merge-lora", action="store_true",
                      help="for a LoRA adapter directory: write base + alpha/r * A @ B as a full model")
    lora.add_argument("--peft", action="store_true",
                      help="for a LoRA adapter directory: write only the adapter in PEFT's format")
    p.set_defaults(func=run)


def run(args) -> int:
    from petool_jax.export import export_to_hf

    stats = export_to_hf(args.ckpt, args.out, overwrite=args.overwrite, max_shard_bytes=args.max_shard_bytes,
                         merge_lora=args.merge_lora, peft=args.peft)
    print(f"exported {stats['bytes'] / 1e9:.3f} GB -> {args.out}")
    return 0
