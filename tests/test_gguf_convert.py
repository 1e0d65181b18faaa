"""`petool convert --gguf` against transformers' own GGUF loading of the same file: a tiny random
LLaMA written with the gguf package (F32, F16, Q8_0, Q4_1 tensors; tied and untied head; a
ChatML BPE tokenizer). Logits, greedy generation, tokenizer and the HF export must agree."""

import json

import numpy as np
import pytest

from gguf_fixtures import CHATML_TEMPLATE, write_tiny_gguf
from petool_jax.app.cli import main as petool

PROMPTS = ["What is the weather in Paris?", "call the weather API", "12345 + 678 ="]


@pytest.fixture(scope="module", params=["untied", "tied"])
def converted(request, tmp_path_factory):
    import torch
    import transformers

    tmp = tmp_path_factory.mktemp(f"gguf_{request.param}")
    write_tiny_gguf(tmp / "tiny.gguf", tied=request.param == "tied")
    assert petool(["convert", "--gguf", str(tmp / "tiny.gguf"), "--out", str(tmp / "ckpt")]) == 0
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp, gguf_file="tiny.gguf", dtype=torch.float32).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(tmp, gguf_file="tiny.gguf")
    return request.param, tmp, ref, ref_tok


def _message_ids(tokenizer, messages):
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _chat_ids(tokenizer, text):
    return _message_ids(tokenizer, [{"role": "user", "content": text}])


def test_config_and_files(converted):
    tie, tmp, ref, _ = converted
    config = json.loads((tmp / "ckpt" / "config.json").read_text())
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings"):
        assert config[key] == getattr(ref.config, key), key
    # GGUF stores float32; the config keeps the decimal it came from (1e-05, not 9.9999997e-06).
    assert config["rms_norm_eps"] == 1e-5 and np.float32(ref.config.rms_norm_eps) == np.float32(1e-5)
    assert config["rope_theta"] == ref.config.rope_parameters["rope_theta"] == 100000.0
    assert config["tie_word_embeddings"] is (tie == "tied")
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 2)
    marker = json.loads((tmp / "ckpt" / "petool_model.json").read_text())
    expected = {"F32": 5, "Q8_0": 5, "Q4_1": 6, "F16": 4 if tie == "tied" else 5}
    assert marker["gguf_tensor_types"] == expected


def test_tokenizer_matches_transformers_gguf_tokenizer(converted):
    from petool_jax.tokenizer import load_tokenizer

    _, tmp, _, ref_tok = converted
    tok = load_tokenizer(tmp / "ckpt")
    for text in PROMPTS + ["  spaces\n\nand\ttabs", "<|im_start|>user\nhi<|im_end|>", "émoji 🤖 x=12"]:
        assert tok(text)["input_ids"] == ref_tok(text)["input_ids"], text
    digits = tok("x=12345")["input_ids"]  # "smollm" pre-tokenizer: one token per digit, like llama.cpp
    assert [tok.decode([i]) for i in digits[-5:]] == list("12345")
    assert tok("hi")["input_ids"][0] != tok.bos_token_id  # tokenizer.ggml.add_bos_token = false
    assert tok.chat_template == CHATML_TEMPLATE
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                       tokenize=False)
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert _chat_ids(tok, "hi") == _chat_ids(ref_tok, "hi")


def test_logits_match_transformers(converted):
    import jax.numpy as jnp
    import torch

    from petool_jax.loading import load_model

    _, tmp, ref, _ = converted
    bundle = load_model(tmp / "ckpt", dtype="float32")
    tokens = (np.arange(160, dtype=np.int64) * 7919) % ref.config.vocab_size  # a long prompt (RoPE)
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens[None])).logits[0].numpy()
    got = np.asarray(bundle.model.apply({"params": bundle.params}, jnp.asarray(tokens[None]))[0])[0]
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(want).max() > 1.0  # not a degenerate model


