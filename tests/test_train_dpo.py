"""DPO: loss formulas, prefix-shared log-probs, reference strategies, sharding, learning."""

import json
import math

import jax
import numpy as np
import pytest

from petool_jax.app.cli import main as petool
from petool_jax.train.dpo_losses import preference_loss
from train_fixtures import make_train_world, read_metrics, train_args

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("dpo"), "dpo", 32, model_seed=7, data_seed=3)


def dpo_args(world, out, *extra):
    return train_args("dpo", world, out, "checkpoint_every=100", "mesh.fsdp=1", *extra)


metrics = read_metrics


# ---- formulas -------------------------------------------------------------------------
def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def numpy_losses(kind, pc, pr, rc, rr, nc, nr, beta, eps, gamma):
    if kind == "sigmoid":
        h = beta * ((pc - rc) - (pr - rr))
        return -(1 - eps) * np_log_sigmoid(h) - eps * np_log_sigmoid(-h)
    if kind == "ipo":
        return ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * beta)) ** 2
    if kind == "hinge":
        return np.maximum(0.0, 1 - beta * ((pc - rc) - (pr - rr)))
    if kind == "simpo":
        return -np_log_sigmoid(beta * pc / nc - beta * pr / nr - gamma)
    if kind == "orpo":
        mc, mr = pc / nc, pr / nr
        log_odds = (mc - np.log(1 - np.exp(mc))) - (mr - np.log(1 - np.exp(mr)))
        return -mc - beta * np_log_sigmoid(log_odds)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "hinge", "simpo", "orpo"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_each_loss_equals_its_formula(kind, eps):
    rng = np.random.RandomState(0)
    pc, pr = -rng.uniform(5, 60, 16), -rng.uniform(5, 60, 16)
    rc, rr = pc + rng.normal(0, 3, 16), pr + rng.normal(0, 3, 16)
    nc, nr = rng.randint(5, 40, 16).astype(float), rng.randint(5, 40, 16).astype(float)
    ours, _, _ = preference_loss(kind, *(np.float32(x) for x in (pc, pr, rc, rr, nc, nr)), beta=0.1,
                                 label_smoothing=eps if kind == "sigmoid" else 0.0, simpo_gamma=0.5)
    expected = numpy_losses(kind, pc, pr, rc, rr, nc, nr, 0.1, eps if kind == "sigmoid" else 0.0, 0.5)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-6, atol=1e-6)


# ---- prefix sharing ----------------------------------------------------------------------
def full_sequence_logps(forward, params, prompt, response):
    """Sum of log p(response | prompt) from one plain causal forward of prompt + response
    (right-padded to 128 tokens, which cannot affect earlier positions: one compile)."""
    tokens = np.zeros((1, 128), np.int32)
    tokens[0, :len(prompt) + len(response)] = prompt + response
    logits, _ = forward({"params": params}, tokens)
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64)[0], axis=-1)
    return sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(response))


