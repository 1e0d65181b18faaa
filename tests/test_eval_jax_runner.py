"""The JAX runner's prompt side: chat template, oldest-history shortening, length-sorted
batches, decoding. Generation itself is stubbed here (petool_jax.generation has its own tests)."""

from __future__ import annotations

import json

import pytest

from eval.options import RunOptions
from eval.runners.task import EvalTask
from eval.runners.jax_model import JaxModelRunner
from petool_jax.chat import token_ids
from eval_fixtures import rental_entry, seloger_entry, weather_entry
from petool_jax import petoolbench as pb


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from petool_jax.tokenizer import load_tokenizer, train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tok")
    texts = [e[k] + e["query"] for e in (rental_entry(), weather_entry(), seloger_entry())
             for k in pb.INSTRUCTION_KEYS.values()]
    train_bpe_tokenizer(texts * 3, 400, out)
    return load_tokenizer(out)


class StubGeneration:
    """Answers every prompt with its entry's truth call, as token ids; records the prompts."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def generate_batches(self, bundle, batches, **kw):
        for prompts in batches:
            self.calls.append((prompts, kw))
            yield [self.tokenizer.encode(self.answers[len(p)], add_special_tokens=False) for p in prompts]


def _runner(tokenizer, **options):
    runner = JaxModelRunner.__new__(JaxModelRunner)  # no model to load: generation is stubbed
    runner.name, runner.bundle, runner.tokenizer = "stub", None, tokenizer
    runner.options = RunOptions(**options)
    return runner


def _count(tokenizer, messages):
    # transformers 5 returns a BatchEncoding here, older versions a list: token_ids takes either.
    return len(token_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)))


def test_prompts_fit_by_dropping_oldest_history_and_rows_record_it(tokenizer):
    entries = [rental_entry(), weather_entry(), seloger_entry()]
    full = {e["entry_id"]: _count(tokenizer, pb.build_messages(e, "p")) for e in entries}
    # A budget the weather prompt (one history entry) fits and the rental prompt does not.
    budget = full[2] + 10
    assert full[1] > budget
    runner = _runner(tokenizer, max_prompt_tokens=budget, batch_size=2, max_new_tokens=40)
    batches = list(runner.plan([EvalTask(e, "p") for e in entries], batch_size=2))
    tasks = [t for b in batches for t in b]
    lengths = [len(t.prepared["ids"]) for t in tasks]
    assert lengths == sorted(lengths) and [len(b) for b in batches] == [2, 1]
    for task in tasks:
        ids, dropped = task.prepared["ids"], task.prepared["n_dropped"]
        assert len(ids) <= budget
        expected = token_ids(tokenizer.apply_chat_template(pb.build_messages(task.entry, "p", dropped),
                                                      add_generation_prompt=True, tokenize=True))
        assert ids == expected and all(isinstance(i, int) for i in ids)
        if dropped:  # the fewest entries: one fewer would not fit
            assert _count(tokenizer, pb.build_messages(task.entry, "p", dropped - 1)) > budget
        # The query is always the last user turn.
        assert task.entry["query"] in tokenizer.decode(ids)
    dropped = {t.entry["entry_id"]: t.prepared["n_dropped"] for t in tasks}
    assert dropped[2] == 0 and dropped[1] > 0

    answers = {len(t.prepared["ids"]): json.dumps(t.entry["api_call_ground_truth"]) for t in tasks}
    runner._generation = StubGeneration(tokenizer, answers)
    rows = [r for b in batches for r in runner.run_batch(b)]
    for task, row in zip(tasks, rows):
        assert row["entry_id"] == task.entry["entry_id"] and row["setting"] == "p"
        assert json.loads(row["response"]) == task.entry["api_call_ground_truth"]
        assert row["prompt_tokens"] == len(task.prepared["ids"])
        assert (row["shortened"], row["n_dropped"]) == (task.prepared["n_dropped"] > 0, task.prepared["n_dropped"])
    prompts, kw = runner._generation.calls[0]
    assert kw["max_new_tokens"] == 40 and kw["temperature"] == 0.0 and kw["batch_size"] == 2


def test_alpaca_prompt_format_uses_one_user_turn(tokenizer):
    runner = _runner(tokenizer, prompt_format="alpaca_user")
    (batch,) = list(runner.plan([EvalTask(weather_entry(), "c")], batch_size=4))
    text = tokenizer.decode(batch[0].prepared["ids"])
    assert "system" not in text.split("<|start_header_id|>")[1]
    assert text.count("<|start_header_id|>user<|end_header_id|>") == 1
