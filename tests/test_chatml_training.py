"""A ChatML model (SmolLM2's template and specials, tokenizer files built from a GGUF):
SFT targets and DPO responses are exactly the assistant turn the template renders, token by
token; generation stops on the template's turn-closing token; LLaMA-3's stop set is unchanged."""

import json

import numpy as np
import pytest

from gguf_fixtures import write_tiny_gguf
from petool_jax.train.dpo_data import PairBatcher, tokenize_pair
from petool_jax.chat import ChatRenderer
from petool_jax.train.sft_data import SequenceBatcher, tokenize_example

INSTRUCTION = ("You are an assistant that calls tools. The user called these tools before:\n"
               '{"tool_name": "WeatherNow.current", "parameters": {"city": "Lyon"}}\n'
               "Candidates: WeatherNow.current, SkyCast.now")
QUERY = "What is the weather in Paris right now?"
ANSWER = '{"tool_name": "WeatherNow.current", "parameters": {"city": "Paris"}}'
REJECTED = '{"tool_name": "SkyCast.now", "parameters": {"city": "Paris"}}'


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    from transformers import AutoTokenizer

    from petool_jax.gguf_file import open_gguf
    from petool_jax.gguf_tokenizer import write_tokenizer_files

    tmp = tmp_path_factory.mktemp("chatml")
    write_tiny_gguf(tmp / "t.gguf", tied=True, num_layers=1)
    (tmp / "tok").mkdir()
    write_tokenizer_files(open_gguf(tmp / "t.gguf"), tmp / "t.gguf", tmp / "tok")
    return AutoTokenizer.from_pretrained(tmp / "tok"), tmp / "tok"


def _tokens(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _assistant_turn(tok, answer):
    """The assistant turn exactly as the template writes it after the generation prompt."""
    return _tokens(tok, answer) + [tok.convert_tokens_to_ids("<|im_end|>")] + _tokens(tok, "\n")


@pytest.mark.parametrize("prompt_format", ["system_user", "alpaca_user"])
def test_sft_mask_is_exactly_the_assistant_turn(chatml, prompt_format):
    tok, _ = chatml
    example = {"id": "x", "instruction": INSTRUCTION, "query": QUERY, "answer": ANSWER}
    out = tokenize_example(ChatRenderer(tok), example, prompt_format, 4096)
    ids, mask = out["input_ids"], np.asarray(out["assistant_mask"])
    messages = ([{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": QUERY}]
                if prompt_format == "system_user" else [{"role": "user", "content": INSTRUCTION + "\n" + QUERY}])
    rendered = tok.apply_chat_template(messages + [{"role": "assistant", "content": ANSWER}], tokenize=False)
    prompt_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith(prompt_text) and prompt_text.endswith("<|im_start|>assistant\n")
    assert ids == _tokens(tok, rendered)  # the whole conversation, token by token
    n_prompt = len(_tokens(tok, prompt_text))
    assert mask.tolist() == [0] * n_prompt + [1] * (len(ids) - n_prompt)
    assert [i for i, m in zip(ids, mask) if m] == _assistant_turn(tok, ANSWER)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == ANSWER + "<|im_end|>\n"
    if prompt_format == "alpaca_user":  # SmolLM2's template adds its default system turn
        assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")

    # Through the batcher: the loss falls on exactly those tokens (as next-token targets).
    batch = SequenceBatcher([ids], [mask.tolist()], batch_size=1, micro_batch_size=1, max_seq_len=4096,
                            seed=0).batch(0)
    targets = batch["targets"][0, 0][batch["loss_mask"][0, 0] == 1].tolist()
    assert targets == _assistant_turn(tok, ANSWER)


def test_dpo_responses_are_exactly_the_assistant_turns(chatml):
    tok, _ = chatml
    pair = {"id": "x", "instruction": INSTRUCTION, "query": QUERY, "chosen": ANSWER, "rejected": REJECTED}
    out = tokenize_pair(ChatRenderer(tok), pair, "system_user", 4096)
    messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": QUERY}]
    prompt_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert out["prompt_ids"] == _tokens(tok, prompt_text)
    assert out["chosen_ids"] == _assistant_turn(tok, ANSWER)
    assert out["rejected_ids"] == _assistant_turn(tok, REJECTED)
    batch = PairBatcher([out["prompt_ids"]], [out["chosen_ids"]], [out["rejected_ids"]], batch_size=1,
                        micro_batch_size=1, max_seq_len=4096, seed=0).batch(0)
    for side, want in (("chosen", out["chosen_ids"]), ("rejected", out["rejected_ids"])):
        mask = batch[f"{side}_mask"][0, 0, 0] == 1
        assert batch[f"{side}_targets"][0, 0, 0][mask].tolist() == want
        # each response token is predicted from the token before it in its own branch
        tokens, idx = batch["tokens"][0, 0], batch[f"{side}_idx"][0, 0, 0][mask]
        assert tokens[idx[0]] == out["prompt_ids"][-1]
        assert tokens[idx[1:]].tolist() == want[:-1]


def test_end_tokens_follow_the_chatml_template(chatml, tmp_path):
    from petool_jax.tokenizer import end_token_ids, turn_end_token_id

    tok, tok_dir = chatml
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_token_id(tok) == im_end == 2
    assert end_token_ids(tok) == (2,)
    # generation_config.json eos ids count too (here <|endoftext|>, id 0)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    assert end_token_ids(tok, None, (tmp_path, None)) == (0, 2)


def test_llama3_end_tokens_unchanged(tmp_path):
    """The LLaMA-3 tokenizer petool trains: config eos ids + <|eot_id|> closing the turn = the old
    hard-wired set (<|eot_id|>, <|end_of_text|>, <|eom_id|>)."""
    from transformers import AutoTokenizer

    from hf_fixtures import make_tokenizer
    from petool_jax.config import LlamaConfig
    from petool_jax.tokenizer import LLAMA3_END_TOKENS, end_token_ids, turn_end_token_id

    info = make_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    vocab = tok.get_vocab()
    assert turn_end_token_id(tok) == vocab["<|eot_id|>"]
    config = LlamaConfig(vocab_size=info["vocab_size"], hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=8, rms_norm_eps=1e-5,
                         rope_theta=1e4, rope_scaling=None, max_position_embeddings=64, tie_word_embeddings=True,
                         eos_token_ids=tuple(info["eos_token_ids"]))
    assert end_token_ids(tok, config) == tuple(sorted(vocab[t] for t in LLAMA3_END_TOKENS))
    # Meta's LLaMA-3-Instruct layout: config eos = <|eot_id|>, generation_config adds <|end_of_text|>
    one = LlamaConfig(**{**config.__dict__, "eos_token_ids": (vocab["<|eot_id|>"],)})
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [vocab["<|end_of_text|>"], vocab["<|eot_id|>"]]}))
    assert end_token_ids(tok, one, (tmp_path / "g",)) == tuple(sorted([vocab["<|end_of_text|>"], vocab["<|eot_id|>"]]))