@pytest.mark.parametrize("packing", [False, True])
def test_prefix_shared_logps_equal_two_sequences(world, packing):
    from petool_jax.loading import load_model
    from petool_jax.train.dpo import pair_logps
    from petool_jax.train.dpo_data import PairBatcher

    bundle = load_model(world / "hf", with_tokenizer=False)
    rng = np.random.RandomState(1)
    prompts = [rng.randint(1, 500, n).tolist() for n in (40, 17, 63, 25, 9)]  # different prompt lengths
    chosen = [rng.randint(1, 500, n).tolist() for n in (5, 12, 3, 8, 6)]
    rejected = [rng.randint(1, 500, n).tolist() for n in (9, 4, 3, 11, 2)]
    batcher = PairBatcher(prompts, chosen, rejected, batch_size=4, micro_batch_size=4, max_seq_len=256, seed=0,
                          packing=packing, pairs_per_row=3)
    shared, separate = batcher.batch(0), batcher.batch(0, layout="separate")
    if packing:
        assert shared["pair_valid"].sum(-1).max() > 1  # rows really hold several pairs
    assert (shared["tokens"] == 0).any()  # and padding
    logps = jax.jit(lambda params, mb: pair_logps(bundle.model, params, mb))
    forward = jax.jit(bundle.model.apply)
    sq = {k: v[0] for k, v in shared.items() if isinstance(v, np.ndarray)}
    c, r = (np.asarray(x) for x in logps(bundle.params, sq))
    cs, _ = (np.asarray(x) for x in logps(bundle.params, {k: v[0] for k, v in separate["chosen"].items()}))
    _, rs = (np.asarray(x) for x in logps(bundle.params, {k: v[0] for k, v in separate["rejected"].items()}))
    valid = sq["pair_valid"] > 0
    np.testing.assert_allclose(c[valid], cs[valid], atol=1e-5, rtol=0)
    np.testing.assert_allclose(r[valid], rs[valid], atol=1e-5, rtol=0)
    seen = 0
    for row, slot in zip(*np.nonzero(valid)):
        i = sq["pair_index"][row, slot]
        expected_c = full_sequence_logps(forward, bundle.params, prompts[i], chosen[i])
        expected_r = full_sequence_logps(forward, bundle.params, prompts[i], rejected[i])
        np.testing.assert_allclose(c[row, slot], expected_c, atol=1e-4)
        np.testing.assert_allclose(r[row, slot], expected_r, atol=1e-4)
        seen += 1
    assert seen == 4 if not packing else seen == 5


# ---- references, learning, sharding ----------------------------------------------------------
def test_init_reference_starts_at_ln2_with_zero_rewards(world, tmp_path):
    out = tmp_path / "init"
    assert petool(dpo_args(world, out, "batch_size=8", "micro_batch_size=4", "max_steps=1", "lora.rank=4",
                           "dpo.reference=init", "learning_rate=1e-3")) == 0
    first = metrics(out)[0]
    assert abs(first["loss"] - math.log(2)) < 1e-6
    # Policy and reference are the same weights; they run in different XLA computations
    # (one under grad), so the rewards are 0 up to float32 rounding of summed log-probs.
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margin"):
        assert abs(first[key]) < 1e-6, key


def test_reference_stays_frozen_and_precomputed_matches_init(world, tmp_path):
    from petool_jax.train.config import load_train_config
    from petool_jax.train.dpo import build_dpo_task
    from petool_jax.train.setup import load_policy, mesh_from_config
    from petool_jax.train.trainer import train

    def config(name, reference):
        return load_train_config(None, dpo_args(world, tmp_path / name, "batch_size=8", "micro_batch_size=4",
                                          "max_steps=3", "lora.rank=4", f"dpo.reference={reference}",
                                          "learning_rate=1e-2")[2:])

    cfg = config("init", "init")
    policy = load_policy(cfg.model, cfg, mesh_from_config(cfg))
    task, _ = build_dpo_task(cfg, policy, tmp_path / "init", log=lambda *_: None)
    before = {k: np.asarray(v).copy() for k, v in task.frozen_extra.items()}
    start_trainable = {k: np.asarray(v).copy() for k, v in policy.trainable.items()}
    assert before and all(k.startswith("ref/") and "lora_" in k for k in before)  # adapter only
    result = train(cfg, policy, task, tmp_path / "init")
    for key, value in task.frozen_extra.items():
        assert np.asarray(value).tobytes() == before[key].tobytes(), key
    changed = [k for k, v in result["state"]["trainable"].items()
               if not np.array_equal(np.asarray(v), start_trainable[k])]
    assert changed  # the policy moved

    pre = config("pre", "precomputed")
    policy2 = load_policy(pre.model, pre, mesh_from_config(pre))
    task2, extra = build_dpo_task(pre, policy2, tmp_path / "pre", log=lambda *_: None)
    assert not task2.frozen_extra  # no reference weights held
    assert list((tmp_path / "pre").glob("reference_logps-*.npy"))
    result2 = train(pre, policy2, task2, tmp_path / "pre")
    np.testing.assert_allclose(result2["losses"][0], result["losses"][0], atol=1e-6)


