"""The learning rate of every optimizer step equals the authors' stack (transformers'
get_{cosine,linear,constant}_schedule_with_warmup, warmup = ceil(warmup_ratio * total)),
read back from metrics.jsonl of real training runs with gradient accumulation, a partial
last batch and an interrupted-then-resumed run."""

import json
import math

import numpy as np
import pytest
import torch
import transformers

from hf_fixtures import make_hf_model
from petool_jax.app.cli import main as petool
from petool_jax.train import trainer
from petool_jax.train.config import OptimizerConfig
from petool_jax.train.optim import make_schedule
from train_fixtures import write_sft

pytestmark = pytest.mark.filterwarnings("ignore")

HF_SCHEDULES = {"cosine": transformers.get_cosine_schedule_with_warmup,
                "linear": transformers.get_linear_schedule_with_warmup,
                "constant": transformers.get_constant_schedule_with_warmup}


def hf_rates(kind: str, peak: float, warmup: int, total: int) -> list[float]:
    """The rate torch applies at optimizer steps 1..total under the transformers scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    kwargs = {"num_warmup_steps": warmup}
    if kind != "constant":
        kwargs["num_training_steps"] = total
    scheduler = HF_SCHEDULES[kind](optimizer, **kwargs)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("kind", sorted(HF_SCHEDULES))
def test_schedule_function_equals_transformers(kind):
    peak = 3e-4
    for total in (1, 2, 3, 7, 10, 64, 101):
        for ratio in (0.0, 0.03, 0.1, 0.25, 0.5, 0.99):
            opt = OptimizerConfig(learning_rate=peak, warmup_ratio=ratio, schedule=kind, weight_decay=0.0,
                                  adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8, max_grad_norm=1.0)
            schedule = make_schedule(opt, total)
            ours = [float(schedule(step)) for step in range(total)]
            ref = hf_rates(kind, peak, math.ceil(ratio * total), total)
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * peak, err_msg=f"{kind} {total} {ratio}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lr")
    make_hf_model(root / "hf", "llama3.1", seed=2)
    write_sft(root / "sft.json", 22, seed=4, history_len=2)  # 22 examples: the last batch of 4 is partial
    return root


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# cosine (the paper's schedule) in the default run; the other two (~40 s each) with -m slow.
@pytest.mark.parametrize("kind", ["cosine", pytest.param("linear", marks=pytest.mark.slow),
                                  pytest.param("constant", marks=pytest.mark.slow)])
def test_logged_rate_of_every_step_equals_transformers_with_accumulation_and_resume(world, tmp_path, kind,
                                                                                    monkeypatch):
    peak, ratio, epochs, examples, batch = 2e-3, 0.25, 1.5, 22, 4
    out = tmp_path / kind
    args = ["train", "sft", f"model={world / 'hf'}", f"data.train={world / 'sft.json'}", f"output_dir={out}",
            "max_seq_len=512", "dtype=float32", "param_dtype=float32", "remat=none", "lora.rank=4",
            "mesh.fsdp=1", f"batch_size={batch}", "micro_batch_size=2",  # accumulation 2
            f"epochs={epochs}", f"schedule={kind}", f"warmup_ratio={ratio}", f"learning_rate={peak}",
            "checkpoint_every=3", "log_every=1"]
    # Optimizer steps as the HF Trainer counts them: ceil(examples / (micro * accumulation)) per
    # epoch, ceil(epochs * that) in all; warmup ceil(ratio * total) (TrainingArguments.get_warmup_steps).
    total = math.ceil(epochs * math.ceil(examples / batch))
    warmup = math.ceil(ratio * total)
    assert (total, warmup) == (9, 3)

    def crash_after(step):  # an interrupted run: dies after step 7, the last checkpoint is step 6
        if step == 7:
            raise RuntimeError("injected crash")

    monkeypatch.setattr(trainer, "_fault_injection", crash_after)
    with pytest.raises(RuntimeError, match="injected crash"):
        petool(args)
    assert [r["step"] for r in records(out)] == list(range(1, 7))
    monkeypatch.undo()
    assert petool(args) == 0  # resumes from step 6

    logged = records(out)
    assert [r["step"] for r in logged] == list(range(1, total + 1))
    ref = hf_rates(kind, peak, warmup, total)
    np.testing.assert_allclose([r["learning_rate"] for r in logged], ref, rtol=0, atol=1e-6 * peak)
    assert logged[0]["learning_rate"] == 0.0  # warmup starts from 0, as transformers
    assert logged[warmup]["learning_rate"] == pytest.approx(peak, rel=1e-6)
