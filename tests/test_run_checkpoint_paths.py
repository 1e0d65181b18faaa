"""Fast checks of how a training run's paths are told apart (the numeric equivalence of
RUN_DIR/checkpoints/N and RUN_DIR/model is tests/test_checkpoint_models.py, slow)."""

from __future__ import annotations

import pytest

from petool_jax.errors import UserError
from petool_jax.loading import load_model
from petool_jax.run_checkpoint import describe, is_training_checkpoint


def _run_dir(tmp_path, config="model: /nowhere\nlora: {rank: 4, alpha: 8.0}\nparam_dtype: float32\n"):
    run = tmp_path / "run"
    for step in (50, 100):
        (run / "checkpoints" / str(step) / "state").mkdir(parents=True)
    (run / "checkpoints" / "150.orbax-checkpoint-tmp-1").mkdir()  # a save in progress
    (run / "config.yaml").write_text(config)
    return run


def test_checkpoint_paths_are_recognised(tmp_path):
    run = _run_dir(tmp_path)
    assert is_training_checkpoint(run / "checkpoints" / "50")
    assert not is_training_checkpoint(run) and not is_training_checkpoint(run / "checkpoints")
    assert not is_training_checkpoint(run / "checkpoints" / "150.orbax-checkpoint-tmp-1")
    info = describe(run / "checkpoints" / "100")
    assert (info.lora_rank, info.lora_alpha, info.param_dtype, info.base_model) == (4, 8.0, "float32", "/nowhere")


def test_a_run_directory_is_refused_naming_its_models(tmp_path):
    run = _run_dir(tmp_path)
    with pytest.raises(UserError, match=r"is a training run directory; pass its finished model .*/run/model or a "
                                        r"checkpoint .*/run/checkpoints/N \(N in \[50, 100\]\)"):
        load_model(run)


def test_a_checkpoint_whose_run_config_lacks_keys_is_refused(tmp_path):
    run = _run_dir(tmp_path, config="model: /nowhere\n")
    with pytest.raises(UserError, match=r"run/config.yaml: missing key 'lora'; not a petool training run"):
        describe(run / "checkpoints" / "50")
