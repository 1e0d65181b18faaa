"""Training checkpoints with orbax: async, keep-N, atomic (orbax writes to a temporary
directory and renames it on commit, so a kill mid-save leaves no step that restores).
Each checkpoint holds the train state (trainable parameters, optimizer state, step) and a
JSON record of the data position."""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


class CheckpointStore:
    def __init__(self, directory: pathlib.Path, keep: int):
        self.directory = pathlib.Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "progress"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, progress: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        progress=ocp.args.JsonSave(progress)))

    def restore(self, step: int, like_state):
        """State restored onto the shardings of `like_state`; plus the progress record."""
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()))
        return restored["state"], restored["progress"]

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
