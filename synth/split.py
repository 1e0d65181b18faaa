"""Train/test split of the checked instances.

`holdout_groups` (a fraction) picks whole functionality groups whose instances all go to
test, so a model is tested on groups it never trained on. The rest is split at random until
test holds `test_fraction` of all instances. Instances are unique per (user, query) after the
checks, so the two sides are disjoint by (user, query); `split` asserts it anyway.
"""

from __future__ import annotations

import numpy as np


def split(metas: list[dict], queries: list[str], config: dict) -> tuple[list[str], dict]:
    """One 'train'/'test' label per instance, and a report."""
    rng = np.random.default_rng([config["seed"], 9])
    n = len(metas)
    funcs = sorted({m["func"] for m in metas})
    n_hold = int(round(config["holdout_groups"] * len(funcs)))
    held = {funcs[int(i)] for i in rng.permutation(len(funcs))[:n_hold]}
    labels = ["test" if m["func"] in held else "train" for m in metas]
    target = int(round(config["test_fraction"] * n))
    free = [i for i in range(n) if labels[i] == "train"]
    need = max(0, target - (n - len(free)))
    for i in rng.permutation(len(free))[:need]:
        labels[free[int(i)]] = "test"
    train_keys = {(m["user_id"], q) for m, q, lab in zip(metas, queries, labels) if lab == "train"}
    test_keys = {(m["user_id"], q) for m, q, lab in zip(metas, queries, labels) if lab == "test"}
    overlap = train_keys & test_keys
    assert not overlap, f"train/test share (user, query) pairs: {sorted(overlap)[:3]}"
    return labels, {
        "instances": n, "test": labels.count("test"), "train": labels.count("train"),
        "held-out groups (test only)": len(held), "groups": len(funcs),
        "train/test (user, query) overlap": len(overlap),
    }
