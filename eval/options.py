"""Settings of one `petool eval run`, shared by the run loop and the runners."""

from __future__ import annotations

from dataclasses import dataclass, field

# What must match between a run and its resumption: changing any of these changes answers.
RESUME_KEYS = ("model", "data", "prompt_format", "max_prompt_tokens", "max_new_tokens",
               "temperature", "top_p", "seed", "truncation", "protocol")
# Keys added after run directories were first written: a run.json without them had these.
LATER_KEY_DEFAULTS = {"truncation": "history", "protocol": "default"}
TRUNCATIONS = ("history", "authors")  # see eval/truncation.py
PROTOCOLS = ("default", "authors")  # API models; see eval/runners/openai_api.py


@dataclass(frozen=True)
class RunOptions:
    model: str = "rule"
    data: str = ""
    max_prompt_tokens: int = 4000
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    prompt_format: str = "system_user"
    truncation: str = "history"
    protocol: str = "default"
    batch_size: int = 16
    dtype: str = "float32"
    progress: bool = True
    # OpenAI-compatible API runner. The key is never stored: repr=False keeps it out of logs.
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    cache_dir: str | None = None

    def resume_record(self) -> dict:
        """The run.json content: what a resumed run must repeat (never the key or base URL)."""
        return {k: getattr(self, k) for k in RESUME_KEYS}


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse what would silently mean something else: a negative temperature, a top-p
    outside (0, 1]. ValueError; the CLIs turn it into a UserError."""
    if not temperature >= 0.0:  # also catches NaN
        raise ValueError(f"--temperature {temperature}: must be >= 0 (0 = greedy)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"--top-p {top_p}: must be in (0, 1]")


# RunOptions fields that are not settings a user chooses (`petool eval run` fills them).
_NOT_CONFIGURABLE = ("api_key", "cache_dir", "progress")


def run_defaults() -> dict:
    """The keys of `petool eval run --config FILE` and the flags, with their defaults: RunOptions'
    own fields and defaults (one place for both), plus what selects the work (settings, limit)."""
    import dataclasses

    values = {f.name: f.default for f in dataclasses.fields(RunOptions) if f.name not in _NOT_CONFIGURABLE}
    # model/data have no meaningful default: None = "must be given" (checked by the CLI).
    return {**values, "model": None, "data": None, "settings": None, "limit": None}
