"""The real LLaMA-3 tokenizer (../shared/llama3/tokenizer.model) over the 612 real entries
(../shared/petoolbench/test_dev.json.gz); skipped without ../shared.

What is checked has a source outside the code under test: the tokenizer's own counts of
the rendered text, the data README's measured prompt lengths, the raw `query` and
`apis_candidate` strings of each entry, and the released history (the kept part must be
its newest entries, and dropping one entry fewer must not fit).

Default run (about 30-60 s on 2 busy cores; the tokenizer needs ~10 ms per 10k-character
prompt): eval prompts for all 612 x 3 instances; SFT and DPO tokenization for 30 instances
just under, just over and far over the 4,096-token cutoff. With -m slow: SFT and DPO
tokenization for all 1,836 instances."""

from __future__ import annotations

import collections
import hashlib
import statistics

import numpy as np

import pytest

from petool_jax import petoolbench as pb

EVAL_LIMIT = 4000  # eval run's --max-prompt-tokens default (the authors' 4,000)
TRAIN_LIMIT = 4096  # the authors' SFT/DPO cutoff
ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"


@pytest.fixture(scope="module")
def tokenizer(shared_dir):
    from petool_jax.llama3_tokenizer import llama3_tokenizer

    path = shared_dir / "llama3" / "tokenizer.model"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.startswith("82e9d319") and digest.endswith("1b55")  # the data README's checksum
    return llama3_tokenizer(path)


@pytest.fixture(scope="module")
def entries(shared_dir):
    return pb.load_entries(shared_dir / "petoolbench" / "test_dev.json.gz")


_ENCODED: collections.OrderedDict[str, list[int]] = collections.OrderedDict()


def encode(tokenizer, text: str) -> list[int]:
    """The tokenizer's own ids of `text`. The checks and the code under test re-read the same
    texts (one encoding of a 10k-character prompt takes ~10 ms), so recent ones are kept."""
    if text in _ENCODED:
        _ENCODED.move_to_end(text)
    else:
        _ENCODED[text] = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(_ENCODED) > 256:
            _ENCODED.popitem(last=False)
    return _ENCODED[text]


class SharedEncodings:
    """The tokenizer as the training code sees it, with apply_chat_template(tokenize=True)
    rendering then encoding through `encode` (what transformers does, minus the repeats;
    test_eval_runner_encodes_as_the_tokenizer checks the two agree)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                   tokenize=False)
        return encode(self._tokenizer, text) if tokenize else text

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def render(tokenizer, messages, answer=None) -> str:
    if answer is None:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)


def count(tokenizer, messages, answer=None) -> int:
    """The tokenizer's own token count of the rendered conversation."""
    return len(encode(tokenizer, render(tokenizer, messages, answer)))


def check_intact(text: str, entry: dict, setting: str, n_dropped: int) -> None:
    """The query and the candidates are whole; the history is the release's, minus exactly
    its n_dropped oldest entries."""
    query = entry["query"].strip()  # the chat template trims message content
    assert f"<|start_header_id|>user<|end_header_id|>\n\n{query}<|eot_id|>" in text or f"\n{query}<|eot_id|>" in text
    assert entry["apis_candidate"] in text
    released = pb.split_instruction(entry[pb.INSTRUCTION_KEYS[setting]])[1]
    system = text.split("<|end_header_id|>\n\n", 1)[1]
    assert pb.split_instruction(system)[1] == released[n_dropped:]


@pytest.fixture(scope="module")
def eval_prompts(tokenizer, entries):
    """(entry, setting) -> (full prompt tokens, fitted messages, n_dropped, ids) as `eval run`
    builds them (petoolbench.fit_messages with the tokenizer's count, then the ids)."""
    out = {}
    for entry in entries:
        for setting in pb.SETTINGS:
            full = count(tokenizer, pb.build_messages(entry, setting))
            messages, n_dropped = pb.fit_messages(entry, setting, lambda m: count(tokenizer, m), EVAL_LIMIT)
            ids = np.asarray(encode(tokenizer, render(tokenizer, messages)), np.int32)  # compact: 1,836 kept
            out[entry["entry_id"], setting] = (full, messages, n_dropped, ids)
    return out


