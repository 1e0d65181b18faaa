"""Reading training files: JSON lists (LLaMA-Factory, PEToolBench) or JSON Lines, with
errors that name the file, the line and the missing key."""

from __future__ import annotations

import gzip
import json
import pathlib

from petool_jax.errors import UserError


def read_records(path: str | pathlib.Path) -> list[dict]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: data file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: malformed JSON ({err.msg}, column {err.colno})") from None
    else:  # JSON Lines
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"{path}: record {i} is not a JSON object")
    return records


def require(record: dict, keys: tuple[str, ...], path, index: int) -> None:
    for key in keys:
        if key not in record:
            raise UserError(f"{path}: record {index} lacks the field {key!r}")
