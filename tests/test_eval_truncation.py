"""`petool eval run --truncation history|authors` (eval/truncation.py through the JAX runner):
the authors' token ids exactly as their run_experiment.py gets them, and the per-setting
counts in the report on fixtures whose over-long prompts are known."""

from __future__ import annotations

import json

import pytest

from authors_fixtures import llama3_tokenizer, small_tokenizer
from eval.options import RunOptions
from eval.runners.jax_model import JaxModelRunner
from eval.runners.task import EvalTask
from eval.scoring import build_report
from eval.report import render_markdown
from eval_fixtures import rental_entry, seloger_entry, weather_entry
from petool_jax import petoolbench as pb
from petool_jax.chat import ChatRenderer

BUDGET = 1150  # with the small tokenizer: some prompts of each fixture entry over, some under
SETTINGS = ["p", "r", "c", "none"]


def authors_code_path(tokenizer, entry, setting, max_length):
    """Their lines: apply_chat_template(tokenize=False, add_generation_prompt=True), then
    tokenizer(prompt, truncation=True, max_length=4000)."""
    messages = [{"role": "system", "content": pb.instruction_text(entry, setting)},
                {"role": "user", "content": entry["query"]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"]), prompt


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("tok"))


def _entries():
    huge = weather_entry(entry_id=4)
    huge["query"] = " ".join(["What is the weather in Berlin today?"] * 60)  # the query alone is over
    return [rental_entry(), weather_entry(), seloger_entry(), huge]


class EchoGeneration:
    def generate_batches(self, bundle, batches, **kw):
        for prompts in batches:
            yield [[] for _ in prompts]


def _runner(tokenizer, **options):
    runner = JaxModelRunner.__new__(JaxModelRunner)  # no model: only the prompt side is tested
    runner.name, runner.bundle, runner.tokenizer = "stub", None, tokenizer
    runner.options = RunOptions(max_prompt_tokens=BUDGET, **options)
    runner._generation = EchoGeneration()
    return runner


def _run(tokenizer, truncation):
    entries = _entries()
    runner = _runner(tokenizer, truncation=truncation)
    tasks = [EvalTask(e, s) for s in SETTINGS for e in entries]
    batches = list(runner.plan(tasks, batch_size=4))
    rows = [r for b in batches for r in runner.run_batch(b)]
    predictions = {(r["entry_id"], r["setting"]): r for r in rows}
    report, _ = build_report(entries, predictions, SETTINGS, {"model": "stub", "truncation": truncation,
                                                              "max_prompt_tokens": BUDGET})
    return entries, [t for b in batches for t in b], report


def test_authors_truncation_gives_their_token_ids_and_counts(tokenizer):
    entries, tasks, report = _run(tokenizer, "authors")
    bos = tokenizer.bos_token_id
    for task in tasks:
        want, prompt = authors_code_path(tokenizer, task.entry, task.setting, BUDGET)
        assert task.prepared["ids"] == want
        assert want[:2] == [bos, bos]  # the template's BOS and the tokenizer's
    for s in SETTINGS:
        expected = {"cut": 0, "lost_query": 0}
        for entry in entries:
            kept, prompt = authors_code_path(tokenizer, entry, s, BUDGET)
            full = tokenizer(prompt)["input_ids"]
            expected["cut"] += len(full) > BUDGET
            expected["lost_query"] += entry["query"] not in tokenizer.decode(kept)
        counts = report["predictions"][s]
        assert {k: counts[k] for k in expected} == expected
        assert counts["shortened"] == expected["cut"] and counts["lost_history"] == counts["over_limit"] == 0
    assert report["predictions"]["p"]["cut"] == 3 and report["predictions"]["p"]["lost_query"] == 3
    markdown = render_markdown(report)
    assert "`--truncation authors`" in markdown and "| p | 3 | 3 | 0 | 0 | 0 |" in markdown


def test_history_truncation_counts(tokenizer):
    entries, tasks, report = _run(tokenizer, "history")
    renderer = ChatRenderer(tokenizer)
    count = lambda m: len(renderer.prompt_ids(m))  # noqa: E731
    fits = lambda e, s, drop, cap: count(pb.build_messages(e, s, drop, description_cap=cap)) <= BUDGET  # noqa: E731
    for task in tasks:
        assert task.entry["query"] in tokenizer.decode(task.prepared["ids"])  # never the query
    for s in SETTINGS:
        expected = {"cut": 0, "descriptions_cut": 0, "lost_history": 0, "over_limit": 0, "lost_query": 0}
        for entry in entries:
            n = len(pb.history_of(entry, s))
            if fits(entry, s, 0, None):
                continue
            expected["cut"] += 1
            if n and fits(entry, s, n - 1, None):
                continue  # oldest history entries only
            expected["descriptions_cut"] += 1
            expected["over_limit"] += not fits(entry, s, n, 0)
            expected["lost_history"] += n > 0 and not fits(entry, s, n - 1, 0)
        assert {k: report["predictions"][s][k] for k in expected} == expected, s
    for task in tasks:
        facts = task.prepared["truncation"]
        assert (len(task.prepared["ids"]) > BUDGET) == facts["over_limit"]
    # The fixture exercises every count: candidates alone over (none), history dropped (p), over the budget.
    p, none = report["predictions"]["p"], report["predictions"]["none"]
    assert p["cut"] > p["descriptions_cut"] >= 1 and p["over_limit"] == p["lost_history"] == 1
    assert none["descriptions_cut"] == 4 and none["lost_history"] == 0
    assert f"| none | 4 | 0 | 0 | 4 | {none['over_limit']} |" in render_markdown(report)


@pytest.mark.slow  # ~90 s: 1,836 prompts of ~2,600 tokens through the real tokenizer
def test_authors_truncation_on_the_release_with_the_real_tokenizer(shared_dir):
    """Their ids, and the counts the issue measured on the 612 released entries: 63 / 70 / 65
    prompts (p / r / c) over 4,000 tokens, 61 / 69 / 62 of them losing the whole query."""
    tokenizer = llama3_tokenizer(shared_dir)
    entries = pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")
    runner = _runner(tokenizer, truncation="authors")
    runner.options = RunOptions(max_prompt_tokens=4000, truncation="authors")
    counts = {}
    for s in ("p", "r", "c"):
        tasks = [EvalTask(e, s) for e in entries]
        list(runner.plan(tasks, batch_size=64))
        cut = [t for t in tasks if t.prepared["truncation"]["cut"]]
        whole_query_lost = 0
        for t in cut[:8]:  # exact ids on a sample of the over-long ones (each ~10 ms to encode)
            assert t.prepared["ids"] == authors_code_path(tokenizer, t.entry, s, 4000)[0]
        for t in cut:
            prompt = authors_code_path(tokenizer, t.entry, s, 4000)[1]
            query_start = prompt.rindex(t.entry["query"].strip())
            # None of the query is left: the kept ids end where the query's text begins, or before.
            whole_query_lost += len(t.prepared["ids"]) <= len(tokenizer(prompt[:query_start])["input_ids"])
            assert len(t.prepared["ids"]) == 4000 and t.prepared["ids"][:2] == [128000, 128000]
        counts[s] = (len(cut), whole_query_lost, sum(t.prepared["truncation"]["lost_query"] for t in tasks))
    assert {s: c[:2] for s, c in counts.items()} == {"p": (63, 61), "r": (70, 69), "c": (65, 62)}
    for s, (n_cut, whole, lost) in counts.items():
        assert whole <= lost <= n_cut
    uncut = next(e for e in entries if len(tokenizer(authors_code_path(tokenizer, e, "p", 10**6)[1])["input_ids"]) < 4000)
    assert runner.plan([EvalTask(uncut, "p")], 1) and authors_code_path(tokenizer, uncut, "p", 4000)[0][:2] == [128000] * 2
    print(json.dumps(counts))


@pytest.mark.slow  # ~45 s: 612 prompts, each over-long one fitted by binary search
def test_history_truncation_on_the_release_with_the_real_tokenizer(shared_dir):
    """The README's figures for setting p at 4,000 tokens: 63 prompts shortened, descriptions cut
    in the 45 whose candidate list alone is too long, none left without history or over."""
    tokenizer = llama3_tokenizer(shared_dir)
    entries = pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")
    runner = _runner(tokenizer, truncation="history")
    runner.options = RunOptions(max_prompt_tokens=4000)
    tasks = [EvalTask(e, "p") for e in entries]
    list(runner.plan(tasks, batch_size=64))
    facts = [t.prepared["truncation"] for t in tasks]
    counts = {k: sum(bool(f[k]) for f in facts) for k in ("cut", "descriptions_cut", "lost_history", "over_limit")}
    assert counts == {"cut": 63, "descriptions_cut": 45, "lost_history": 0, "over_limit": 0}
    renderer = ChatRenderer(tokenizer)
    alone = sum(len(renderer.prompt_ids(pb.build_messages(t.entry, "p", drop_oldest=100))) > 4000 for t in tasks)
    assert alone == 45  # the candidates alone (no history) are over the budget in exactly these
    for t in tasks:
        assert len(t.prepared["ids"]) <= 4000 and t.entry["query"] in tokenizer.decode(t.prepared["ids"][-200:])
