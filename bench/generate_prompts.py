"""The generation benchmark's prompts (real PEToolBench instances with the LLaMA-3 tokenizer, or
random ids of such lengths) and the petool side's timed call; bench/generate.py and
bench/generate_gpu.py share them."""

from __future__ import annotations

import pathlib
import time

from petool_jax.llama3_tokenizer import llama3_tokenizer

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
MAX_PROMPT_TOKENS = 4000  # eval run's default


def petoolbench_prompts(n_instances: int) -> list[list[int]]:
    """Token ids of the first n instances (entries in file order, settings p, r, c), exactly
    as `eval run` builds them."""
    from petool_jax import petoolbench as pb
    from petool_jax.chat import ChatRenderer

    tokenizer = llama3_tokenizer(SHARED / "llama3" / "tokenizer.model")
    entries = pb.load_entries(SHARED / "petoolbench" / "test_dev.json.gz")

    encode = ChatRenderer(tokenizer).prompt_ids

    prompts = []
    for entry in entries:
        for setting in pb.SETTINGS:
            messages, _ = pb.fit_messages(entry, setting, lambda m: len(encode(m)), MAX_PROMPT_TOKENS)
            prompts.append(encode(messages))
            if len(prompts) == n_instances:
                return prompts
    return prompts


def synthetic_prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """Random ids with lengths spread around PEToolBench's median (~2,600 tokens)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    return [rng.randint(0, vocab, size=int(n_tok)).tolist() for n_tok in rng.randint(2450, 2750, size=n)]


def median_batch(prompts: list[list[int]], k: int) -> list[list[int]]:
    """The k prompts nearest the median length: one length-sorted batch from mid-benchmark."""
    ordered = sorted(prompts, key=len)
    mid = len(ordered) // 2
    return ordered[max(0, mid - k // 2):max(0, mid - k // 2) + k]


def bench_prompts(n_pool: int, vocab: int) -> tuple[list[list[int]], str]:
    if (SHARED / "petoolbench" / "test_dev.json.gz").is_file() and (SHARED / "llama3" / "tokenizer.model").is_file():
        pool = petoolbench_prompts(n_pool)
        source = f"PEToolBench test_dev, {n_pool} instances, LLaMA-3 tokenizer, fitted to {MAX_PROMPT_TOKENS}"
    else:
        pool = synthetic_prompts(16, vocab)
        source = "synthetic (no ../shared): random ids, 2,450-2,750 tokens"
    return [[t % vocab for t in p] for p in pool], source


def petool_generate(bundle, prompts, new_tokens, batch):
    from petool_jax.generation import generate_batch

    start = time.perf_counter()
    out = generate_batch(bundle, prompts, max_new_tokens=new_tokens, batch_size=batch, stop_ids=(), progress=False)
    return time.perf_counter() - start, out
