"""`data.prompt_format: llama_factory` against an independent rendering of LLaMA-Factory's
`llama3` template (a transcription of its template.py / converter.py / supervised and
pairwise processors, written here): token ids and label masks, SFT and DPO."""

from __future__ import annotations

import json

import pytest

from authors_fixtures import llama3_tokenizer, small_tokenizer
from eval_fixtures import rental_entry, seloger_entry, weather_entry
from petool_jax import petoolbench as pb
from petool_jax.train.llama_factory import LlamaFactoryRenderer

IGNORE_INDEX = -100


def lf_supervised(tokenizer, instruction, query, output):
    """LLaMA-Factory: AlpacaDatasetConverter -> Template._encode (llama3) -> SupervisedDatasetProcessor
    (train_on_prompt false, efficient_eos false, no truncation needed here). (input_ids, labels)."""
    content = "\n".join(x for x in (instruction, query) if x)
    slots = [{"bos_token"},  # format_prefix
             "<|start_header_id|>user<|end_header_id|>\n\n" + content
             + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"]
    source = []
    for elem in slots:
        if isinstance(elem, set):
            source += [tokenizer.bos_token_id]
        else:
            source += tokenizer.encode(elem, add_special_tokens=False)
    target = tokenizer.encode(output + "<|eot_id|>", add_special_tokens=False)
    return source + target, [IGNORE_INDEX] * len(source) + target


def _examples():
    out = []
    for entry in (rental_entry(), weather_entry(), seloger_entry()):
        for setting, key in pb.INSTRUCTION_KEYS.items():
            out.append({"instruction": entry[key], "query": entry["query"],
                        "output": json.dumps(entry["api_call_ground_truth"], ensure_ascii=False)})
    out.append({"instruction": "Only an instruction, no input.\n", "query": "", "output": "  spaced answer \n"})
    return out


def _check(tokenizer):
    renderer = LlamaFactoryRenderer(tokenizer)
    for example in _examples():
        entry = {pb.INSTRUCTION_KEYS["p"]: example["instruction"], "query": example["query"]}
        messages = pb.build_messages(entry, "p", prompt_format="llama_factory")
        ids, mask = renderer.encode(messages, example["output"])
        want_ids, want_labels = lf_supervised(tokenizer, example["instruction"], example["query"], example["output"])
        assert ids == want_ids
        assert [i if m else IGNORE_INDEX for i, m in zip(ids, mask)] == want_labels
        # DPO (PairwiseDatasetProcessor): the same prompt ids, each answer `content<|eot_id|>`.
        prompt = renderer.prompt_ids(messages)
        assert prompt == want_ids[:want_labels.count(IGNORE_INDEX)]
        assert renderer.full_ids(messages, "rejected")[len(prompt):] == tokenizer.encode(
            "rejected<|eot_id|>", add_special_tokens=False)
        # The instruction's trailing newline survives (the chat template's trim would drop it).
        if example["instruction"].endswith("\n"):
            text = tokenizer.decode(ids)
            assert example["instruction"] + ("\n" + example["query"] if example["query"] else "") in text
    assert tokenizer.decode(ids[:2]).startswith("<|begin_of_text|><|start_header_id|>")


def test_llama_factory_rendering_matches_small_tokenizer(tmp_path):
    tokenizer = small_tokenizer(tmp_path)
    _check(tokenizer)
    # Differs from the chat template exactly where LLaMA-Factory differs: no trim of the content.
    from petool_jax.chat import ChatRenderer

    example = _examples()[0]
    entry = {pb.INSTRUCTION_KEYS["p"]: example["instruction"] + "\n", "query": example["query"]}
    lf = LlamaFactoryRenderer(tokenizer).encode(pb.build_messages(entry, "p", prompt_format="llama_factory"), "x")[0]
    chat = ChatRenderer(tokenizer).encode(pb.build_messages(entry, "p", prompt_format="alpaca_user"), "x")[0]
    assert lf != chat and len(lf) > 0


def test_llama_factory_rendering_matches_real_llama3(shared_dir):
    _check(llama3_tokenizer(shared_dir))


def test_llama_factory_needs_llama3_special_tokens(tmp_path):
    from transformers import AutoTokenizer  # noqa: F401

    from petool_jax.errors import UserError

    class NoLlama3:
        def get_vocab(self):
            return {"<|im_start|>": 1, "<|im_end|>": 2}

    with pytest.raises(UserError, match="llama_factory.*no <\\|start_header_id\\|>"):
        LlamaFactoryRenderer(NoLlama3())


def test_sft_and_dpo_data_use_the_llama_factory_rendering(tmp_path):
    from petool_jax.train.dpo_data import tokenize_pair
    from petool_jax.train.llama_factory import make_renderer
    from petool_jax.train.sft_data import tokenized_dataset

    tokenizer = small_tokenizer(tmp_path / "tok")
    rows = [{"instruction": e["instruction"], "input": e["query"], "output": e["output"]} for e in _examples()[:4]]
    path = tmp_path / "user_entries_sft_p.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    ds, _ = tokenized_dataset([str(path)], tokenizer, ["p"], "llama_factory", 4096, 0, "auto", tmp_path / "cache",
                              log=lambda *a: None)
    for row, example in zip(ds, _examples()[:4]):
        ids, labels = lf_supervised(tokenizer, example["instruction"], example["query"], example["output"])
        assert row["input_ids"] == ids
        assert [i if m else IGNORE_INDEX for i, m in zip(row["input_ids"], row["assistant_mask"])] == labels
    example = _examples()[0]
    pair = {"instruction": example["instruction"], "query": example["query"], "chosen": "good", "rejected": "bad"}
    tokens = tokenize_pair(make_renderer(tokenizer, "llama_factory"), pair, "llama_factory", 4096)
    ids, labels = lf_supervised(tokenizer, example["instruction"], example["query"], "good")
    assert tokens["prompt_ids"] + tokens["chosen_ids"] == ids
    assert tokens["rejected_ids"] == tokenizer.encode("bad<|eot_id|>", add_special_tokens=False)
