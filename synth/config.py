"""Synthesis configuration: defaults, a YAML file over them, then key=value overrides.

Every key the pipeline reads is in DEFAULTS; an unknown key in the file or on the command
line is an error that names it (a typo must not silently fall back to a default).
Values on the command line are parsed as YAML scalars (`num_users=20`, `llm.model=none`,
`settings=p,c`, `tool_pool=[a.json,b.json]`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from petool_jax import config_files
from petool_jax.errors import UserError
from petool_jax.petoolbench import SETTINGS
from synth.structure import check_structure_config

DEFAULTS: dict[str, Any] = {
    # Files or folders: ToolBench/RapidAPI tool documents, or PEToolBench entry files to harvest.
    "tool_pool": [],
    "output_dir": "runs/synth",
    # Stage results and the LLM cache; default <output_dir>/work.
    "work_dir": None,
    "num_users": 100,
    "seed": 0,
    "candidates": 10,
    "settings": ["p", "r", "c"],  # or a comma list "p,r"
    "test_fraction": 0.25,
    "instances_per_user": 3,
    # Fraction of functionality groups whose instances go to the test split only.
    "holdout_groups": 0.0,
    # A PEToolBench entry file (e.g. the evaluation half of a released file): stats.md then
    # holds `petool synth compare`'s table of it against the synthesized test split.
    "reference": None,
    "llm": {
        "model": "gpt-4o-mini",  # "none": offline (needs a pool that already has instructions)
        "base_url": None,  # default: OPENAI_BASE_URL, else the OpenAI API
        "temperature": 0.0,
        "max_tokens": 1024,
        "max_concurrency": 8,
        "max_retries": 5,
        "timeout_s": 60.0,
        "backoff_base_s": 0.5,  # retry n waits uniform(0, min(backoff_max_s, base * 2**n))
        "backoff_max_s": 30.0,
        "max_reasks": 2,
        "cache_dir": None,  # default <work_dir>/llm_cache
    },
    "embedding": {
        "model": "text-embedding-3-small",  # or "local-hash" (offline, numpy only)
        "dim": 512,  # local-hash only
        "batch_size": 128,
    },
    "understanding": {
        "attributes": ["ease_of_use", "documentation_quality", "authentication", "pricing", "reliability"],
        "max_apis_per_prompt": 40,
    },
    "groups": {
        "regroup": False,  # recompute groups even when the pool already has them
        "same_threshold": 0.90,  # cosine at or above: same functionality
        "verify_threshold": 0.75,  # between this and same_threshold: ask the LLM
        "max_size": 8,
    },
    "preferences": {
        # Preferred tools per user (the release's tool_comb: 2-37, median 24). Only tools with
        # example calls can be preferred: the user's history is made of their calls.
        "min_tools": 5,
        "max_tools": 35,
        "jitter": 0.05,  # noise on attribute similarity so users sharing an anchor differ
        "anchor_tries": 5,
    },
    "instructions": {
        "per_api": 2,  # examples wanted per API; the LLM writes the ones the pool lacks
    },
    "history": {
        # The p history is the user's last calls (release: 2-20, median 20); shorter than
        # min_len and the instance is dropped. r/c show the shown rival's calls (rated 0, at
        # most rated0_max, one per API, at most negative_fraction of max_len) plus the END of
        # the p history (rated 1), so that r and c hold at most max_len calls.
        "min_len": 2,
        "max_len": 20,
        "rated0_max": 5,
        "negative_fraction": 0.75,
    },
    "structure": {
        # Figures of the 612 released entries; with a harvested PEToolBench file in the pool
        # (from_pool), its own history lengths, group sizes, same-category distractor share
        # and query-in-history rate replace the four config figures below them.
        "from_pool": True,
        "visible_p": 0.46,  # a call of the preferred tool (another API than the truth) in p
        "visible_rc": 0.39,  # ... in r/c (only where p shows it too)
        "preferred_calls": [0.71, 0.19, 0.07, 0.03],  # 1, 2, 3, 4 such calls, when visible
        "group_sizes": [0.68, 0.21, 0.11],  # 2 / 3 / 4+ same-functionality candidates
        "same_category_share": 0.31,  # distractors from the ground truth's category
        "query_in_history": 0.24,  # r/c: the rival called with the query's own text, rated 0
        # Distractors are drawn among the ground truth's this many most similar APIs (name and
        # description embeddings), in its category and outside it: the release's distractors are
        # such near neighbours ("Get User Orders" beside getOrderById). 0: from the whole pool.
        "distractor_nearest": 8,
        # At least this share of the p history's calls of the user's OTHER tools (as far as
        # the user has such calls) share the observable attributes in which the preferred tool
        # differs from all its rivals: the signal that makes a hidden preference inferable.
        # 0: drawn at random from all the user's calls.
        "attribute_signal": 0.5,
    },
    "quality": {
        # Cut test queries out of the training data (training instances with that query, and
        # history calls with its text); the leakage report is then measured after the cut.
        "scrub_test_queries_from_train": True,
        "drop_leaked_test": False,  # drop test instances whose query text still occurs in training data
    },
}


def _check(config: dict) -> None:
    def fail(key: str, why: str) -> None:
        raise UserError(f"config key {key!r}: {why}")

    def integer(key: str, value: Any, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            fail(key, f"expected an integer >= {low}, got {value!r}")
        return value

    def fraction(key: str, value: Any, high_open: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            fail(key, f"expected a number in [0, 1], got {value!r}")
        return float(value)

    pool = config["tool_pool"]
    if isinstance(pool, str):
        pool = [pool]
    if not isinstance(pool, list) or not all(isinstance(p, str) for p in pool):
        fail("tool_pool", "expected a path or a list of paths")
    if not pool:
        fail("tool_pool", "no tool sources given (set tool_pool=PATH or a list)")
    config["tool_pool"] = pool
    settings = config["settings"]
    if isinstance(settings, str):
        settings = [s.strip() for s in settings.split(",") if s.strip()]
    if not isinstance(settings, list) or not settings or any(s not in SETTINGS for s in settings):
        fail("settings", f"expected a subset of p,r,c, got {config['settings']!r}")
    config["settings"] = [s for s in SETTINGS if s in settings]
    integer("num_users", config["num_users"], 1)
    integer("seed", config["seed"], 0)
    integer("candidates", config["candidates"], 2)
    integer("instances_per_user", config["instances_per_user"], 1)
    fraction("test_fraction", config["test_fraction"])
    fraction("holdout_groups", config["holdout_groups"])
    reference = config["reference"]
    if reference is not None and (not isinstance(reference, str) or not Path(reference).is_file()):
        fail("reference", f"expected the path of a PEToolBench entry file, got {reference!r} (no such file)")
    if not isinstance(config["output_dir"], str) or not config["output_dir"]:
        fail("output_dir", "expected a path")
    llm = config["llm"]
    if not isinstance(llm["model"], str) or not llm["model"]:
        fail("llm.model", "expected a model name or 'none'")
    integer("llm.max_concurrency", llm["max_concurrency"], 1)
    integer("llm.max_retries", llm["max_retries"], 0)
    integer("llm.max_reasks", llm["max_reasks"], 0)
    integer("embedding.dim", config["embedding"]["dim"], 8)
    integer("embedding.batch_size", config["embedding"]["batch_size"], 1)
    history = config["history"]
    integer("history.min_len", history["min_len"], 2)
    integer("history.max_len", history["max_len"], 2)
    if history["max_len"] < history["min_len"]:
        fail("history.max_len", f"{history['max_len']} is below history.min_len {history['min_len']}")
    fraction("history.negative_fraction", history["negative_fraction"])
    integer("history.rated0_max", history["rated0_max"], 1)
    integer("structure.distractor_nearest", config["structure"]["distractor_nearest"], 0)
    check_structure_config(config)
    prefs = config["preferences"]
    integer("preferences.min_tools", prefs["min_tools"], 1)
    integer("preferences.max_tools", prefs["max_tools"], 1)
    if prefs["max_tools"] < prefs["min_tools"]:
        fail("preferences.max_tools", "is below preferences.min_tools")
    integer("preferences.anchor_tries", prefs["anchor_tries"], 1)
    integer("instructions.per_api", config["instructions"]["per_api"], 1)
    groups = config["groups"]
    fraction("groups.same_threshold", groups["same_threshold"])
    fraction("groups.verify_threshold", groups["verify_threshold"])
    if groups["verify_threshold"] > groups["same_threshold"]:
        fail("groups.verify_threshold", "must not exceed groups.same_threshold")
    integer("groups.max_size", groups["max_size"], 2)
    attrs = config["understanding"]["attributes"]
    if not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) and a for a in attrs):
        fail("understanding.attributes", "expected a non-empty list of attribute names")


def load_synth_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Defaults <- YAML file <- overrides, checked. Raises UserError naming the bad key."""
    config = config_files.load_config(DEFAULTS, path, overrides)
    _check(config)
    _offline_embeddings(config, "embedding.model" in config_files.overridden_keys(overrides))
    return config


def _offline_embeddings(config: dict, set_on_command_line: bool) -> None:
    """llm.model=none means offline: the local embedding is implied, unless an API embedding
    model was asked for explicitly on the command line (then the error names the key)."""
    from synth.embeddings import LOCAL_MODELS

    if not offline(config) or config["embedding"]["model"] in LOCAL_MODELS:
        return
    if set_on_command_line:
        raise UserError(
            f"llm.model=none runs offline, but embedding.model={config['embedding']['model']} needs the API: "
            f"set embedding.model={LOCAL_MODELS[0]} (or leave embedding.model unset)"
        )
    config["embedding"]["model"] = LOCAL_MODELS[0]


def offline(config: dict) -> bool:
    return str(config["llm"]["model"]).lower() == "none"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (what a stage's result depends on)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
