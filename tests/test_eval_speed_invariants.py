"""What eval's speed levers must not change: how prompts are grouped into batches, how the
prefill is cut into passes of rows, chunks and key windows, which attention kernel it
takes, and in which order prompts arrive. Answers and
KV caches stay the same; only the shapes (and the work and memory) change."""

import jax
import numpy as np
import pytest

from petool_jax import generation
from petool_jax.config import LlamaConfig, RuntimeOptions
from petool_jax.loading import ModelBundle, init_params
from petool_jax.model import Llama
from petool_jax.sharding import make_mesh

CONFIG = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                     rope_theta=10000.0, rope_scaling=None, max_position_embeddings=1024,
                     tie_word_embeddings=True, initializer_range=0.1)


@pytest.fixture(scope="module")
def bundle():
    options = RuntimeOptions()
    mesh = make_mesh(devices=jax.devices()[:1])
    return ModelBundle(CONFIG, options, Llama(CONFIG, options), init_params(CONFIG, options, mesh, seed=1), mesh)


def test_plan_batches_sorts_and_never_pads_rows():
    rng = np.random.RandomState(0)
    for n, batch_size in ((120, 16), (121, 16), (7, 16), (16, 16), (37, 8), (5, 1)):
        lengths = rng.randint(1, 5000, size=n).tolist()
        groups = generation.plan_batches(lengths, batch_size)
        flat = [i for g in groups for i in g]
        assert sorted(flat) == list(range(n))  # every prompt once
        assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first
        sizes = [len(g) for g in groups]
        full = n // batch_size
        assert sizes[:full] == [batch_size] * full
        rest = sizes[full:]
        # The rest is n mod batch_size in falling powers of two (121 = 7 x 16 + 8 + 1).
        assert sum(rest) == n % batch_size and rest == sorted(rest, reverse=True)
        assert all(s & (s - 1) == 0 for s in rest) and len(set(rest)) == len(rest)
        if batch_size & (batch_size - 1) == 0:  # then no batch needs a padding row
            assert all(generation.batch_rows(s, batch_size) == s for s in sizes)
    assert generation.plan_batches([3, 1, 2], 16) == [[1, 2], [0]]
    assert generation.batch_rows(3, 16) == 4 and generation.batch_rows(9, 16) == 16
    assert generation.batch_rows(3, 16, multiple=8) == 8 and generation.batch_rows(20, 12) == 12


def test_prefill_chunk_divides_the_bucket_and_bounds_the_scores():
    budget = generation.SCORES_BUDGET_BYTES
    for length in range(60, 12000, 37):
        bucket = generation.prompt_bucket(length)
        for rows in (1, 4, 16):
            chunk = generation.prefill_chunk(bucket, rows, 32)
            assert bucket % chunk == 0
            assert rows * 32 * chunk * bucket * 4 <= budget or chunk == generation.MIN_CHUNK
            assert chunk == bucket or rows * 32 * bucket * bucket * 4 > budget
    # 16 PEToolBench-length prompts (bucket 2,560), 4 heads (bench.eval_process's model):
    # 16-slot chunks, 10.5 MB of scores against 1.7 GB for one unchunked pass.
    assert generation.SCORES_BUDGET_BYTES == 16 * 2**20
    assert generation.prefill_chunk(2560, 16, 4) == 16
    assert generation.prefill_chunk(2560, 1, 4) == 256


def prefill_cache(bundle, prompts, rows):
    tokens, _, start, _ = generation.pack_batch(prompts, rows, 0)
    jitted = generation.jitted_generation(bundle.config, bundle.options, 4, True)
    return jitted.prefill(bundle.params, tokens, start), tokens.shape[1]


def test_chunked_windowed_prefill_equals_one_pass(bundle, monkeypatch):
    rng = np.random.RandomState(1)
    prompts = [rng.randint(0, 256, size=n).tolist() for n in (250, 190, 97, 5)]
    one_pass, bucket = prefill_cache(bundle, prompts, 4)
    assert bucket == 256 and generation.prefill_chunk(bucket, 4, 4) == bucket
    # A small budget: 32-slot chunks, 8 of them in 4 windows of 2 (64, 128, 192, 256 slots).
    monkeypatch.setattr(generation, "SCORES_BUDGET_BYTES", 4 * 4 * 32 * 256 * 4)
    monkeypatch.setattr(generation, "MIN_CHUNK", 32)
    generation.jitted_generation.cache_clear()
    assert generation.prefill_chunk(bucket, 4, 4) == 32
    chunked, _ = prefill_cache(bundle, prompts, 4)
    generation.jitted_generation.cache_clear()
    assert chunked.k.shape == one_pass.k.shape == (2, 4, 256 + 4, 2, 16)
    np.testing.assert_array_equal(np.asarray(chunked.start), np.asarray(one_pass.start))
    for name in ("k", "v"):
        a, b = np.asarray(getattr(chunked, name)), np.asarray(getattr(one_pass, name))
        start = np.asarray(one_pass.start)
        for r in range(4):  # real slots only: padding slots hold whatever the pad token gave
            np.testing.assert_allclose(a[:, r, start[r]:bucket], b[:, r, start[r]:bucket], atol=1e-5, rtol=0)
        assert not a[:, :, bucket:].any()  # the free slots for generated tokens are zero


