"""predictions.jsonl: one JSON object per (entry, setting), appended batch by batch.

Row keys: entry_id, setting, response (None when the request failed), prompt_tokens
(None when the runner has no tokenizer), shortened (history entries were dropped to fit),
n_dropped, ok, error. A run appends and fsyncs after every batch, so a killed run loses at
most the batch in flight; the next run cuts a half-written last line and skips every
(entry_id, setting) already present.
"""

from __future__ import annotations

import json
import os
import pathlib

from petool_jax.errors import UserError
from petool_jax.files import write_text
from petool_jax.petoolbench import EVAL_SETTINGS

REQUIRED_KEYS = ("entry_id", "setting", "response")


def prediction_row(entry_id, setting, response, prompt_tokens=None, n_dropped=0, ok=True, error=None) -> dict:
    return {
        "entry_id": entry_id,
        "setting": setting,
        "response": response,
        "prompt_tokens": prompt_tokens,
        "shortened": n_dropped > 0,
        "n_dropped": n_dropped,
        "ok": ok,
        "error": error,
    }


def load_predictions(path, entry_ids=None) -> dict[tuple, dict]:
    """{(entry_id, setting): row}; every malformed line is an error naming file and line.

    `entry_ids` (a set) turns a prediction for an entry the data does not hold into an error.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    rows: dict[tuple, dict] = {}
    lines_of: dict[tuple, int] = {}
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            last = number == len(lines)  # no newline after it: cut off mid-write
            hint = (" (a run killed mid-write? rerun `petool eval run` with the same arguments to resume)"
                    if last else "")
            raise UserError(f"{where}: not valid JSON: {err}{hint}") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in REQUIRED_KEYS:
            if key not in row:
                raise UserError(f"{where}: missing key {key!r}")
        if row["setting"] not in EVAL_SETTINGS:
            raise UserError(f"{where}: unknown setting {row['setting']!r}; settings are {','.join(EVAL_SETTINGS)}")
        if row["response"] is not None and not isinstance(row["response"], str):
            raise UserError(f"{where}: key 'response' must be a string or null")
        try:
            key = (row["entry_id"], row["setting"])
            hash(key)
        except TypeError:
            raise UserError(f"{where}: key 'entry_id' must be an integer or a string") from None
        if entry_ids is not None and row["entry_id"] not in entry_ids:
            raise UserError(f"{where}: entry_id {row['entry_id']!r} is not in the data file")
        if key in rows:
            raise UserError(
                f"{where}: duplicate prediction for entry_id {key[0]!r} setting {key[1]!r} "
                f"(first on line {lines_of[key]})"
            )
        rows[key] = row
        lines_of[key] = number
    return rows


def cut_partial_tail(path) -> int:
    """Drop a last line that a killed run left half-written; returns the bytes removed."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - keep


def rewrite_without(path, drop) -> int:
    """Atomically rewrite the file without rows for which drop(row) is true; returns how many."""
    path = pathlib.Path(path)
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and drop(json.loads(line)):
            dropped += 1
        elif line.strip():
            kept.append(line + "\n")
    if dropped:
        write_text(path, "".join(kept))
    return dropped


class PredictionWriter:
    """Appends rows; every write_batch is flushed and fsynced before it returns."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write_batch(self, rows: list[dict]) -> None:
        self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
