"""The demo's export check: the exported HF directory, reloaded with transformers, must give the
JAX model's logits on a test prompt."""

from __future__ import annotations

import importlib.util
import pathlib

from petool_jax.chat import ChatRenderer


def hf_reload_check(model_dir: pathlib.Path, hf_dir: pathlib.Path, test_file: pathlib.Path, max_seq_len: int) -> dict:
    """Load the export with transformers and compare its logits with the JAX model's on a
    test prompt. Needs torch (not a core dependency): skipped, and said so, without it."""
    if importlib.util.find_spec("torch") is None:
        return {"status": "skipped", "reason": "torch is not installed (pip install -e '.[test]' adds the "
                "CPU build); the HF files were written but not reloaded"}
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from petool_jax import petoolbench as pb
    from petool_jax.loading import load_model

    hf_model, info = AutoModelForCausalLM.from_pretrained(str(hf_dir), torch_dtype=torch.float32,
                                                          output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        return {"status": "failed", "reason": f"transformers reported {bad}"}
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    entry = pb.load_entries(test_file)[0]
    ids = ChatRenderer(tokenizer).prompt_ids(pb.build_messages(entry, "p"))[: max_seq_len]
    with torch.no_grad():
        ref = hf_model(torch.tensor([ids])).logits.numpy()
    bundle = load_model(model_dir, dtype="float32", with_tokenizer=False)
    ours = np.asarray(bundle.model.apply({"params": bundle.params}, np.asarray([ids]))[0])
    diff = float(np.abs(ours - ref).max())
    same_argmax = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    status = "passed" if diff <= 1e-3 and same_argmax == 1.0 else "failed"
    out = {"status": status, "max_abs_logit_diff": diff, "argmax_agreement": same_argmax, "tokens": len(ids)}
    if status == "failed":
        out["reason"] = f"logits differ by up to {diff:.3g} (tolerance 1e-3); argmax agreement {same_argmax:.3f}"
    return out
