"""Preference losses on summed response log-probs (float32), one value per pair.

pc, pr: policy log-probs of the chosen / rejected response (summed over its tokens);
rc, rr: the reference model's; nc, nr: response lengths in tokens.
Returns (loss, reward_chosen, reward_rejected) per pair.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("sigmoid", "ipo", "hinge", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")


def preference_loss(kind: str, pc, pr, rc, rr, nc, nr, beta: float, label_smoothing: float = 0.0,
                    simpo_gamma: float = 0.5):
    log_sigmoid = jax.nn.log_sigmoid
    if kind == "sigmoid":
        # DPO (Rafailov et al.); label smoothing = conservative DPO (Mitchell 2023).
        h = (pc - rc) - (pr - rr)
        loss = -(1 - label_smoothing) * log_sigmoid(beta * h) - label_smoothing * log_sigmoid(-beta * h)
        return loss, beta * (pc - rc), beta * (pr - rr)
    if kind == "ipo":
        # IPO (Azar et al. 2023): squared loss towards 1/(2 beta) on per-token average log-ratios.
        h = (pc - rc) / nc - (pr - rr) / nr
        return (h - 1.0 / (2.0 * beta)) ** 2, beta * (pc - rc), beta * (pr - rr)
    if kind == "hinge":
        # SLiC-HF (Zhao et al. 2023) hinge on the reference-normalised margin.
        h = (pc - rc) - (pr - rr)
        return jax.nn.relu(1.0 - beta * h), beta * (pc - rc), beta * (pr - rr)
    if kind == "simpo":
        # SimPO (Meng et al. 2024): length-normalised reward beta/|y| log p, target margin gamma.
        reward_c, reward_r = beta * pc / nc, beta * pr / nr
        return -log_sigmoid(reward_c - reward_r - simpo_gamma), reward_c, reward_r
    if kind == "orpo":
        # ORPO (Hong et al. 2024): NLL of the chosen answer + beta * odds-ratio term, on
        # per-token average log-likelihoods; log odds = log p - log(1 - p).
        mc, mr = pc / nc, pr / nr
        log_odds = (mc - jnp.log1p(-jnp.exp(mc))) - (mr - jnp.log1p(-jnp.exp(mr)))
        return -mc - beta * log_sigmoid(log_odds), beta * mc, beta * mr
    raise ValueError(f"dpo.loss {kind!r} is not one of {LOSSES}")
