"""The demo's data: which files feed each stage, and the text the tiny path's tokenizer learns from."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from petool_jax.errors import UserError
from petool_jax.files import read_json


def find_entry_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    """folder/<stem>.json or folder/<stem>.json.gz, whichever exists."""
    for name in (f"{stem}.json", f"{stem}.json.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclasses.dataclass
class DataFiles:
    source: str  # what the data came from, for the report
    train_entries: pathlib.Path  # PEToolBench training entries (the warm-up pairs come from them)
    sft: list  # files for petool train sft
    dpo: list  # files for petool train dpo
    test: pathlib.Path
    texts_from: list  # files the tokenizer is trained on


def training_lines(paths: list) -> list[str]:
    """Text lines of training files (LLaMA-Factory rows or PEToolBench entries) for the BPE.

    Lines, not whole texts: the BPE's GPT-2-style pre-tokenizer would otherwise learn a
    "\\n\\n" token, and the chat template's "...<|end_header_id|>\\n\\n" would then encode
    differently as a generation prompt than inside a whole conversation, which SFT's
    assistant mask rightly refuses. Without newline merges both encode alike.
    """
    from petool_jax import petoolbench as pb

    lines: list[str] = []
    for path in paths:
        path = pathlib.Path(path)
        records = read_json(path)
        for record in records if isinstance(records, list) else []:
            if not isinstance(record, dict):
                continue
            texts = [record.get(k) for k in ("instruction", "input", "output", "chosen", "rejected", "query")]
            texts += [record.get(k) for k in pb.INSTRUCTION_KEYS.values()]
            if isinstance(record.get("api_call_ground_truth"), dict):
                texts.append(json.dumps(record["api_call_ground_truth"], ensure_ascii=False))
            lines += [line for text in texts if isinstance(text, str) for line in text.split("\n") if line]
    if not lines:
        raise UserError(f"no training text in {[str(p) for p in paths]}")
    return lines
