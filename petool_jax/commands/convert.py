"""`petool convert`: HF safetensors checkpoint -> petool model directory (orbax)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="HF checkpoint -> petool (orbax) model directory",
                              description="Convert an HF LLaMA-3 safetensors checkpoint (single file or "
                              "sharded with model.safetensors.index.json) into a petool model directory: "
                              "orbax params, config.json and the tokenizer files. Reads one tensor at a "
                              "time; writes to a temporary directory renamed into place at the end.")
    p.add_argument("--hf", required=True, help="HF model directory")
    p.add_argument("--out", required=True, help="petool model directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from petool_jax.convert import convert_hf_checkpoint

    stats = convert_hf_checkpoint(args.hf, args.out, overwrite=args.overwrite)
    print(f"converted {stats['tensors']} tensors ({stats['bytes'] / 1e9:.3f} GB, {stats['dtype']}) -> {args.out}")
    return 0
