"""HF safetensors checkpoint -> petool model directory.

Every tensor is located, shape-checked and accounted for from the file headers before a
byte of weight data is read; then each tensor is read on its own and copied into its slot
of the (stacked) parameter arrays, so peak host memory stays about one copy of the weights.
"""

from __future__ import annotations

import pathlib

import numpy as np
from tqdm import tqdm

from petool_jax import hf_keys
from petool_jax.checkpoint import atomic_output_dir, save_param, write_model_files
from petool_jax.config import read_hf_config
from petool_jax.errors import UserError
from petool_jax.safetensors_io import DTYPES, SafetensorsFile, iter_checkpoint_files


def _plan(config, files: list[SafetensorsFile]):
    """[(file, hf name, petool path, layer, transposed)] for every tensor; raises on any
    missing, unexpected, duplicated or wrongly shaped tensor (all listed at once)."""
    plan, seen, unexpected, bad_shapes, ignored = [], {}, [], [], []
    for st in files:
        for name in st.keys():
            if hf_keys.IGNORED_HF_KEYS.fullmatch(name):
                continue
            match = hf_keys.match_hf_key(name)
            if match is None or (match[1] is not None and match[1] >= config.num_hidden_layers):
                unexpected.append(name)
                continue
            path, layer, transposed = match
            if path[0] == "lm_head" and config.tie_word_embeddings:
                ignored.append(name)  # some exporters keep the tied copy; the embedding is the weight
                continue
            if name in seen:
                raise UserError(f"tensor {name!r} appears twice: in {seen[name]} and {st.path}")
            seen[name] = st.path
            expected = hf_keys.hf_shape(config, path)
            if st.shape(name) != expected:
                bad_shapes.append(f"{name} in {st.path.name}: {list(st.shape(name))}, expected {list(expected)}")
            plan.append((st, name, path, layer, transposed))
    hf_keys.check_tensor_inventory(config, seen, unexpected, bad_shapes, "cannot convert checkpoint")
    return plan


def _set_nested(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _read_checked(hf_dir: pathlib.Path):
    config = read_hf_config(hf_dir)
    files = list(iter_checkpoint_files(hf_dir))
    plan = _plan(config, files)
    dtypes = {st.entries[name]["dtype"] for st, name, *_ in plan}
    if len(dtypes) != 1:
        raise UserError(f"{hf_dir}: tensors have mixed dtypes {sorted(dtypes)}")
    return config, plan, DTYPES[dtypes.pop()]


def iter_hf_params(hf_dir: str | pathlib.Path, progress: bool = True):
    """Yield (petool path, stacked numpy array) one parameter at a time, each slot of each
    array filled exactly once from its HF tensor."""
    hf_dir = pathlib.Path(hf_dir)
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir}: not a directory")
    config, plan, dtype = _read_checked(hf_dir)
    by_path: dict[tuple[str, ...], list] = {}
    for item in plan:
        by_path.setdefault(item[2], []).append(item)
    bar = tqdm(total=len(plan), desc="read weights", unit="tensor", disable=not progress)
    for path in hf_keys.petool_paths(config):
        dest = np.empty(hf_keys.petool_shape(config, path), dtype)
        filled = set()
        for st, name, _, layer, transposed in by_path[path]:
            tensor = st.read(name)
            np.copyto(dest if layer is None else dest[layer], tensor.T if transposed else tensor)
            filled.add(layer)
            del tensor
            bar.update(1)
        want = set(range(config.num_hidden_layers)) if path[0] == "layers" else {None}
        assert filled == want, (path, filled)
        yield path, dest
    bar.close()


def read_hf_params(hf_dir: str | pathlib.Path, progress: bool = True):
    """(config, params as a nested dict of numpy arrays in the file's dtype, tensor count)."""
    config = read_hf_config(hf_dir)
    params: dict = {}
    count = 0
    for path, array in iter_hf_params(hf_dir, progress):
        _set_nested(params, path, array)
        count += config.num_hidden_layers if path[0] == "layers" else 1
    return config, params, count


def convert_hf_checkpoint(hf_dir: str | pathlib.Path, out_dir: str | pathlib.Path,
                          overwrite: bool = False, progress: bool = True) -> dict:
    """Convert one parameter at a time; return {"tensors": n, "bytes": n, "dtype": name}."""
    hf_dir = pathlib.Path(hf_dir)
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail before reading gigabytes
        raise UserError(f"{out_dir} already exists (pass --overwrite to replace it)")
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir}: not a directory")
    config, plan, dtype = _read_checked(hf_dir)  # every check before any output
    total = 0
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        for path, array in iter_hf_params(hf_dir, progress):
            save_param(tmp, path, array)
            total += array.nbytes
            del array
        write_model_files(tmp, config, dtype.name, tokenizer_src=hf_dir,
                          extra={"source": str(hf_dir.resolve())})
    return {"tensors": len(plan), "bytes": total, "dtype": dtype.name}
