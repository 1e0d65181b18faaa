"""The rows of the demo's report (baselines and trained models) and their folder names."""

from __future__ import annotations

ROWS = ("random", "rule", "untrained", "sft", "sft+dpo")


def row_dir_name(row: str) -> str:
    """`sft+dpo` -> `sft_dpo`: the folder under eval/ and hf/ that holds a row's files."""
    return row.replace("+", "_")