def test_sharded_dpo_equals_single_device(world, tmp_path):
    runs = {}
    for name, mesh in {"one": (1, 1, 1), "fsdp4_tensor2": (1, 4, 2)}.items():
        out = tmp_path / name
        assert petool(dpo_args(world, out, "batch_size=8", "micro_batch_size=8", "max_steps=3", "lora.rank=0",
                               "dpo.reference=base", "learning_rate=1e-3", f"mesh.data={mesh[0]}",
                               f"mesh.fsdp={mesh[1]}", f"mesh.tensor={mesh[2]}")) == 0
        runs[name] = [m["loss"] for m in metrics(out)]
    assert len(runs["one"]) == 3
    np.testing.assert_allclose(runs["fsdp4_tensor2"], runs["one"], atol=1e-5, rtol=0)


def test_short_run_learns_the_preference(world, tmp_path):
    out = tmp_path / "learn"
    assert petool(dpo_args(world, out, "batch_size=8", "micro_batch_size=8", "epochs=3", "lora.rank=8",
                           "dpo.reference=base", "learning_rate=2e-2", "schedule=constant",
                           "dpo.beta=0.5")) == 0
    last = metrics(out)[-3:]
    assert np.mean([m["rewards/accuracy"] for m in last]) > 0.5
    assert np.mean([m["rewards/margin"] for m in last]) > 0


def test_pairs_from_petoolbench_entries(tmp_path):
    from eval_fixtures import small_benchmark
    from petool_jax import petoolbench
    from petool_jax.train.dpo_data import load_pairs

    entries = small_benchmark()
    path = tmp_path / "train.json"
    path.write_text(json.dumps(entries))
    pairs = load_pairs([str(path)], ["p", "r"], {"same_func": 1.0}, seed=0)
    assert len(pairs) == 2 * len(entries)
    with_equivalents = 0
    for pair, entry in zip(pairs[::2], entries):
        chosen, rejected = json.loads(pair["chosen"]), json.loads(pair["rejected"])
        assert chosen == entry["api_call_ground_truth"] and rejected["tool_name"] != chosen["tool_name"]
        if len(petoolbench.same_func_tool_names(entry)) > 1:  # else it falls back to another kind
            assert rejected["tool_name"] in petoolbench.same_func_tool_names(entry)
            assert rejected["parameters"] == chosen["parameters"]
            with_equivalents += 1
    assert with_equivalents >= 2
    other = load_pairs([str(path)], ["p"], {"other_func": 1.0}, seed=0)
    for pair, entry in zip(other, entries):
        assert json.loads(pair["rejected"])["tool_name"] not in petoolbench.same_func_tool_names(entry)
    corrupt = load_pairs([str(path)], ["p"], {"corrupt_params": 1.0}, seed=0)
    for pair, entry in zip(corrupt, entries):
        rejected = json.loads(pair["rejected"])
        assert rejected["tool_name"] == entry["api_call_ground_truth"]["tool_name"]
        assert rejected["parameters"] != entry["api_call_ground_truth"]["parameters"]
    assert load_pairs([str(path)], ["p"], {"same_func": 1.0}, seed=0) == pairs[::2]  # deterministic


def test_bad_dpo_inputs(tmp_path, world):
    from petool_jax.errors import UserError
    from petool_jax.train.config import load_train_config
    from petool_jax.train.dpo_data import load_pairs

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "i", "input": "q", "chosen": "a"}]))
    with pytest.raises(UserError, match="bad.json: record 0 lacks the field 'rejected'"):
        load_pairs([str(bad)], ["p"], {"same_func": 1.0}, 0)
    with pytest.raises(UserError, match="dpo.negatives"):
        load_pairs([str(bad)], ["p"], {"nonsense": 1.0}, 0)
    config = load_train_config(None, dpo_args(world, tmp_path / "x", "dpo.loss=kto")[2:])
    from petool_jax.train.dpo import checked_dpo

    with pytest.raises(UserError, match="dpo.loss 'kto' is not one of"):
        checked_dpo(config.dpo)
