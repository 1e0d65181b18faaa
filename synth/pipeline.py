"""The synthesis pipeline end to end: pool -> a understanding -> b groups -> c preferences ->
d instructions -> e/f histories and instances -> checks -> splits -> files and stats.

Stages pool..d are cached in <work_dir>/stages (see stages.py) and LLM calls in the LLM
cache, so a rerun or a resumed run repeats no work and sends no request; e/f and after are
cheap and always recomputed from the cached stages (deterministic for a seed).
"""

from __future__ import annotations

import time
from pathlib import Path

from petool_jax.errors import UserError
from petool_jax.llm_client import LLMClient
from synth.config import fingerprint, offline as is_offline
from synth.embeddings import LOCAL_MODELS
from synth.groups import apply_groups, run_groups
from synth.instances import build_instances
from synth.instructions import apply_instructions, run_instructions
from petool_jax.files import write_json
from synth.outputs import write_dataset_files
from synth.pool import Pool
from synth.preferences import run_preferences
from synth.quality import filter_instances, leakage, scrub_train
from synth.sources import load_pool, source_fingerprint
from synth.split import split
from synth.stages import StageStore
from synth.stats import write_stats
from synth.understanding import apply_understanding, run_understanding


def make_client(config: dict, work: Path) -> LLMClient:
    llm = config["llm"]
    return LLMClient(
        base_url=llm["base_url"], cache_dir=llm["cache_dir"] or work / "llm_cache",
        max_concurrency=llm["max_concurrency"], max_retries=llm["max_retries"], timeout_s=llm["timeout_s"],
        backoff_base_s=llm["backoff_base_s"], backoff_max_s=llm["backoff_max_s"], seed=config["seed"],
    )


def run_pipeline(config: dict, client: LLMClient | None = None) -> dict:
    started = time.monotonic()
    out = Path(config["output_dir"])
    work = Path(config["work_dir"]) if config["work_dir"] else out / "work"
    offline = is_offline(config)
    if client is None and (not offline or config["embedding"]["model"] not in LOCAL_MODELS):
        client = make_client(config, work)
    store = StageStore(work, client)
    llm_keys = {k: config["llm"][k] for k in ("model", "temperature", "max_tokens", "max_reasks")}
    timings = {}

    def timed(name, fp, fn):
        t0 = time.monotonic()
        result = store.run(name, fp, fn)
        timings[name] = round(time.monotonic() - t0, 3)
        return result

    # "v2": harvested pools also carry their structure figures (synth/structure.py).
    fp = fingerprint("pool", "v4", source_fingerprint(config["tool_pool"]))
    pool_json, pool_report = timed("pool", fp, lambda: _load(config))
    pool = Pool.from_json(pool_json)
    reports = {"pool": pool_report}

    fp = fingerprint("understanding", fp, llm_keys, config["understanding"])
    result, reports["a understanding"] = timed("understanding", fp, lambda: run_understanding(pool, config, client, offline))
    failures = list(result["failures"])
    apply_understanding(pool, result)

    fp = fingerprint("groups", fp, fingerprint(result), llm_keys, config["groups"], config["embedding"])
    result, reports["b groups"] = timed("groups", fp, lambda: run_groups(pool, config, client, offline))
    failures += result.get("failures", [])
    apply_groups(pool, result)

    fp = fingerprint("preferences", fp, fingerprint(result), config["preferences"], config["embedding"],
                     config["num_users"], config["seed"])
    result, reports["c preferences"] = timed("preferences", fp, lambda: run_preferences(pool, config, client))
    users = result["users"]
    if not users:
        raise UserError("no user could be given a preference: the pool has no functionality group spanning two tools")

    fp = fingerprint("instructions", fp, fingerprint(result), llm_keys, config["instructions"])
    result, reports["d instructions"] = timed("instructions", fp, lambda: run_instructions(pool, users, config, client, offline))
    failures += result["failures"]
    apply_instructions(pool, result)

    t0 = time.monotonic()
    entries, metas, reports["e/f histories and instances"] = build_instances(pool, users, config, client)
    kept, kept_metas, quality = filter_instances(entries, metas, pool, config)
    if not kept:
        reasons = reports["e/f histories and instances"]["instances not built"]
        raise UserError(
            f"no instance survived (built {len(entries)}; not built: {reasons or 'none'}; "
            f"dropped by checks: { {k: v for k, v in quality.items() if v} }). A pool needs preferred tools "
            "with at least two APIs with example instructions, and competing tools with examples"
        )
    for i, entry in enumerate(kept):
        entry["entry_id"] = i
    labels, split_report = split(kept_metas, [e["query"] for e in kept], config)
    train = [e for e, lab in zip(kept, labels) if lab == "train"]
    train_metas = [m for m, lab in zip(kept_metas, labels) if lab == "train"]
    test = [e for e, lab in zip(kept, labels) if lab == "test"]
    test_metas = [m for m, lab in zip(kept_metas, labels) if lab == "test"]
    if config["quality"]["scrub_test_queries_from_train"]:
        train, train_metas, scrubbed = scrub_train(train, train_metas, test, pool, config)
        split_report.update(scrubbed)
        split_report["train after scrubbing"] = len(train)
    leak = leakage(test, train, config["settings"])
    if config["quality"]["drop_leaked_test"] and leak["leaked entry ids"]:
        leaked = set(leak["leaked entry ids"])
        test_metas = [m for e, m in zip(test, test_metas) if e["entry_id"] not in leaked]
        test = [e for e in test if e["entry_id"] not in leaked]
        leak["dropped from test"] = len(leaked)
    split_report["users in train"] = len({m["user_id"] for m in train_metas})
    split_report["users in test"] = len({m["user_id"] for m in test_metas})
    written = write_dataset_files(out, train, train_metas, test, test_metas, users, config)
    written += write_stats(out, config, pool, reports, quality, split_report, leak, train, test, failures, len(entries), len(kept))
    timings["instances, checks, files"] = round(time.monotonic() - t0, 3)
    summary = {
        "output_dir": str(out), "files": written, "train": len(train), "test": len(test), "users": len(users),
        "dropped by checks": sum(quality.values()), "llm failures": len(failures),
        "stages": dict(store.statuses), "seconds": timings, "total seconds": round(time.monotonic() - started, 3),
        "llm": client.stats.as_dict() if client is not None else None,
    }
    # This run's own log (timings, cache hits): deliberately not part of the reproducible outputs.
    write_json(work / "run_log.json", summary)
    return summary


def _load(config: dict) -> tuple[dict, dict]:
    pool = load_pool(config["tool_pool"])
    report = {
        "mode": "loaded", "tools": len(pool.tools), "APIs": len(pool.apis),
        "documented APIs": sum(a.documented for a in pool.apis.values()),
        "groups in the sources": len(pool.groups()),
        "example instructions": sum(len(a.examples) for a in pool.apis.values()),
    }
    return pool.to_json(), report
