"""The run directory's outputs: config.yaml, metrics.jsonl, TensorBoard events, a progress
bar with ETA, and a loss-curve PNG at the end."""

from __future__ import annotations

import json
import math
import pathlib

from tqdm import tqdm

from petool_jax.files import write_text

# Dense bf16 peak FLOP/s per chip, for MFU (substring of jax's device_kind -> FLOP/s).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "TPU v4": 275e12,
              "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
              "TPU v6 lite": 918e12, "TPU v6e": 918e12}


def peak_flops(device_kind: str) -> float | None:
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in device_kind.lower():
            return flops
    return None


class RunLog:
    def __init__(self, run_dir: pathlib.Path, total_steps: int, start_step: int, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self.metrics_path = run_dir / "metrics.jsonl"
        if enabled:
            self._truncate_after(start_step)
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step")

    def _truncate_after(self, step: int) -> None:
        """On resume, forget metrics logged after the checkpoint being resumed from."""
        if not self.metrics_path.is_file():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def log(self, record: dict) -> None:
        """A training step's record: metrics.jsonl, TensorBoard, the progress bar."""
        if self._write(record):
            self.bar.set_postfix(loss=f"{record['loss']:.4f}")
            self.bar.update(1)

    def log_eval(self, record: dict) -> None:
        """A validation record ({"step", "val_loss", ...}) between the training records."""
        self._write(record)

    def _write(self, record: dict) -> bool:
        """Append to metrics.jsonl and TensorBoard (process 0 only); whether it wrote."""
        if not self.enabled:
            return False
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(key, value, record["step"])
        return True

    def records(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.tb.close()
        self.plot_loss()

    def plot_loss(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = [r for r in self.records() if "loss" in r]
        if not records:
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in records], [r["loss"] for r in records], label="train")
        val = [r for r in self.records() if "val_loss" in r]
        if val:
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], marker="o", label="validation")
            ax.legend()
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(self.run_dir.name)
        fig.tight_layout()
        fig.savefig(self.run_dir / "loss.png", dpi=100)
        plt.close(fig)
