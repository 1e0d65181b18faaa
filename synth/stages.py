"""Stage results on disk: compute once, reuse while the inputs are unchanged.

Each stage writes `<work_dir>/stages/<name>.json` = {fingerprint, result, report}. The
fingerprint hashes what the result depends on (the tool sources, the stage's config keys,
the upstream stages' fingerprints); a rerun with the same fingerprint loads the result
instead of recomputing it. A stage killed half-way leaves no file (atomic write) and is
recomputed, and its LLM requests that did finish are served by the LLM cache, so no
request is paid for twice. A result that recorded LLM failures (an outage, a quota) is
kept but not trusted: the next run recomputes it, asking again only for what failed.
The pipeline chains each stage's fingerprint to the hash of the previous stage's result,
so a recomputed stage that comes out different invalidates everything after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from petool_jax.errors import UserError
from petool_jax.files import read_json, write_json


class StageStore:
    def __init__(self, work_dir: str | Path, client=None):
        self.dir = Path(work_dir) / "stages"
        self.client = client
        self.statuses: dict[str, str] = {}

    def run(self, name: str, fingerprint: str, compute: Callable[[], tuple[Any, dict]]) -> tuple[Any, dict]:
        path = self.dir / f"{name}.json"
        if path.exists():
            try:
                stored = read_json(path)
            except UserError:  # a torn or unreadable stage file is recomputed
                stored = None
            if (isinstance(stored, dict) and stored.get("fingerprint") == fingerprint
                    and not stored["result"].get("failures")):
                self.statuses[name] = "cached"
                return stored["result"], stored["report"]
        before = self.client.stats.as_dict() if self.client is not None else None
        result, report = compute()
        if before is not None:
            after = self.client.stats.as_dict()
            # Recorded with the result, so a resumed run reports the same figures.
            report = dict(report)
            report["llm"] = {
                k: round(after[k] - before[k], 6)
                for k in ("requests", "cache_hits", "retries", "failures", "json_failures", "reasks",
                          "prompt_tokens", "completion_tokens", "cost_usd")
            }
        write_json(path, {"fingerprint": fingerprint, "result": result, "report": report}, indent=None)
        self.statuses[name] = "ran"
        return result, report