def test_greedy_generation_token_identical(converted):
    import torch

    from petool_jax.generation import generate_batch, load_model

    tie, tmp, ref, _ = converted
    if tie == "tied":
        pytest.skip("generation is checked on the untied model; logits cover the tied one")
    bundle = load_model(tmp / "ckpt", dtype="float32")
    prompts = [_chat_ids(bundle.tokenizer, p) for p in PROMPTS]
    ours = generate_batch(bundle, prompts, max_new_tokens=16, batch_size=4, progress=False)
    for ids, got in zip(prompts, ours):
        with torch.no_grad():
            out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=2,
                               pad_token_id=2)[0, len(ids):].tolist()
        want = out[:out.index(2)] if 2 in out else out
        assert got == want
    assert any(len(g) >= 4 for g in ours)


def test_export_reloads_in_transformers(converted):
    import torch
    import transformers

    tie, tmp, ref, _ = converted
    out = tmp / "hf_export"
    assert petool(["export", "--ckpt", str(tmp / "ckpt"), "--out", str(out), "--overwrite"]) == 0
    model, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tokens = torch.arange(64)[None] % ref.config.vocab_size
    with torch.no_grad():
        np.testing.assert_allclose(model(tokens).logits.numpy(), ref(tokens).logits.numpy(), atol=1e-5)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == CHATML_TEMPLATE


def _hf_greedy(ref, ids, n):
    import torch

    with torch.no_grad():
        out = ref.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=2,
                           pad_token_id=2)[0, len(ids):].tolist()
    return out[:out.index(2)] if 2 in out else out


def test_generate_chat_cli_uses_the_chatml_template(converted, capsys):
    tie, tmp, ref, ref_tok = converted
    if tie == "tied":
        pytest.skip("checked on the untied model")
    capsys.readouterr()
    assert petool(["generate", "--model", str(tmp / "ckpt"), "--prompt", PROMPTS[0], "--chat", "--json",
                   "--max-new-tokens", "16"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["token_ids"] == _hf_greedy(ref, _chat_ids(ref_tok, PROMPTS[0]), 16)


def test_eval_run_prompts_and_stops_follow_the_chatml_tokenizer(converted, tmp_path):
    from eval.predictions import load_predictions
    from eval_fixtures import small_benchmark, write_json
    from petool_jax import petoolbench as pb
    from petool_jax.tokenizer import load_tokenizer

    tie, tmp, ref, _ = converted
    if tie == "tied":
        pytest.skip("checked on the untied model")
    entries = small_benchmark()[:2]
    data = write_json(tmp_path / "user_entries_test.json", entries)
    budget = 2200  # entry 1 (2,443 tokens) loses its oldest history entries, entry 2 fits
    assert petool(["eval", "run", "--model", str(tmp / "ckpt"), "--data", str(data), "--out", str(tmp_path / "run"),
                   "--settings", "p", "--max-new-tokens", "8", "--max-prompt-tokens", str(budget)]) == 0
    rows = load_predictions(tmp_path / "run" / "predictions.jsonl", {e["entry_id"] for e in entries})
    tok = load_tokenizer(tmp / "ckpt")
    for entry in entries:
        row = rows[(entry["entry_id"], "p")]
        messages = pb.build_messages(entry, "p", row["n_dropped"])
        prompt = _message_ids(tok, messages)
        assert row["prompt_tokens"] == len(prompt) <= budget
        assert row["shortened"] == (entry is entries[0])
        assert tok.decode(prompt).endswith(entry["query"] + "<|im_end|>\n<|im_start|>assistant\n")
        assert row["response"] == tok.decode(_hf_greedy(ref, prompt, 8), skip_special_tokens=True)


def test_every_dequantizable_type_matches_transformers(tmp_path):
    """BF16, Q4_0, Q5_0, Q5_1 and the K-quants Q2_K..Q6_K (blocks of 256: hidden 256)."""
    import jax.numpy as jnp
    import torch
    import transformers

    from petool_jax.loading import load_model

    types = {"token_embd.weight": "Q5_0", "output.weight": "BF16", "blk.{i}.attn_q.weight": "Q4_K",
             "blk.{i}.attn_k.weight": "Q5_K", "blk.{i}.attn_v.weight": "Q6_K", "blk.{i}.attn_output.weight": "Q2_K",
             "blk.{i}.ffn_gate.weight": "Q3_K", "blk.{i}.ffn_up.weight": "Q4_0", "blk.{i}.ffn_down.weight": "Q5_1"}
    write_tiny_gguf(tmp_path / "k.gguf", tied=False, num_layers=1, hidden=256, types=types)
    assert petool(["convert", "--gguf", str(tmp_path / "k.gguf"), "--out", str(tmp_path / "ckpt")]) == 0
    marker = json.loads((tmp_path / "ckpt" / "petool_model.json").read_text())
    assert set(marker["gguf_tensor_types"]) == set(types.values()) | {"F32"}
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="k.gguf", dtype=torch.float32)
    bundle = load_model(tmp_path / "ckpt", dtype="float32")
    tokens = (np.arange(96, dtype=np.int64) * 7919) % ref.config.vocab_size
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens[None])).logits[0].numpy()
    got = np.asarray(bundle.model.apply({"params": bundle.params}, jnp.asarray(tokens[None]))[0])[0]
    assert np.abs(got - want).max() <= 1e-4 and np.abs(want).max() > 0.1


