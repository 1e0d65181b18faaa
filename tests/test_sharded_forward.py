"""The same forward on 8 simulated CPU devices (fsdp x tensor, and data) equals the
single-device result, and the parameters really are split across devices."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from hf_fixtures import make_hf_model
from petool_jax.generation import generate_batch
from petool_jax.loading import load_model
from petool_jax.sharding import batch_sharding, make_mesh, mesh_rules


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("shard") / "hf"
    make_hf_model(path, "llama3.1")
    return path


def forward(bundle, tokens):
    @jax.jit
    def run(params, tokens):
        return bundle.model.apply({"params": params}, tokens)[0]

    with mesh_rules(bundle.mesh):
        tokens = jax.device_put(tokens, batch_sharding(bundle.mesh))
        return np.asarray(run(bundle.params, tokens))


@pytest.mark.parametrize("data,fsdp,tensor", [(1, 4, 2), (8, 1, 1), (2, 2, 2)])
def test_sharded_forward_equals_single_device(hf_dir, data, fsdp, tensor):
    assert jax.device_count() == 8
    tokens = np.random.RandomState(0).randint(0, 500, size=(8, 96))
    single = load_model(hf_dir, with_tokenizer=False, mesh=make_mesh(devices=jax.devices()[:1]))
    sharded = load_model(hf_dir, with_tokenizer=False, mesh=make_mesh(data, fsdp, tensor))
    np.testing.assert_allclose(forward(sharded, tokens), forward(single, tokens), atol=1e-5, rtol=0)

    q_kernel = sharded.params["layers"]["attn"]["q_proj"]["kernel"]  # [layers, embed, q_heads]
    assert q_kernel.sharding == NamedSharding(sharded.mesh, PartitionSpec(None, "fsdp", "tensor"))
    shard_shape = q_kernel.addressable_shards[0].data.shape
    assert shard_shape == (q_kernel.shape[0], q_kernel.shape[1] // fsdp, q_kernel.shape[2] // tensor)
    embedding = sharded.params["embed"]["embedding"]  # [vocab, embed]
    assert embedding.addressable_shards[0].data.shape == (512 // tensor, 64 // fsdp)


def test_data_parallel_generation_equals_single_device(hf_dir):
    prompts = [list(range(3, 3 + n)) for n in (4, 30, 11, 70, 5, 19, 40, 8)]
    single = load_model(hf_dir, mesh=make_mesh(devices=jax.devices()[:1]))
    sharded = load_model(hf_dir, mesh=make_mesh(8, 1, 1))
    a = generate_batch(single, prompts, max_new_tokens=10, batch_size=8, stop_ids=(), progress=False)
    b = generate_batch(sharded, prompts, max_new_tokens=10, batch_size=8, stop_ids=(), progress=False)
    assert a == b


def test_prefill_passes_stay_on_their_devices(hf_dir, monkeypatch):
    """A batch prefilled in several passes of rows (a small activation budget: 2 passes of
    4 rows on 4 data-parallel devices) gives the single-device answers, and each pass takes
    one row per device: the compiled prefill moves no rows between devices."""
    from petool_jax import generation

    prompts = [list(range(3, 3 + n)) for n in (4, 30, 11, 70, 5, 19, 40, 8)]
    single = load_model(hf_dir, mesh=make_mesh(devices=jax.devices()[:1]))
    sharded = load_model(hf_dir, mesh=make_mesh(4, 1, 2))
    reference = generate_batch(single, prompts, max_new_tokens=10, batch_size=8, stop_ids=(), progress=False)
    bucket = generation.prompt_bucket(69)
    monkeypatch.setattr(generation, "ACTIVATION_BUDGET_BYTES",
                        4 * 3 * bucket * sharded.config.intermediate_size * 4)
    assert generation.prefill_rows(8, bucket, sharded.config.intermediate_size, 4) == 4
    assert generation.prefill_rows(8, bucket, sharded.config.intermediate_size, 1) == 4
    generation.jitted_generation.cache_clear()
    try:
        assert generate_batch(sharded, prompts, max_new_tokens=10, batch_size=8, stop_ids=(),
                              progress=False) == reference
        tokens, _, start, _ = generation.pack_batch(prompts, 8, 0)
        prefill = generation.jitted_generation(sharded.config, sharded.options, 10, True, 4).prefill
        with mesh_rules(sharded.mesh):
            hlo = prefill.lower(sharded.params, jax.device_put(tokens, batch_sharding(sharded.mesh)),
                                jax.device_put(start, batch_sharding(sharded.mesh, 1))).compile().as_text()
    finally:
        generation.jitted_generation.cache_clear()
    # tensor parallelism reduces over its 2 devices; rows never move across the 4 data ones
    assert "all-reduce" in hlo
    for collective in ("all-gather", "all-to-all", "collective-permute"):
        assert collective not in hlo, collective


def test_indivisible_dimension_is_a_clear_error():
    import dataclasses

    from petool_jax.config import RuntimeOptions, load_model_config
    from petool_jax.errors import UserError
    from petool_jax.loading import init_params

    config = dataclasses.replace(load_model_config("tiny"), intermediate_size=100)
    with pytest.raises(UserError, match=r"\['mlp'\].*dim 100 does not divide over mesh axes \('tensor',\) \(8\)"):
        init_params(config, RuntimeOptions(), make_mesh(1, 1, 8))
