"""Write a whole file or nothing: a temporary file beside it, fsynced, then renamed."""

from __future__ import annotations

import json
import os
import pathlib


def write_atomic(path, data: str | bytes) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path, value) -> None:
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")
