"""Reading a GGUF file (llama.cpp's format) with ggml-org's `gguf` package: opening it with
clear errors, its metadata as plain Python values, and its tensors dequantized to float32.

A GGUF stores each matrix in ggml's order: the `gguf` reader hands back numpy arrays whose
shape is the HF (torch) shape, [out_features, in_features], so nothing is transposed here.
"""

from __future__ import annotations

import pathlib

import numpy as np

from petool_jax.errors import UserError


def open_gguf(path: str | pathlib.Path):
    """A gguf.GGUFReader over `path` (memory-mapped: tensors are read when touched).

    A file that is not GGUF, is cut short, or whose tensors point past its end is a UserError."""
    import gguf

    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, TypeError) as err:
        # The reader fails while parsing a header or a tensor's view when the file is cut short.
        raise UserError(f"{path}: not a readable GGUF file (truncated or corrupt?): {err}") from None
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size or tensor.data.nbytes != int(tensor.n_bytes):
            raise UserError(f"{path}: truncated: tensor {tensor.name!r} needs bytes up to {end}, "
                            f"the file has {size}")
    return reader


def field_value(reader, key: str, default=None):
    """A metadata value as Python (str, int, float, bool, or a list of them); `default` when absent."""
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def metadata_keys(reader) -> list[str]:
    return [k for k in reader.fields if not k.startswith("GGUF.")]


def supported_types() -> set:
    """ggml tensor types the `gguf` package can dequantize in numpy."""
    import gguf
    from gguf import quants

    traits = getattr(quants, "_type_traits", {})
    return {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, *traits}


def check_tensor_types(reader, path) -> None:
    """Every tensor's type must be dequantizable; all offenders are named at once."""
    ok = supported_types()
    bad = [f"{t.name} ({t.tensor_type.name})" for t in reader.tensors if t.tensor_type not in ok]
    if bad:
        names = sorted(t.name for t in ok)
        raise UserError(f"{path}: unsupported tensor type(s): {bad[:10]}; the gguf package dequantizes {names}")


def dequantized(tensor) -> np.ndarray:
    """One tensor as float32 in its HF shape."""
    from gguf import quants

    try:
        array = quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as err:
        raise UserError(f"tensor {tensor.name!r}: {err}") from None
    return np.asarray(array, np.float32).reshape(tuple(int(d) for d in reversed(tensor.shape)))
