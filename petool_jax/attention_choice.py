"""Which attention kernel runs: a pure function of (requested, backend, key length, mask kind).

`auto` (the default): cuDNN flash attention on GPU where it applies (plain causal: no
packing, no DPO prefix sharing, no cache), the Pallas splash kernel on TPU (causal, with or
without packed segments), and otherwise `blockwise` from BLOCKWISE_MIN_LENGTH keys on and
`xla` below. The threshold is where blockwise's SFT step time crosses xla's on the CPU
(bench/results/scaling_attention*.json, BENCHMARKS.md "Attention: xla vs blockwise"); below
it xla is as fast or faster and its T^2 temporaries are small.

An explicit kernel that cannot apply a mask kind is refused (never silently dropped), with
one exception: a cached call (generation prefill) with `cudnn` or `splash` configured takes
the `auto` choice, since those kernels serve training and cannot read a KV cache's mask.
"""

from __future__ import annotations

from petool_jax.attention import KERNEL_MASKS, MASK_KINDS

# Measured on this project's 2-vCPU VM (BENCHMARKS.md "Attention: xla vs blockwise"): the SFT
# step's xla / blockwise time was 0.98 at 128 tokens, 0.92 at 256, 1.24 at 512 (but 0.93 in
# separate processes), 1.38 / 1.43 at 1,024 and 1.5-3.8 beyond: the shortest length where
# both measurements agree that blockwise is faster.
BLOCKWISE_MIN_LENGTH = 1024


def by_length(kv_len: int) -> str:
    return "blockwise" if kv_len >= BLOCKWISE_MIN_LENGTH else "xla"


def resolve_attention(requested: str, backend: str, kv_len: int, kind: str) -> str:
    """The kernel for one attention call: `requested` is RuntimeOptions.attention, `backend`
    jax.default_backend() ("cpu", "gpu", "tpu"), `kv_len` the number of key slots, `kind`
    one of MASK_KINDS, or "dense" for an explicit [B, T, S] array (always xla)."""
    if kind == "dense":
        return "xla"
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind {kind!r} is not one of {MASK_KINDS}")
    if kind == "cache" and requested in ("cudnn", "splash"):
        requested = "auto"
    if requested != "auto":
        return requested
    if backend == "gpu" and kind == "causal":
        return "cudnn"
    if backend == "tpu" and kind in KERNEL_MASKS["splash"]:
        return "splash"
    return by_length(kv_len)


def check_kernel(requested: str, kind: str) -> None:
    """ValueError when an explicitly requested kernel would drop part of a `kind` mask.
    cudnn is let through for `segments` (asked for explicitly: unpacked SFT rows, see
    attention.KERNEL_MASKS); a dense mask runs on xla, so only xla / blockwise take one."""
    if requested == "auto" or kind == "cache":
        return
    if kind == "dense":
        ok = requested in ("xla", "blockwise")
    elif requested == "cudnn":
        ok = kind in ("causal", "segments")
    else:
        ok = kind in KERNEL_MASKS[requested]
    if not ok:
        raise ValueError(f"attention={requested} ignores an explicit mask; use attention=xla (or auto / blockwise)")