@pytest.mark.slow  # ~20 s; the ChatML masks themselves are checked in test_chatml_training.py
def test_sft_trains_on_the_converted_model(converted, tmp_path):
    """One LoRA SFT step on the ChatML model: the loss is the masked cross-entropy of the
    assistant turns under transformers' GGUF-loaded model (LoRA B starts at zero)."""
    import torch

    from train_fixtures import write_sft

    tie, tmp, ref, _ = converted
    if tie == "tied":
        pytest.skip("checked on the untied model")
    write_sft(tmp_path / "sft.json", 2, seed=1, history_len=1)
    out = tmp_path / "run"
    assert petool(["train", "sft", f"model={tmp / 'ckpt'}", f"data.train={tmp_path / 'sft.json'}",
                   f"output_dir={out}", "max_steps=1", "batch_size=2", "micro_batch_size=2", "max_seq_len=2048",
                   "lora.rank=8", "dtype=float32", "param_dtype=float32", "log_every=1", "mesh.data=1", "mesh.fsdp=1",
                   "mesh.tensor=1"]) == 0
    [metrics] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    from petool_jax.tokenizer import load_tokenizer
    from petool_jax.chat import ChatRenderer
    from petool_jax.train.sft_data import load_sft_examples, tokenize_example

    renderer = ChatRenderer(load_tokenizer(tmp / "ckpt"))
    total, count = 0.0, 0
    for example in load_sft_examples([str(tmp_path / "sft.json")], ["p"]):
        row = tokenize_example(renderer, example, "system_user", 2048)
        ids, mask = torch.tensor([row["input_ids"]]), torch.tensor(row["assistant_mask"][1:], dtype=torch.bool)
        with torch.no_grad():
            logp = torch.log_softmax(ref(ids).logits[0, :-1].double(), -1)
        nll = -logp[torch.arange(len(mask)), ids[0, 1:]][mask]
        total, count = total + float(nll.sum()), count + int(mask.sum())
    assert metrics["loss"] == pytest.approx(total / count, abs=1e-4)


def test_sentencepiece_vocabulary_goes_through_transformers(tmp_path):
    """tokenizer.ggml.model = llama (sentencepiece, LLaMA-2 style): transformers' GGUF tokenizer
    import builds it; the files written encode like transformers' own loading of the GGUF."""
    import gguf
    from transformers import AutoTokenizer

    from petool_jax.gguf_file import open_gguf
    from petool_jax.gguf_tokenizer import write_tokenizer_files

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [
        "\u2581", "h", "i", "\u2581h", "\u2581hi", "e", "l", "o", "\u2581hel", "lo", "\u2581hello"]
    path = tmp_path / "sp.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(1, 12)])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * 11)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}")
    writer.add_tensor("x", np.zeros(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp_path / "tok").mkdir()
    write_tokenizer_files(open_gguf(path), path, tmp_path / "tok")
    ours = AutoTokenizer.from_pretrained(tmp_path / "tok")
    ref = AutoTokenizer.from_pretrained(tmp_path, gguf_file="sp.gguf")
    for text in ("hi hello", "hello hi ih", "oh"):
        assert ours(text)["input_ids"] == ref(text)["input_ids"], text
    assert ours("hi")["input_ids"][:2] == [1, tokens.index("\u2581hi")]  # add_bos_token
    assert ours.eos_token == "</s>" and ours.chat_template.startswith("{% for m in messages %}")
