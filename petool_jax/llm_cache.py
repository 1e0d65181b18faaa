"""The LLM client's response cache: request keys and one JSON file per request.

A key hashes what determines the answer (the server, the model, the request; never the API
key), so a rerun sends zero requests and two servers serving a model of the same name never
share answers. Files are written atomically; a torn or hand-edited one is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

from petool_jax.files import write_json

log = logging.getLogger(__name__)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# Where the openai package sends requests when no base URL is given.
DEFAULT_ENDPOINT = "https://api.openai.com/v1"


def endpoint_of(base_url: str | None) -> str:
    """The server a client talks to, normalised for the cache key: no trailing slash, and no
    user:password@ part (the endpoint is written into cache records; credentials never are)."""
    parts = urllib.parse.urlsplit((base_url or DEFAULT_ENDPOINT).rstrip("/"))
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def request_key(kind: str, endpoint: str, model: str, payload: Any) -> str:
    """Hash of what determines the answer: the server (two OpenAI-compatible servers may serve
    different models under one name), the model and the request; never the API key."""
    return hashlib.sha256(canonical_json([kind, endpoint, model, payload]).encode("utf-8")).hexdigest()


class DiskCache:
    """One JSON file per request under cache_dir/<2 hex>/<sha256>.json, written atomically."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # A torn or hand-edited entry is a miss, not a crash; it is rewritten on success.
            log.warning("ignoring unreadable cache entry %s", path)
            return None

    def put(self, key: str, record: dict) -> None:
        if self.root is None:
            return
        write_json(self._path(key), record, indent=None, sort_keys=True)
