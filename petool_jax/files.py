"""Reading and writing the project's files: one place for both.

Writes are whole or nothing: a temporary file beside the target, fsynced, then renamed, so a
reader or a crashed run sees the old file or the complete new one, never half of it. Reads
accept gzip (`*.gz`) and turn every failure into a UserError that names the file and, for
JSON, the line and column.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import tempfile
from typing import Any

from petool_jax.errors import UserError

# mkstemp makes 0600 files; a finished output gets the usual umask-derived mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """The project's JSON formatting: UTF-8 kept as is, a final newline; equal data, equal bytes."""
    return json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    write_text(path, json_text(obj, indent, sort_keys))


def write_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    write_bytes(path, buffer.getvalue())


def read_text(path: str | os.PathLike) -> str:
    """A text file, gunzipped when its name ends in .gz."""
    path = pathlib.Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read: {err}") from None


def read_json(path: str | os.PathLike) -> Any:
    """One JSON document (gzip allowed); errors name the file, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = ""
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = " (this looks like JSON Lines; expected one JSON document)"
        raise UserError(f"{path}: line {err.lineno} column {err.colno}: not valid JSON: {err.msg}{hint}") from None


def read_records(path: str | os.PathLike) -> list[dict]:
    """A JSON list of objects or JSON Lines of objects (training and prediction files)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: data file not found")
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: malformed JSON ({err.msg}, column {err.colno})") from None
    else:
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
