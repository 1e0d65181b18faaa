"""A petool model directory: the weights as an orbax checkpoint, the HF config.json and the
tokenizer files, written to a temporary sibling and renamed into place when complete.

    CKPT_DIR/config.json             HF-style model config (LlamaConfig.to_hf_dict)
    CKPT_DIR/petool_model.json       {"format": "petool-model", "version": 1, "param_dtype": ...}
    CKPT_DIR/params/<a.b.c>/         one orbax checkpoint per parameter (paths: hf_keys.py), so
                                     a conversion holds one parameter in memory at a time
    CKPT_DIR/tokenizer.json ...      tokenizer files and chat template, copied as given
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import tempfile
from typing import Any, Iterator

from petool_jax.config import LlamaConfig, read_hf_config
from petool_jax.errors import UserError

MARKER = "petool_model.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "chat_template.jinja", "chat_template.json", "generation_config.json")


def is_petool_model(path: str | pathlib.Path) -> bool:
    return (pathlib.Path(path) / MARKER).is_file()


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | pathlib.Path, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temporary directory beside `out_dir`; rename it to `out_dir` on success.

    On any error the temporary directory is removed and `out_dir` is left as it was.
    """
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir} already exists (pass --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            trash = out_dir.with_name(f".{out_dir.name}.old-{tmp.name[-8:]}")
            out_dir.rename(trash)
            tmp.rename(out_dir)
            shutil.rmtree(trash)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_tokenizer_files(src: pathlib.Path, dst: pathlib.Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def leaf_dir_name(path: tuple[str, ...]) -> str:
    return ".".join(path)


def save_param(tmp_dir: pathlib.Path, path: tuple[str, ...], array) -> None:
    """Write one parameter (numpy or jax array) as its own orbax checkpoint."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer(multiprocessing_options=this_process_only())
    checkpointer.save((tmp_dir / "params" / leaf_dir_name(path)).resolve(), {"value": array})
    checkpointer.wait_until_finished()
    checkpointer.close()


def this_process_only():
    """orbax options for a save that only this process makes (with several processes, the
    model directory is written by process 0 from host arrays; orbax's default would wait at
    a barrier for the other processes, which never come)."""
    import jax
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.options.MultiprocessingOptions()
    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                              barrier_sync_key_prefix=f"model-dir-{me}")


def write_model_files(tmp_dir: pathlib.Path, config: LlamaConfig, param_dtype: str,
                      tokenizer_src: pathlib.Path | None, extra: dict | None = None) -> None:
    """config.json, tokenizer files and the petool_model.json marker (written last)."""
    (tmp_dir / "config.json").write_text(json.dumps(config.to_hf_dict(param_dtype), indent=2) + "\n")
    if tokenizer_src is not None:
        copy_tokenizer_files(tokenizer_src, tmp_dir)
    marker = {"format": "petool-model", "version": 1, "param_dtype": param_dtype, **(extra or {})}
    (tmp_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def write_model_dir(tmp_dir: pathlib.Path, config: LlamaConfig, params: Any, param_dtype: str,
                    tokenizer_src: pathlib.Path | None, extra: dict | None = None) -> None:
    """Write a whole in-memory parameter tree plus config, tokenizer files and marker."""
    import jax

    for key_path, leaf in jax.tree_util.tree_leaves_with_path(params):
        save_param(tmp_dir, tuple(k.key for k in key_path), leaf)
    write_model_files(tmp_dir, config, param_dtype, tokenizer_src, extra)


def read_model_config(ckpt_dir: str | pathlib.Path) -> LlamaConfig:
    ckpt_dir = pathlib.Path(ckpt_dir)
    if not is_petool_model(ckpt_dir):
        raise UserError(f"{ckpt_dir}: not a petool model directory (no {MARKER})")
    return read_hf_config(ckpt_dir / "config.json")


def load_params(ckpt_dir: str | pathlib.Path, abstract_params: Any | None = None) -> Any:
    """The parameter tree. With `abstract_params` (jax.ShapeDtypeStruct leaves carrying
    shardings) each array is restored straight onto its devices; without, as numpy."""
    import orbax.checkpoint as ocp

    root = pathlib.Path(ckpt_dir).resolve() / "params"
    if not root.is_dir():
        raise UserError(f"{ckpt_dir}: no params/ checkpoint")
    stored = sorted(p.name for p in root.iterdir() if p.is_dir())
    params: dict = {}
    checkpointer = ocp.StandardCheckpointer()
    try:
        if abstract_params is None:
            for name in stored:
                _set(params, tuple(name.split(".")), checkpointer.restore(root / name)["value"])
            return params
        import jax

        wanted = {".".join(k.key for k in kp): leaf
                  for kp, leaf in jax.tree_util.tree_leaves_with_path(abstract_params)}
        missing, unexpected = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
        if missing or unexpected:
            raise UserError(f"{ckpt_dir}: parameters do not match the model: missing {missing}, "
                            f"unexpected {unexpected}")
        for name, target in wanted.items():
            _set(params, tuple(name.split(".")), checkpointer.restore(root / name, {"value": target})["value"])
        return params
    finally:
        checkpointer.close()


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
