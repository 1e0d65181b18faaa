"""The train step: a pure function (state, frozen, batch) -> (state, metrics), jitted once
with explicit shardings and the state donated.

Gradients of the micro-batches are summed with lax.scan; every task's loss divides by a
normaliser computed from the WHOLE step's batch (e.g. the total number of assistant
tokens), so accumulation gives the same update as one big batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

# loss_fn(trainable, frozen, micro_batch, normaliser) -> (loss contribution, {metric: sum})
LossFn = Callable[[dict, dict, dict, jnp.ndarray], tuple[jnp.ndarray, dict]]


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def make_train_step(loss_fn: LossFn, normaliser: Callable[[dict], jnp.ndarray], tx, schedule):
    def train_step(state: dict, frozen: dict, batch: dict):
        norm = normaliser(batch)
        first = jax.tree.map(lambda x: x[0], batch)
        aux_shape = jax.eval_shape(lambda: loss_fn(state["trainable"], frozen, first, norm)[1])
        carry0 = (jax.tree.map(jnp.zeros_like, state["trainable"]), jnp.zeros((), jnp.float32),
                  jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape))

        def micro(carry, micro_batch):
            grads, loss, aux = carry
            (m_loss, m_aux), m_grads = jax.value_and_grad(
                lambda t: loss_fn(t, frozen, micro_batch, norm), has_aux=True)(state["trainable"])
            return (_add(grads, m_grads), loss + m_loss, _add(aux, m_aux)), None

        (grads, loss, aux), _ = jax.lax.scan(micro, carry0, batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
        trainable = optax.apply_updates(state["trainable"], updates)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads),
                   "learning_rate": schedule(state["step"]), **aux}
        return {"step": state["step"] + 1, "trainable": trainable, "opt_state": opt_state}, metrics

    return train_step


def init_state(trainable: dict, tx, mesh) -> dict:
    """Optimizer state created under jit so each moment inherits its parameter's sharding;
    the scalars (step, Adam's count) are replicated over the mesh."""
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    opt_state = jax.jit(tx.init)(trainable)
    opt_state = jax.tree.map(lambda x: x if isinstance(x.sharding, NamedSharding) else
                             jax.device_put(x, replicated), opt_state)
    return {"step": jax.device_put(jnp.zeros((), jnp.int32), replicated), "trainable": trainable,
            "opt_state": opt_state}


def shardings_of(tree):
    return jax.tree.map(lambda x: x.sharding, tree)


def jit_train_step(train_step, state, frozen, batch_shardings, metric_sharding):
    state_sh = shardings_of(state)
    return jax.jit(train_step, in_shardings=(state_sh, shardings_of(frozen), batch_shardings),
                   out_shardings=(state_sh, metric_sharding), donate_argnums=(0,))


def build_train_step(loss_fn: LossFn, normaliser, optimizer_config, total_steps: int, trainable: dict,
                     frozen: dict, batch_shardings, mesh):
    """What `petool train` runs, in one call: the optimizer and its schedule, the state on the
    mesh, and the jitted step with the state donated. Returns (jitted step, initial state).
    `optimizer_config` holds learning_rate, warmup_ratio, schedule, max_grad_norm, adam_*,
    weight_decay (petool_jax/train/optim.py). The benchmarks build their step here too, so
    they time exactly the trainer's step."""
    from petool_jax.sharding import mesh_rules, replicated
    from petool_jax.train.optim import make_optimizer

    tx, schedule = make_optimizer(optimizer_config, total_steps)
    state = init_state(trainable, tx, mesh)
    step_fn = make_train_step(loss_fn, normaliser, tx, schedule)
    with mesh_rules(mesh):
        jitted = jit_train_step(step_fn, state, frozen, batch_shardings, replicated(mesh))
    return jitted, state
