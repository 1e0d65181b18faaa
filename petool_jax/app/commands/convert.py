"""`petool convert`: an HF safetensors checkpoint or a GGUF file -> petool model directory (orbax).

Convert an HF LLaMA-family safetensors checkpoint (single file or sharded with
model.safetensors.index.json), or a llama.cpp GGUF file of architecture 'llama' (dequantized to
float32), into a petool model directory: orbax params, config.json and the tokenizer files. Reads
one tensor at a time; writes to a temporary directory renamed into place at the end.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="HF checkpoint or GGUF file -> petool (orbax) model directory",
                              description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", help="HF model directory")
    source.add_argument("--gguf", help="GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_x/K-quants/...)")
    p.add_argument("--out", required=True, help="petool model directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.gguf:
        from petool_jax.gguf_convert import convert_gguf_checkpoint

        stats = convert_gguf_checkpoint(args.gguf, args.out, overwrite=args.overwrite)
        types = ", ".join(f"{n} {k}" for k, n in sorted(stats["types"].items()))
        print(f"converted {stats['tensors']} GGUF tensors ({types}) -> {stats['bytes'] / 1e9:.3f} GB "
              f"{stats['dtype']} in {args.out}")
        return 0
    from petool_jax.convert import convert_hf_checkpoint

    stats = convert_hf_checkpoint(args.hf, args.out, overwrite=args.overwrite)
    print(f"converted {stats['tensors']} tensors ({stats['bytes'] / 1e9:.3f} GB, {stats['dtype']}) -> {args.out}")
    return 0