def test_answers_do_not_depend_on_order_batch_size_or_chunking(bundle, monkeypatch):
    rng = np.random.RandomState(2)
    # buckets 64, 64, 64, 64, 160, 160, 256: few shapes to compile
    prompts = [rng.randint(0, 256, size=n).tolist() for n in (3, 60, 17, 9, 131, 150, 250)]

    def answers(items, batch_size):
        return generation.generate_batch(bundle, items, max_new_tokens=6, batch_size=batch_size, stop_ids=(),
                                         progress=False)

    reference = [answers([p], 1)[0] for p in prompts]
    assert len({tuple(a) for a in reference}) > 3  # the random model says different things
    order = rng.permutation(len(prompts))
    shuffled = answers([prompts[i] for i in order], 4)  # batches of 4, 2 and 1 rows
    assert [shuffled[list(order).index(i)] for i in range(len(prompts))] == reference
    # Chunked prefill: the 2 x 160 batch in 5 chunks of 32 (windows of 2, 2, 1), the
    # 1 x 256 one in 4 of 64 (4 windows of 1); the 4 x 64 one stays whole.
    monkeypatch.setattr(generation, "SCORES_BUDGET_BYTES", 2 * 4 * 32 * 256 * 4)
    monkeypatch.setattr(generation, "MIN_CHUNK", 32)
    assert [generation.prefill_chunk(b, r, 4) for b, r in ((64, 4), (160, 2), (256, 1))] == [64, 32, 64]
    generation.jitted_generation.cache_clear()
    try:
        assert answers(prompts, 4) == reference
    finally:
        generation.jitted_generation.cache_clear()


def test_prefill_rows_bound_the_activations():
    budget = generation.ACTIVATION_BUDGET_BYTES
    for rows, multiple in ((1, 1), (2, 1), (3, 1), (8, 1), (12, 1), (16, 1), (8, 4), (16, 8), (12, 6)):
        for bucket in (64, 1024, 2560, 4096, 10240):
            group = generation.prefill_rows(rows, bucket, 1024, multiple)
            assert rows % group == 0 and group % multiple == 0
            assert group * 3 * bucket * 1024 * 4 <= budget or group == multiple
            # as many rows as fit: the next larger divisor does not
            larger = [g for g in range(group + multiple, rows + 1, multiple) if rows % g == 0]
            assert not larger or larger[0] * 3 * bucket * 1024 * 4 > budget
    # bench.eval_process's batches (intermediate 1,024): 4 rows of 2,560 slots, 2 of 3,072 and 4,096.
    assert generation.ACTIVATION_BUDGET_BYTES == 128 * 2**20
    assert [generation.prefill_rows(16, b, 1024) for b in (2560, 3072, 4096)] == [4, 2, 2]
    assert generation.prefill_rows(12, 2560, 1024) == 4 and generation.prefill_rows(12, 64, 1024) == 12
    assert generation.prefill_rows(16, 10240, 1024, 8) == 8  # never fewer than one row per device


@pytest.mark.parametrize("attention", ["xla", "blockwise"])
def test_prefill_in_row_passes_equals_one_pass(attention, monkeypatch):
    options = RuntimeOptions(attention=attention)
    mesh = make_mesh(devices=jax.devices()[:1])
    bundle = ModelBundle(CONFIG, options, Llama(CONFIG, options), init_params(CONFIG, options, mesh, seed=1), mesh)
    rng = np.random.RandomState(3)
    prompts = [rng.randint(0, 256, size=n).tolist() for n in (250, 190, 97, 5)]
    try:
        generation.jitted_generation.cache_clear()
        one_pass, bucket = prefill_cache(bundle, prompts, 4)
        # a budget of one row's activations: 4 passes of 1 row
        monkeypatch.setattr(generation, "ACTIVATION_BUDGET_BYTES", 3 * 256 * CONFIG.intermediate_size * 4)
        assert generation.prefill_rows(4, bucket, CONFIG.intermediate_size) == 1
        generation.jitted_generation.cache_clear()
        by_row, _ = prefill_cache(bundle, prompts, 4)
    finally:
        generation.jitted_generation.cache_clear()
    start = np.asarray(one_pass.start)
    for name in ("k", "v"):
        a, b = np.asarray(getattr(by_row, name)), np.asarray(getattr(one_pass, name))
        for r in range(4):
            np.testing.assert_allclose(a[:, r, start[r]:bucket], b[:, r, start[r]:bucket], atol=1e-6, rtol=0)
        assert not a[:, :, bucket:].any()


def test_blockwise_prefill_equals_the_xla_one(bundle):
    """The one-pass blockwise prefill (auto's choice from 1,024 keys on the CPU) gives the
    cache the dense chunked one gives, and the same answers."""
    rng = np.random.RandomState(4)
    prompts = [rng.randint(0, 256, size=n).tolist() for n in (250, 190, 97, 5)]
    caches, answers = {}, {}
    for attention in ("xla", "blockwise"):
        options = RuntimeOptions(attention=attention)
        other = ModelBundle(CONFIG, options, Llama(CONFIG, options), bundle.params, bundle.mesh)
        generation.jitted_generation.cache_clear()
        caches[attention], bucket = prefill_cache(other, prompts, 4)
        answers[attention] = generation.generate_batch(other, prompts, max_new_tokens=8, batch_size=4, stop_ids=(),
                                                       progress=False)
    generation.jitted_generation.cache_clear()
    start = np.asarray(caches["xla"].start)
    for name in ("k", "v"):
        a, b = np.asarray(getattr(caches["blockwise"], name)), np.asarray(getattr(caches["xla"], name))
        for r in range(4):
            np.testing.assert_allclose(a[:, r, start[r]:bucket], b[:, r, start[r]:bucket], atol=1e-5, rtol=0)
    assert answers["blockwise"] == answers["xla"]
    assert len({tuple(a) for a in answers["xla"]}) > 1
