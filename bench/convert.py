"""Peak RSS and seconds of `petool convert` on a random llama3.2-1b-shaped HF checkpoint
(bf16, 3 safetensors shards), repeated; target peak RSS <= 1.3x the checkpoint's bytes.

    python -m bench.convert [--preset llama3.2-1b] [--repeats 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

from bench.common import machine, median, run_measured, write_results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="llama3.2-1b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--workdir", default=None, help="where to write the checkpoints (default: a temp dir)")
    args = parser.parse_args(argv)

    from petool_jax.config import load_model_config

    config = load_model_config(args.preset)
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="petool-bench-convert-"))
    hf = work / "hf"
    ckpt_bytes = config.num_params() * 2
    if not hf.exists():
        # 3 shards: the shard limit is a third of the checkpoint (plus slack for the split points).
        shard = ckpt_bytes // 3 + 64 * 2**20
        run_measured([sys.executable, "-m", "petool_jax.app.cli", "init", "--preset", args.preset, "--out", str(hf),
                      "--dtype", "bfloat16", "--max-shard-bytes", str(shard),
                      "--tokenizer", str(_tiny_tokenizer(work))])
    shards = sorted(p.name for p in hf.glob("*.safetensors"))
    runs = []
    for i in range(args.repeats):
        out = work / f"ckpt{i}"
        r = run_measured([sys.executable, "-m", "petool_jax.app.cli", "convert", "--hf", str(hf), "--out", str(out)],
                         env={"JAX_PLATFORMS": "cpu"})
        runs.append({"seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"]})
        shutil.rmtree(out)
    rss = median([r["peak_rss_bytes"] for r in runs])
    results = {
        "benchmark": "convert", "preset": args.preset, "checkpoint_bytes": ckpt_bytes, "shards": shards,
        "runs": runs, "median_seconds": median([r["seconds"] for r in runs]), "median_peak_rss_bytes": rss,
        "rss_over_checkpoint": rss / ckpt_bytes, "machine": machine(),
    }
    table = "\n".join([
        f"| petool convert ({args.preset}, bf16, {len(shards)} shards) | value |", "|---|---|",
        f"| checkpoint size | {ckpt_bytes / 1e9:.3f} GB |",
        f"| seconds (median of {args.repeats}) | {results['median_seconds']:.1f} |",
        f"| peak RSS (median) | {rss / 1e9:.3f} GB |",
        f"| peak RSS / checkpoint | {results['rss_over_checkpoint']:.2f}x (target <= 1.3x) |",
    ])
    write_results(args.out, "convert", results, table)
    if not args.workdir:
        shutil.rmtree(work)
    return results


def _tiny_tokenizer(work: pathlib.Path) -> pathlib.Path:
    from petool_jax.random_model import TOKENIZER_CORPUS
    from petool_jax.tokenizer import train_bpe_tokenizer

    path = work / "tokenizer"
    train_bpe_tokenizer(TOKENIZER_CORPUS, 512, path)
    return path


if __name__ == "__main__":
    main()
