"""Greedy generation: `petool generate` equals transformers' greedy generate; batched
generation with mixed prompt lengths equals one-by-one generation."""

import json

import numpy as np
import pytest
import torch

from hf_fixtures import make_hf_model
from petool_jax.app.cli import main as petool
from petool_jax.generation import generate_batch, load_model

PROMPTS = ["Hello, how are you today?", "Find flights from Berlin to Rome.",
           "The quick brown fox", "Generate only the tool call in JSON format."]


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "hf"
    return path, make_hf_model(path, "llama3.1", seed=3)


def hf_greedy(model, ids, n):
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_cli_greedy_matches_transformers(hf_model, capsys):
    import transformers

    path, model = hf_model
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    stops = {tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")}
    compared = 0
    for prompt in PROMPTS:
        for chat in (False, True):
            args = ["generate", "--model", str(path), "--prompt", prompt, "--max-new-tokens", "32", "--json"]
            assert petool(args + (["--chat"] if chat else [])) == 0
            result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            if chat:
                ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                    add_generation_prompt=True)
                ids = tokenizer(ids, add_special_tokens=False)["input_ids"]
            else:
                ids = tokenizer(prompt)["input_ids"]
            ref = hf_greedy(model, ids, 32)
            # petool stops at the first end token and leaves it out.
            cut = next((i for i, t in enumerate(ref) if t in stops), len(ref))
            assert result["token_ids"] == ref[:cut], (prompt, chat)
            assert result["text"] == tokenizer.decode(ref[:cut], skip_special_tokens=True)
            compared += cut
    assert compared >= 100  # most generations ran long enough to mean something


def test_batched_mixed_lengths_equal_one_by_one(hf_model):
    path, model = hf_model
    bundle = load_model(path)
    rng = np.random.RandomState(0)
    prompts = [rng.randint(0, 500, size=n).tolist() for n in (3, 17, 64, 65, 120, 9, 33)]
    batched = generate_batch(bundle, prompts, max_new_tokens=20, batch_size=4, stop_ids=(), progress=False)
    for prompt, out in zip(prompts, batched):
        single = generate_batch(bundle, [prompt], max_new_tokens=20, batch_size=1, stop_ids=(), progress=False)
        assert out == single[0]
        assert out == hf_greedy(model, prompt, 20)


def test_stop_tokens_end_each_row(hf_model):
    path, _ = hf_model
    bundle = load_model(path)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [300, 301], [42, 17, 99, 3]]
    free = generate_batch(bundle, prompts, max_new_tokens=12, batch_size=4, stop_ids=(), progress=False)
    # Declare the 4th generated token of row 0 a stop token: every row ends before its first
    # occurrence of it, and a row without it runs to max_new_tokens unchanged.
    stop = free[0][3]
    stopped = generate_batch(bundle, prompts, max_new_tokens=12, batch_size=4, stop_ids=(stop,), progress=False)
    with_stop = [i for i, row in enumerate(free) if stop in row]
    without_stop = [i for i, row in enumerate(free) if stop not in row]
    assert len(with_stop) >= 2 and without_stop  # the fixture exercises both branches
    for i in with_stop:
        assert stopped[i] == free[i][:free[i].index(stop)], i
        assert len(stopped[i]) < len(free[i])
    for i in without_stop:
        assert stopped[i] == free[i], i
        assert len(stopped[i]) == 12


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(hf_model):
    path, _ = hf_model
    bundle = load_model(path)
    prompt = [[5, 6, 7, 8]]
    a = generate_batch(bundle, prompt, 16, temperature=1.0, seed=1, batch_size=1, stop_ids=(), progress=False)
    b = generate_batch(bundle, prompt, 16, temperature=1.0, seed=1, batch_size=1, stop_ids=(), progress=False)
    greedy = generate_batch(bundle, prompt, 16, batch_size=1, stop_ids=(), progress=False)
    nucleus = generate_batch(bundle, prompt, 16, temperature=1.0, top_p=1e-6, seed=2, batch_size=1,
                             stop_ids=(), progress=False)
    assert a == b
    assert nucleus == greedy  # top_p -> 0 keeps only the most likely token
    assert a != greedy
