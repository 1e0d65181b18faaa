"""`petool init`: write a randomly initialised HF-format model (tiny for a first try)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("init", help="write a randomly initialised HF-format LLaMA model",
                              description="Write a randomly initialised LLaMA model in HF format "
                              "(config.json, safetensors, tokenizer). For the `tiny` preset a small "
                              "byte-level BPE tokenizer with the LLaMA-3 chat template is trained.")
    p.add_argument("--preset", default="tiny", help="configs/model preset name, a YAML file or an HF dir")
    p.add_argument("--out", required=True, help="output directory (must not exist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--tokenizer", default=None, help="copy tokenizer files from this directory instead")
    p.add_argument("--max-shard-bytes", type=int, default=5 * 10**9, help="safetensors shard size limit")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from petool_jax.config import load_model_config
    from petool_jax.random_model import write_random_hf_model

    config = load_model_config(args.preset)
    config = write_random_hf_model(config, args.out, seed=args.seed, dtype=args.dtype,
                                   tokenizer_dir=args.tokenizer, max_shard_bytes=args.max_shard_bytes,
                                   overwrite=args.overwrite)
    print(f"wrote {args.out}: {config.num_params():,} parameters ({args.dtype})")
    return 0
