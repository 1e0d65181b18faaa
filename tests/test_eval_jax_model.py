"""`petool eval run --model <HF dir>` end to end on a tiny random LLaMA: real tokenizer, chat
template, oldest-history shortening, batched KV-cache generation, predictions, resume, report.

The answers of a random model are noise, but they are a deterministic function of the
prompt: equal responses from the run and from one-prompt-at-a-time generation on prompts
this test builds itself show the run fed exactly those prompts to the model.
"""

from __future__ import annotations

import json

import pytest

from eval.predictions import load_predictions
from eval_fixtures import small_benchmark, write_json
from hf_fixtures import make_hf_model
from petool_jax import generation
from petool_jax.attention_choice import resolve_attention
from petool_jax import petoolbench as pb
from petool_jax.app.cli import main as petool
from petool_jax.tokenizer import end_token_ids

MAX_NEW = 24
# Full prompts here are 1,324-1,665 tokens (512-token BPE): entry 2 (one history entry)
# fits this budget in every setting, entries 1 and 3 only after dropping history.
BUDGET = 1400


def _ids(encoded):
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def _prompt(tokenizer, entry, setting, dropped=0):
    messages = pb.build_messages(entry, setting, dropped)
    return _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaljax") / "hf"
    return path, make_hf_model(path, "llama3", seed=5)


def hf_greedy(model, ids, n, stops):
    """transformers' greedy continuation, cut before the first end token."""
    import torch

    x = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    return out[:next((i for i, t in enumerate(out) if t in stops), len(out))]


def test_eval_run_with_a_jax_model_end_to_end(hf_model, tmp_path, monkeypatch, capsys):
    model_dir, torch_model = hf_model
    entries = small_benchmark()
    data = write_json(tmp_path / "user_entries_test.json", entries)
    out = tmp_path / "run"
    calls = []
    real_generate = generation.generate_batches

    def counting_generate(bundle, batches, **kw):
        def seen():
            for prompts in batches:
                calls.append([len(p) for p in prompts])
                yield prompts
        return real_generate(bundle, seen(), **kw)

    monkeypatch.setattr(generation, "generate_batches", counting_generate)
    args = ["eval", "run", "--model", str(model_dir), "--data", str(data), "--out", str(out),
            "--batch-size", "4", "--max-new-tokens", str(MAX_NEW), "--max-prompt-tokens", str(BUDGET)]
    assert petool(args) == 0
    # 9 tasks sorted by prompt length, in batches of 4.
    assert [len(c) for c in calls] == [4, 4, 1]
    flat = [n for c in calls for n in c]
    assert flat == sorted(flat)

    path = out / "predictions.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = load_predictions(path, {e["entry_id"] for e in entries})  # raises on a duplicate
    assert len(lines) == 9 and set(rows) == {(e["entry_id"], s) for e in entries for s in pb.SETTINGS}

    bundle = generation.load_model(model_dir)
    tokenizer = bundle.tokenizer
    shortened = {}
    for entry in entries:
        for setting in pb.SETTINGS:
            row = rows[(entry["entry_id"], setting)]
            full = _prompt(tokenizer, entry, setting)
            dropped = row["n_dropped"]
            prompt = _prompt(tokenizer, entry, setting, dropped)
            shortened[(entry["entry_id"], setting)] = row["shortened"]
            assert row["shortened"] == (len(full) > BUDGET) == (dropped > 0)
            assert row["prompt_tokens"] == len(prompt) <= BUDGET
            if dropped:
                # The fewest oldest entries went: one fewer would not have fitted.
                assert len(_prompt(tokenizer, entry, setting, dropped - 1)) > BUDGET
                assert dropped < len(pb.history_of(entry, setting))
            text = tokenizer.decode(prompt)
            # The query is the last user turn; the candidates are still all there.
            assert text.endswith(entry["query"] + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
            assert all(c["tool_name"] in text for c in pb.candidates(entry))
            # Generation of this prompt alone (batch 1, greedy, the run's stop tokens).
            (alone,) = generation.generate_batch(bundle, [prompt], max_new_tokens=MAX_NEW, batch_size=1, progress=False)
            assert row["response"] == tokenizer.decode(alone, skip_special_tokens=True)
            assert row["ok"] is True and row["error"] is None
    assert shortened == {(e, s): e != 2 for e in (1, 2, 3) for s in pb.SETTINGS}
    # These prompts (1,324-1,374 tokens) take generation's one-pass blockwise prefill (the
    # `auto` kernel from 1,024 keys on the CPU): the longest one's answer equals transformers'
    # greedy one.
    bucket = generation.prompt_bucket(max(r["prompt_tokens"] for r in rows.values()) - 1)
    assert resolve_attention(bundle.options.attention, "cpu", bucket, "cache") == "blockwise"
    key, row = max(rows.items(), key=lambda kv: kv[1]["prompt_tokens"])
    entry = next(e for e in entries if e["entry_id"] == key[0])
    prompt = _prompt(tokenizer, entry, key[1], row["n_dropped"])
    stops = set(end_token_ids(tokenizer, bundle.config))
    assert row["response"] == tokenizer.decode(hf_greedy(torch_model, prompt, MAX_NEW, stops),
                                               skip_special_tokens=True)
    # The noise of a random model: responses of some length, not all alike.
    assert len({rows[k]["response"] for k in rows}) == 9
    assert sum(len(tokenizer.encode(r["response"], add_special_tokens=False)) for r in rows.values()) >= 60

    # The report states what the responses score: the authors' own scorer on them, every
    # wrong answer classified once, and report.md's table row from the same numbers.
    from report_checks import authors_scores, markdown_accuracy_row

    report = json.loads((out / "report.json").read_text())
    paper = [authors_scores(entries, rows, s) for s in pb.SETTINGS]
    for setting, expected in zip(pb.SETTINGS, paper):
        scores = report["scores"]["paper"][setting]
        assert scores["n"] == report["scores"]["strict"][setting]["n"] == 3
        assert (scores["tool_acc"], scores["param_acc"]) == expected
        strict = report["scores"]["strict"][setting]
        assert sum(report["errors"][setting].values()) == 3 - strict["call_correct"]
    overall = tuple(sum(p[i] for p in paper) / 3 for i in (0, 1))
    assert markdown_accuracy_row("paper", paper, overall) in (out / "report.md").read_text()

    # Rerunning the same command generates nothing and leaves the predictions as they were.
    before = path.read_bytes()
    calls.clear()
    capsys.readouterr()
    assert petool(args) == 0
    assert calls == []
    assert path.read_bytes() == before
    assert "9/9 predictions already done; 0 to go" in capsys.readouterr().err
