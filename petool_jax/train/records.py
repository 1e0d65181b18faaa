"""Checks on training records, with errors that name the file, the record and the key.
(Reading the files is petool_jax.files.read_records.)"""

from __future__ import annotations

from petool_jax.errors import UserError


def require(record: dict, keys: tuple[str, ...], path, index: int) -> None:
    for key in keys:
        if key not in record:
            raise UserError(f"{path}: record {index} lacks the field {key!r}")

