"""SFT data: assistant-only targets from the chat template, oldest-history truncation,
deterministic batches, and errors for bad files and configs."""

import json
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from hf_fixtures import make_tokenizer
from petool_jax.errors import UserError
from petool_jax.petoolbench import render_instruction, split_instruction
from petool_jax.train.config import load_train_config
from petool_jax.chat import ChatRenderer
from petool_jax.train.sft_data import (SequenceBatcher, check_batch_has_targets,
                                       load_sft_examples, tokenize_example, tokenized_dataset)
from train_fixtures import sft_records, write_sft


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def example(record):
    return {"id": "x", "instruction": record["instruction"], "query": record["input"], "answer": record["output"]}


def test_targets_are_exactly_the_assistant_turn(tokenizer):
    renderer = ChatRenderer(tokenizer)
    record = sft_records(1, seed=3)[0]
    out = tokenize_example(renderer, example(record), "system_user", 4096)
    ids, mask = np.array(out["input_ids"]), np.array(out["assistant_mask"])
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": record["instruction"]}, {"role": "user", "content": record["input"]},
         {"role": "assistant", "content": record["output"]}], tokenize=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids[mask == 1]) == record["output"] + "<|eot_id|>"
    assert mask.sum() == len(tokenizer(record["output"] + "<|eot_id|>", add_special_tokens=False)["input_ids"])
    assert (mask[:np.argmax(mask)] == 0).all() and (mask[np.argmax(mask):] == 1).all()


def test_changing_the_prompt_changes_no_target(tokenizer):
    renderer = ChatRenderer(tokenizer)
    a, b = sft_records(2, seed=4)
    b = dict(b, output=a["output"])  # same answer, different history/query
    ea = tokenize_example(renderer, example(a), "system_user", 4096)
    eb = tokenize_example(renderer, example(b), "system_user", 4096)
    batcher = SequenceBatcher([ea["input_ids"], eb["input_ids"]], [ea["assistant_mask"], eb["assistant_mask"]],
                              batch_size=2, micro_batch_size=2, max_seq_len=4096, seed=0)
    batch = batcher.batch(0)
    targets = [batch["targets"][0, r][batch["loss_mask"][0, r] == 1].tolist() for r in range(2)]
    assert targets[0] == targets[1] and len(targets[0]) > 5
    assert batch["loss_mask"].sum() == 2 * len(targets[0])


def test_alpaca_prompt_format_is_one_user_turn(tokenizer):
    renderer = ChatRenderer(tokenizer)
    record = sft_records(1, seed=5)[0]
    out = tokenize_example(renderer, example(record), "alpaca_user", 4096)
    text = tokenizer.decode(out["input_ids"])
    assert "<|start_header_id|>system" not in text
    assert f"{record['instruction']}\n{record['input']}".strip() in text


def test_truncation_drops_oldest_history_and_keeps_query(tokenizer, tmp_path):
    renderer = ChatRenderer(tokenizer)
    record = sft_records(1, seed=6, history_len=12)[0]
    full = tokenize_example(renderer, example(record), "system_user", 100000)
    limit = len(full["input_ids"]) - 40
    cut = tokenize_example(renderer, example(record), "system_user", limit)
    assert cut["fits"] and len(cut["input_ids"]) <= limit and cut["n_dropped"] >= 1
    text = tokenizer.decode(cut["input_ids"])
    head, history, tail = split_instruction(record["instruction"])
    n = cut["n_dropped"]
    assert render_instruction(head, history[n:], tail).strip() in text  # the newest entries, intact
    assert render_instruction(head, history[n - 1:], tail).strip() not in text
    assert record["input"] in text and record["output"] in text and "Tools:" in text
    # dropping one entry fewer would not fit: the fewest oldest entries went
    one_fewer = [{"role": "system", "content": render_instruction(head, history[n - 1:], tail)},
                 {"role": "user", "content": record["input"]}]
    assert len(renderer.full_ids(one_fewer, record["output"])) > limit

    path = write_sft(tmp_path / "d.json", 6, seed=6, history_len=12)
    ds, summary = tokenized_dataset([str(path)], tokenizer, ["p"], "system_user", limit, 0, "auto",
                                    tmp_path / "cache", log=lambda *_: None)
    assert summary["shortened"] >= 1 and summary["examples"] + summary["skipped_too_long"] == 6
    # the second call is served from the datasets cache with the same content
    ds2, _ = tokenized_dataset([str(path)], tokenizer, ["p"], "system_user", limit, 0, "auto",
                               tmp_path / "cache", log=lambda *_: None)
    assert ds2["input_ids"] == ds["input_ids"]


def test_petoolbench_entries_give_one_example_per_setting(tmp_path):
    from eval_fixtures import small_benchmark

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(small_benchmark()))
    examples = load_sft_examples([str(path)], ["p", "c"])
    entries = small_benchmark()
    assert len(examples) == 2 * len(entries)
    first = json.loads(examples[0]["answer"])
    assert first == entries[0]["api_call_ground_truth"]
    assert examples[1]["instruction"] == entries[0]["instruction_chronological"]


