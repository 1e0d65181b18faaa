"""The one client for every LLM and embedding call in the project (synthesis and API evaluation).

Built over the `openai` package, pointed at any OpenAI-compatible server. What it adds:
- an on-disk cache (petool_jax/llm_cache.py) keyed by a hash of the request (endpoint, model, messages or text,
  parameters; never the key), written atomically, so a rerun sends zero requests; two
  servers that serve a model of the same name never share answers;
- bounded concurrency (a semaphore around the network call, threads in the *_many helpers);
- its own retries with exponential backoff and full jitter on 429, 5xx, timeouts and
  connection errors (the openai client is built with max_retries=0 so retries are counted
  here and the backoff is ours); a request that still fails comes back ok=False, never raised;
- `chat_json`: parse JSON from the answer, validate it, re-ask with the reason a bounded
  number of times, else report a failure;
- token and cost accounting in `client.stats`.

The API key comes from the argument or OPENAI_API_KEY (the command-line tools read it from
the environment only, never from a flag); it is never written to the cache,
logged, or left in an error message (errors are redacted before they are stored).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from petool_jax.llm_cache import DiskCache, endpoint_of, request_key
from petool_jax.llm_replies import ChatResult, JsonResult, LLMConfigError, LLMRequestError, LLMStats, extract_json

log = logging.getLogger(__name__)

# USD per 1M tokens (input, output). Only for the report; an unknown model costs 0 and is named
# in stats.unpriced_models. Callers may pass their own table.
DEFAULT_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}

# Status codes worth another try: request timeout, conflict, rate limit, any server error.
RETRYABLE_STATUS = frozenset({408, 409, 429})


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class LLMClient:
    """See the module docstring. Thread-safe; share one instance per run."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 60.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        prices: dict[str, tuple[float, float]] | None = None,
        seed: int | None = None,
    ):
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.endpoint = endpoint_of(self.base_url)  # part of every cache key
        # Kept private and out of repr/errors; see _redact.
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        self.cache = DiskCache(cache_dir)
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout_s = float(timeout_s)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.prices = dict(DEFAULT_PRICES_PER_MTOK if prices is None else prices)
        self.stats = LLMStats()
        self._stats_lock = threading.Lock()
        self._semaphore = threading.BoundedSemaphore(self.max_concurrency)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._openai = None
        self._openai_lock = threading.Lock()
        # One lock per in-flight request key, so identical concurrent requests go out once.
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, cache_dir={str(self.cache.root)!r})"

    # ------------------------------------------------------------------ plumbing
    def _client(self):
        with self._openai_lock:
            if self._openai is None:
                import openai

                key = self._api_key
                if key is None:
                    if self.base_url is None:
                        raise LLMConfigError(
                            "no API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
                            "OpenAI-compatible server that needs none)"
                        )
                    key = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key
                self._openai = openai.OpenAI(
                    base_url=self.base_url, api_key=key, max_retries=0, timeout=self.timeout_s
                )
            return self._openai

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _key_lock(self, key: str) -> threading.Lock:
        with self._key_locks_guard:
            return self._key_locks.setdefault(key, threading.Lock())

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def _account(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        price = self.prices.get(model)
        cost = 0.0
        if price is not None:
            cost = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
        with self._stats_lock:
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.stats.cost_usd += cost
            if price is None and model not in self.stats.unpriced_models:
                self.stats.unpriced_models.append(model)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(max, base * 2**attempt)), at least a server's Retry-After."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        with self._rng_lock:
            delay = self._rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def _classify(self, err: Exception) -> Exception:
        """Turn an openai exception into _Retryable or a final error with a redacted message."""
        import openai

        if isinstance(err, openai.APITimeoutError):
            return _Retryable(f"timeout after {self.timeout_s:g}s")
        if isinstance(err, openai.APIConnectionError):
            return _Retryable(self._redact(f"connection error: {err}"))
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            # The openai package prefixes "Error code: 503 - "; the status is said once already.
            detail = re.sub(r"^Error code: \d+ - ", "", str(err.message))
            message = self._redact(f"HTTP {status}: {detail}")
            if status in RETRYABLE_STATUS or status >= 500:
                retry_after = None
                try:
                    header = err.response.headers.get("retry-after")
                    retry_after = float(header) if header is not None else None
                except (TypeError, ValueError):
                    retry_after = None
                return _Retryable(message, retry_after)
            return RuntimeError(message)
        if isinstance(err, openai.APIResponseValidationError | json.JSONDecodeError):
            # A garbled body from a proxy or overloaded server: transient more often than not.
            return _Retryable(self._redact(f"malformed response: {err}"))
        return RuntimeError(self._redact(f"{type(err).__name__}: {err}"))

    def _send(self, call: Callable[[], Any]) -> tuple[Any | None, str | None, int]:
        """Run `call` with retries. Returns (response, error, attempts)."""
        last_error = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count(retries=1)
            self._count(requests=1)
            try:
                with self._semaphore:
                    return call(), None, attempt + 1
            except LLMConfigError:
                raise
            except Exception as err:  # noqa: BLE001 - classified below
                kind = self._classify(err)
                last_error = str(kind)
                if not isinstance(kind, _Retryable):
                    log.warning("request failed (not retried): %s", last_error)
                    return None, last_error, attempt + 1
                if attempt < self.max_retries:
                    delay = self._backoff(attempt, kind.retry_after)
                    log.info("retrying in %.2fs after: %s", delay, last_error)
                    time.sleep(delay)
        log.warning("request failed after %d attempts: %s", self.max_retries + 1, last_error)
        return None, f"gave up after {self.max_retries + 1} attempts: {last_error}", self.max_retries + 1

    # ------------------------------------------------------------------ chat
    def chat(self, messages: Sequence[dict], model: str, **params: Any) -> ChatResult:
        messages = [dict(m) for m in messages]
        key = request_key("chat", self.endpoint, model, {"messages": messages, "params": params})
        with self._key_lock(key):
            record = self.cache.get(key)
            if record is not None:
                self._count(cache_hits=1)
                return ChatResult(record["text"], True, None, True, record.get("usage", {}), 0)

            def call():
                return self._client().chat.completions.create(
                    model=model, messages=messages, **params
                )

            response, error, attempts = self._send(call)
            if response is None:
                self._count(failures=1)
                return ChatResult(None, False, error, False, {}, attempts)
            try:
                text = response.choices[0].message.content
            except (AttributeError, IndexError, TypeError):
                text = None
            usage = _usage_dict(getattr(response, "usage", None))
            self._account(model, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
            if text is None:
                self._count(failures=1)
                return ChatResult(None, False, "the answer has no message content", False, usage, attempts)
            self.cache.put(key, {"kind": "chat", "endpoint": self.endpoint, "model": model, "text": text,
                                 "usage": usage})
            return ChatResult(text, True, None, False, usage, attempts)

    def chat_many(
        self,
        requests: Sequence[tuple[Sequence[dict], str, dict]],
        progress: bool = True,
        desc: str = "chat",
    ) -> list[ChatResult]:
        """chat() over (messages, model, params) triples; bounded concurrency, order preserved."""
        return self.map(lambda r: self.chat(r[0], r[1], **(r[2] or {})), requests, progress, desc)

    def chat_json(
        self,
        messages: Sequence[dict],
        model: str,
        validate: Callable[[Any], Any] | None = None,
        max_reasks: int = 2,
        **params: Any,
    ) -> JsonResult:
        """Ask, parse JSON, validate; on a bad answer re-ask with the reason (bounded).

        `validate(value)` raises ValueError with a reason; if it returns something other than
        None, that becomes the value (a normalized form). Each turn of the re-ask conversation is
        its own cached request, so a rerun replays the same chain from the cache.
        """
        conversation = [dict(m) for m in messages]
        total_usage: dict[str, int] = {}
        attempts = 0
        all_cached = True
        reason = "no answer"
        text = None
        for turn in range(max_reasks + 1):
            result = self.chat(conversation, model, **params)
            attempts += result.attempts
            all_cached = all_cached and result.cached
            for name, count in result.usage.items():
                if isinstance(count, int):
                    total_usage[name] = total_usage.get(name, 0) + count
            if not result.ok:
                # Transport failure: already retried inside chat(); re-asking will not help.
                self._count(json_failures=1)
                return JsonResult(None, False, result.error, all_cached, total_usage, attempts, turn, None)
            text = result.text
            try:
                value = extract_json(text)
                if validate is not None:
                    normalized = validate(value)
                    if normalized is not None:
                        value = normalized
                return JsonResult(value, True, None, all_cached, total_usage, attempts, turn, text)
            except ValueError as err:
                reason = str(err) or "invalid answer"
            if turn < max_reasks:
                self._count(reasks=1)
                conversation = conversation + [
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"Your answer was not accepted: {reason}. "
                        "Reply again with only the corrected JSON.",
                    },
                ]
        self._count(json_failures=1)
        return JsonResult(
            None, False, f"invalid after {max_reasks + 1} answers: {reason}", all_cached,
            total_usage, attempts, max_reasks, text,
        )

    def chat_json_many(self, requests: Sequence[dict], progress: bool = True, desc: str = "chat") -> list[JsonResult]:
        """chat_json over dicts {messages, model, validate?, max_reasks?, params?}; order preserved."""

        def one(r: dict) -> JsonResult:
            return self.chat_json(
                r["messages"], r["model"], r.get("validate"), r.get("max_reasks", 2), **(r.get("params") or {})
            )

        return self.map(one, requests, progress, desc)

    # ------------------------------------------------------------------ embeddings
    def embed(self, texts: Sequence[str], model: str, batch_size: int = 128, progress: bool = False) -> list[list[float]]:
        """One vector per text, cached per (model, text). Raises LLMRequestError on a final failure."""
        texts = list(texts)
        keys = [request_key("embed", self.endpoint, model, {"input": t}) for t in texts]
        vectors: list[list[float] | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            record = self.cache.get(key)
            if record is not None:
                self._count(cache_hits=1)
                vectors[i] = record["embedding"]
            else:
                missing.setdefault(key, []).append(i)
        unique = list(missing)  # dict order = first occurrence, deterministic
        batches = [unique[i : i + batch_size] for i in range(0, len(unique), batch_size)]

        def run_batch(batch_keys: list[str]) -> None:
            inputs = [texts[missing[k][0]] for k in batch_keys]

            def call():
                return self._client().embeddings.create(model=model, input=inputs, encoding_format="float")

            response, error, _ = self._send(call)
            if response is None:
                self._count(failures=1)
                raise LLMRequestError(f"embedding request for {len(inputs)} texts failed: {error}")
            data = sorted(response.data, key=lambda d: d.index)
            if len(data) != len(inputs):
                self._count(failures=1)
                raise LLMRequestError(f"embedding answer has {len(data)} vectors for {len(inputs)} texts")
            usage = _usage_dict(getattr(response, "usage", None))
            self._account(model, usage.get("prompt_tokens", 0), 0)
            for key, item in zip(batch_keys, data):
                vector = [float(x) for x in item.embedding]
                self.cache.put(key, {"kind": "embed", "endpoint": self.endpoint, "model": model,
                                     "embedding": vector})
                for i in missing[key]:
                    vectors[i] = vector

        self.map(run_batch, batches, progress and len(batches) > 1, "embed")
        return vectors  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: bool = True, desc: str = "") -> list:
        """fn over items on up to max_concurrency threads, results in input order, with a progress bar.

        Exceptions raised by fn propagate (after the other items finish).
        """
        items = list(items)
        if not items:
            return []
        from tqdm import tqdm

        results: list[Any] = [None] * len(items)
        with tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
            if self.max_concurrency == 1 or len(items) == 1:
                for i, item in enumerate(items):
                    results[i] = fn(item)
                    bar.update(1)
                return results
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
                futures = [pool.submit(fn, item) for item in items]
                for i, future in enumerate(futures):
                    results[i] = future.result()
                    bar.update(1)
        return results


def _usage_dict(usage: Any) -> dict:
    if usage is None:
        return {}
    out = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        if isinstance(value, int):
            out[name] = value
    return out
