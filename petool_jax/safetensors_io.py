"""Reading and writing the safetensors format one tensor at a time.

The `safetensors` package's numpy API has no bfloat16 (LLaMA-3's dtype), so this module
reads the (simple) format directly: an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}}, then the raw bytes. Files are validated up front
(header, offsets, file size), so a truncated download fails with the file's name before
any weights are read. Only plain data is ever loaded (no pickle).
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
from typing import Callable, Iterator

import ml_dtypes
import numpy as np

from petool_jax.errors import UserError

DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
    """Index of one .safetensors file; `read(name)` returns one tensor as a fresh array."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: safetensors file not found")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{self.path}: truncated safetensors file (no header)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > _MAX_HEADER or 8 + header_len > size:
                raise UserError(f"{self.path}: truncated or corrupt safetensors header")
            try:
                header = json.loads(f.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise UserError(f"{self.path}: corrupt safetensors header ({err})") from None
        self.metadata = header.pop("__metadata__", {}) or {}
        self.data_start = 8 + header_len
        self.entries = header
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            if entry["dtype"] not in DTYPES:
                raise UserError(f"{self.path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
            nbytes = int(np.prod(entry["shape"], dtype=np.int64)) * DTYPES[entry["dtype"]].itemsize
            if end - begin != nbytes:
                raise UserError(f"{self.path}: tensor {name!r} has {end - begin} bytes for shape {entry['shape']}")
            if self.data_start + end > size:
                raise UserError(f"{self.path}: truncated file: tensor {name!r} ends at byte "
                                f"{self.data_start + end} but the file has {size} bytes")

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        begin, end = entry["data_offsets"]
        out = np.empty(entry["shape"], DTYPES[entry["dtype"]])
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            got = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        if got != end - begin:
            raise UserError(f"{self.path}: short read of tensor {name!r}")
        return out


def write_file(path: str | os.PathLike, specs: list[tuple[str, tuple[int, ...], np.dtype]],
               produce: Callable[[str], np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write tensors named in `specs` (name, shape, dtype), asking `produce(name)` for each
    one only when its bytes are written, so at most one tensor is materialised at a time."""
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, shape, dtype in specs:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": DTYPE_NAMES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape, dtype in specs:
            array = produce(name)
            if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
                raise ValueError(f"{name}: produced {array.shape} {array.dtype}, declared {shape} {dtype}")
            f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def iter_checkpoint_files(hf_dir: pathlib.Path) -> Iterator[SafetensorsFile]:
    """The safetensors files of an HF model directory (single file or sharded with index)."""
    index_path = hf_dir / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise UserError(f"{index_path}: invalid index ({err})") from None
        shard_names = sorted(set(weight_map.values()))
        missing = [n for n in shard_names if not (hf_dir / n).is_file()]
        if missing:
            raise UserError(f"{index_path}: shard files missing: {missing}")
        files = [SafetensorsFile(hf_dir / n) for n in shard_names]
        for st in files:
            wrong = [k for k in st.keys() if weight_map.get(k) != st.path.name]
            if wrong:
                raise UserError(f"{st.path}: tensors not listed for this shard in the index: {wrong[:5]}")
        yield from files
    elif (hf_dir / "model.safetensors").is_file():
        yield SafetensorsFile(hf_dir / "model.safetensors")
    else:
        if any(hf_dir.glob("*.bin")) or any(hf_dir.glob("*.pth")):
            raise UserError(f"{hf_dir}: only pickle weights (*.bin/*.pth) found; petool loads safetensors only")
        raise UserError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")