def test_the_tokenizer_is_llama3(tokenizer):
    assert len(tokenizer) == 128256
    assert tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                            "<|end_header_id|>", "<|eot_id|>"]) == [128000, 128001, 128006,
                                                                                    128007, 128009]
    assert encode(tokenizer, "Hello world") == [9906, 1917]  # LLaMA-3's well-known ids
    text = render(tokenizer, [{"role": "user", "content": "héllo 東京"}])
    assert tokenizer.decode(encode(tokenizer, text)) == text


def test_eval_prompts_of_all_612_entries(entries, eval_prompts, tokenizer):
    assert len(entries) == 612 and len(eval_prompts) == 1836
    full = sorted(v[0] for v in eval_prompts.values())
    # The data README's measurement (LLaMA-3 tokenizer): median ~2,600, p90 ~4,100, max ~11,200,
    # about 10% above 4,096.
    assert 2500 <= statistics.median(full) <= 2700
    assert 4000 <= full[int(0.9 * len(full))] <= 4200
    assert 11000 <= full[-1] <= 11400
    assert 0.09 <= sum(n > 4096 for n in full) / len(full) <= 0.11

    shortened = still_too_long = 0
    by_id = {e["entry_id"]: e for e in entries}
    for (entry_id, setting), (n_full, messages, n_dropped, ids) in eval_prompts.items():
        entry = by_id[entry_id]
        text = render(tokenizer, messages)
        check_intact(text, entry, setting, n_dropped)
        history = pb.split_instruction(entry[pb.INSTRUCTION_KEYS[setting]])[1]
        if n_full <= EVAL_LIMIT:
            assert n_dropped == 0 and len(ids) == n_full
            assert messages[0]["content"] == entry[pb.INSTRUCTION_KEYS[setting]]  # the original bytes
            continue
        shortened += 1
        assert n_dropped > 0
        if len(ids) > EVAL_LIMIT:
            # Candidates + query alone exceed the budget: all history goes, nothing else is cut
            # (the authors' right-truncation would have cut the query and the candidates' end).
            assert n_dropped == len(history)
            assert count(tokenizer, pb.build_messages(entry, setting, len(history))) == len(ids)
            still_too_long += 1
            continue
        # The fewest entries were dropped: one fewer does not fit.
        assert count(tokenizer, pb.build_messages(entry, setting, n_dropped - 1)) > EVAL_LIMIT
    assert shortened == sum(n > EVAL_LIMIT for n in full) == 198
    # Measured: in 135 of the 1,836 instances the 10 candidates' documents and the query
    # alone exceed 4,000 tokens, so even an empty history leaves the prompt over budget.
    assert still_too_long == 135


def test_eval_runner_encodes_as_the_tokenizer(tokenizer, entries, eval_prompts):
    """eval's JAX runner tokenizes through apply_chat_template(tokenize=True): same ids."""
    from petool_jax.chat import token_ids

    for entry in entries[:20]:
        for setting in pb.SETTINGS:
            messages, _, ids = eval_prompts[entry["entry_id"], setting][1:]
            assert token_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)) == \
                ids.tolist()


def around_the_cutoff(eval_prompts):
    """10 instances just under the training cutoff, 10 just over, and the 10 longest."""
    ranked = sorted(eval_prompts, key=lambda k: eval_prompts[k][0])
    over = next(i for i, k in enumerate(ranked) if eval_prompts[k][0] > TRAIN_LIMIT - 80)
    return ranked[over - 10:over] + ranked[over:over + 10] + ranked[-10:]


def sft_example(entry, setting):
    from petool_jax.train.sft_data import format_call

    return {"id": f"{entry['entry_id']}:{setting}", "instruction": entry[pb.INSTRUCTION_KEYS[setting]],
            "query": entry["query"], "answer": format_call(entry["api_call_ground_truth"])}


