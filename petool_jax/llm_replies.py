"""What the LLM client gives back: chat and JSON results, its counters, its errors, and the
JSON found in a model's answer."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any


class LLMConfigError(Exception):
    """The client cannot be used as configured (e.g. no API key for the default endpoint)."""


class LLMRequestError(Exception):
    """An embedding request failed after all retries (chat calls report ok=False instead)."""


@dataclasses.dataclass
class ChatResult:
    text: str | None
    ok: bool
    error: str | None
    cached: bool
    usage: dict = dataclasses.field(default_factory=dict)
    attempts: int = 0


@dataclasses.dataclass
class JsonResult:
    value: Any
    ok: bool
    error: str | None
    cached: bool
    usage: dict = dataclasses.field(default_factory=dict)
    attempts: int = 0
    reasks: int = 0
    text: str | None = None


@dataclasses.dataclass
class LLMStats:
    """Counters for one client. `requests` counts HTTP requests actually sent (every attempt)."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    json_failures: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_models: list = dataclasses.field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def extract_json(text: str) -> Any:
    """The JSON value in a model answer: the whole text, a ```json fence, or the first {...}/[...].

    Raises ValueError with a short reason when there is none.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    fence = re.search(r"```(?:json)?\s*\n?(.*?)```", stripped, re.DOTALL)
    if fence:
        try:
            return json.loads(fence.group(1).strip())
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
            return value
        except json.JSONDecodeError:
            continue
    raise ValueError("the answer holds no valid JSON value")