def test_batches_are_a_pure_function_of_the_step():
    seqs = [list(range(3, 3 + n)) for n in (5, 9, 7, 12, 4, 6, 8, 10, 11)]
    masks = [[0, 0] + [1] * (len(s) - 2) for s in seqs]
    a = SequenceBatcher(seqs, masks, batch_size=4, micro_batch_size=2, max_seq_len=64, seed=7)
    b = SequenceBatcher(seqs, masks, batch_size=4, micro_batch_size=2, max_seq_len=64, seed=7)
    assert a.steps_per_epoch() == 3
    for step in (4, 0, 2, 5):
        x, y = a.batch(step), b.batch(step)
        for key in ("tokens", "targets", "loss_mask", "positions", "segment_ids"):
            np.testing.assert_array_equal(x[key], y[key])
    epoch0 = sorted(i for s in range(3) for r in a.batch(s)["rows"] for i in r)
    assert epoch0 == list(range(9))  # every example once per epoch
    assert a.batch(0)["rows"] != a.batch(3)["rows"]  # a new permutation next epoch
    packed = SequenceBatcher(seqs, masks, batch_size=2, micro_batch_size=2, max_seq_len=32, seed=7, packing=True)
    batch = packed.batch(0)
    assert batch["segment_ids"].max() > 1  # several examples share a row
    row = batch["segment_ids"][0, 0]
    first_len = int((row == 1).sum())
    assert batch["positions"][0, 0, first_len] == 0  # positions restart in each segment


def test_empty_assistant_mask_is_an_error():
    batcher = SequenceBatcher([[1, 2, 3, 4]], [[0, 0, 0, 0]], batch_size=1, micro_batch_size=1, max_seq_len=16,
                              seed=0)
    with pytest.raises(UserError, match="step 0: the batch has no assistant tokens"):
        check_batch_has_targets(batcher.batch(0), 0)


def test_bad_files_name_file_line_and_field(tmp_path):
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"instruction": "a", "input": "b", "output": "c"}\n\n{"instruction": oops}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:3: malformed JSON line"):
        load_sft_examples([str(bad_lines)], ["p"])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[\n {"instruction": "a",\n  "input": "b"\n  "output": "c"}\n]')
    with pytest.raises(UserError, match=r"bad.json:4: malformed JSON"):
        load_sft_examples([str(bad_json)], ["p"])
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([{"instruction": "a", "input": "b", "output": "c"}, {"instruction": "a",
                                                                                       "input": "b"}]))
    with pytest.raises(UserError, match=r"missing.json: record 1 lacks the field 'output'"):
        load_sft_examples([str(missing)], ["p"])
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(UserError, match=r"no training examples in"):
        load_sft_examples([str(empty)], ["p"])


def test_config_keys_are_checked(tmp_path):
    good = ["model=m", "data.train=d.json", "output_dir=o"]
    config = load_train_config("configs/train/sft_paper.yaml", good + ["lora.rank=0", "mesh.tensor=2",
                                                                       "learning_rate=2e-5"])
    assert config.lora.rank == 0 and config.mesh.tensor == 2 and config.lora.alpha == 16.0
    assert config.batch_size == 16 and config.optimizer.learning_rate == 2e-5 and config.optimizer.warmup_ratio == 0.1
    assert config.data.train == ("d.json",) and config.data.settings == ("p", "r", "c")
    assert config.raw["learning_rate"] == 2e-5  # what config.yaml records
    with pytest.raises(FrozenInstanceError):
        config.lora.rank = 4
    with pytest.raises(UserError, match="override lora.rnak=...: unknown key 'lora.rnak'; known keys: alpha, "
                                        "dropout, rank"):
        load_train_config(None, good + ["lora.rnak=4"])
    with pytest.raises(UserError, match="override lora.rank=...: key 'lora.rank' expects an integer, got 'eight'"):
        load_train_config(None, good + ["lora.rank=eight"])
    preset = tmp_path / "p.yaml"
    preset.write_text("model: m\nlearning_rat: 0.1\n")
    with pytest.raises(UserError, match="p.yaml: unknown key 'learning_rat'; known keys: adam_b1"):
        load_train_config(preset, good)
    with pytest.raises(UserError, match=r"batch_size \(16\) must be a positive multiple of micro_batch_size \(3\)"):
        load_train_config(None, good + ["micro_batch_size=3"])


def test_gathered_loss_equals_the_full_sequence_loss(tmp_path):
    """The SFT loss computed from logits at the target positions only equals the loss from
    logits at every position."""
    import jax

    from hf_fixtures import make_hf_model
    from petool_jax.loading import load_model
    from petool_jax.train.sft import make_sft_loss
    from petool_jax.train import params as P

    make_hf_model(tmp_path, "llama3.1")
    bundle = load_model(tmp_path, with_tokenizer=False)
    rng = np.random.RandomState(0)
    seqs = [rng.randint(1, 500, n).tolist() for n in (30, 45, 12, 60)]
    masks = [[0] * (n - 8) + [1] * 8 for n in (30, 45, 12, 60)]
    batch = SequenceBatcher(seqs, masks, batch_size=4, micro_batch_size=4, max_seq_len=128, seed=0,
                            packing=True).batch(0)
    mb = {k: v[0] for k, v in batch.items() if isinstance(v, np.ndarray)}
    assert mb["target_mask"].sum() == mb["loss_mask"].sum() == 32
    full = {k: v for k, v in mb.items() if not k.startswith("target_")}
    loss_fn = jax.jit(lambda p, m: make_sft_loss(bundle.model)(P.flatten(p), {}, m, 32.0)[0])
    np.testing.assert_allclose(loss_fn(bundle.params, mb), loss_fn(bundle.params, full), rtol=1e-6)