def check_sft(tokenizer, renderer, entry, setting):
    from petool_jax.train.sft_data import tokenize_example

    example = sft_example(entry, setting)
    row = tokenize_example(renderer, example, "system_user", TRAIN_LIMIT)
    ids, mask, n_dropped = row["input_ids"], row["assistant_mask"], row["n_dropped"]
    messages = pb.build_messages(entry, setting, n_dropped)
    text = render(tokenizer, messages, example["answer"])
    assert ids == encode(tokenizer, text)
    assert row["fits"] == (len(ids) <= TRAIN_LIMIT)
    # The loss covers exactly the answer and its end token.
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == example["answer"] + "<|eot_id|>"
    assert mask == sorted(mask)  # prompt first, then answer
    check_intact(text, entry, setting, n_dropped)
    # History is dropped exactly when the whole conversation is over the cutoff, and then the
    # fewest entries: one fewer does not fit (unless nothing is left to drop).
    assert (n_dropped > 0) == (count(tokenizer, pb.build_messages(entry, setting), example["answer"]) > TRAIN_LIMIT)
    if n_dropped and row["fits"]:
        assert count(tokenizer, pb.build_messages(entry, setting, n_dropped - 1), example["answer"]) > TRAIN_LIMIT
    return row


def check_dpo(tokenizer, renderer, entry, setting, pair):
    from petool_jax.train.dpo_data import tokenize_pair

    row = tokenize_pair(renderer, pair, "system_user", TRAIN_LIMIT)
    prompt, chosen, rejected, n_dropped = row["prompt_ids"], row["chosen_ids"], row["rejected_ids"], row["n_dropped"]
    messages = pb.build_messages(entry, setting, n_dropped)
    assert prompt == encode(tokenizer, render(tokenizer, messages))
    assert tokenizer.decode(prompt).endswith(ASSISTANT_HEADER)
    assert prompt + chosen == encode(tokenizer, render(tokenizer, messages, pair["chosen"]))
    assert prompt + rejected == encode(tokenizer, render(tokenizer, messages, pair["rejected"]))
    assert tokenizer.decode(chosen) == pair["chosen"] + "<|eot_id|>"
    assert tokenizer.decode(rejected) == pair["rejected"] + "<|eot_id|>"
    total = len(prompt) + len(chosen) + len(rejected)
    assert row["fits"] == (total <= TRAIN_LIMIT)
    check_intact(tokenizer.decode(prompt), entry, setting, n_dropped)

    def pair_tokens(messages):
        return (count(tokenizer, messages, pair["chosen"]) + count(tokenizer, messages, pair["rejected"])
                - count(tokenizer, messages))

    assert (n_dropped > 0) == (pair_tokens(pb.build_messages(entry, setting)) > TRAIN_LIMIT)
    if n_dropped and row["fits"]:
        assert pair_tokens(pb.build_messages(entry, setting, n_dropped - 1)) > TRAIN_LIMIT
    return row


def run_sft_and_dpo(tokenizer, entries, keys, shared_dir):
    from petool_jax.train.dpo_data import load_pairs
    from petool_jax.chat import ChatRenderer

    renderer = ChatRenderer(SharedEncodings(tokenizer))
    by_id = {e["entry_id"]: e for e in entries}
    pairs = load_pairs([str(shared_dir / "petoolbench" / "test_dev.json.gz")], list(pb.SETTINGS),
                       {"same_func": 1.0}, seed=0)
    pair_of = {tuple(p["id"].split(":")): p for p in pairs}
    sft_dropped = dpo_dropped = 0
    for entry_id, setting in keys:
        entry = by_id[entry_id]
        sft_dropped += check_sft(tokenizer, renderer, entry, setting)["n_dropped"] > 0
        pair = pair_of[str(entry_id), setting]
        assert pair["chosen"] == sft_example(entry, setting)["answer"]
        dpo_dropped += check_dpo(tokenizer, renderer, entry, setting, pair)["n_dropped"] > 0
    return sft_dropped, dpo_dropped


def test_sft_and_dpo_tokenization_around_the_cutoff(tokenizer, entries, eval_prompts, shared_dir):
    keys = around_the_cutoff(eval_prompts)
    sft_dropped, dpo_dropped = run_sft_and_dpo(tokenizer, entries, keys, shared_dir)
    assert sft_dropped >= 10 and dpo_dropped >= sft_dropped  # a pair is longer than one answer


@pytest.mark.slow
def test_sft_and_dpo_tokenization_of_all_1836_instances(tokenizer, entries, eval_prompts, shared_dir):
    sft_dropped, dpo_dropped = run_sft_and_dpo(tokenizer, entries, list(eval_prompts), shared_dir)
    assert 0 < sft_dropped <= dpo_dropped
