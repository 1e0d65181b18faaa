"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for the LLM client and synthesis tests.

It serves POST /v1/chat/completions and /v1/embeddings. The test decides every answer:
`server.chat = fn(body) -> Reply` and `server.embedding = fn(text) -> list[float]`, and may
queue faults that are served first (`server.faults.extend([...])`). Every request is recorded
(path, JSON body, Authorization header) so tests can count them and check what was sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclasses.dataclass
class Reply:
    """One scripted answer. kind: 'text' (a normal completion), 'status' (an HTTP error with
    optional headers), 'sleep' (wait `seconds`, then answer `text`: a timeout for a short client
    timeout), 'raw' (a 200 whose body is `text` verbatim, e.g. not JSON)."""

    kind: str = "text"
    text: str = ""
    status: int = 200
    headers: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7


def text(content: str, prompt_tokens: int = 11, completion_tokens: int = 7) -> Reply:
    return Reply("text", content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def status(code: int, retry_after: float | None = None, message: str = "scripted fault") -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply("status", message, status=code, headers=headers)


def sleep_then(seconds: float, content: str) -> Reply:
    return Reply("sleep", content, seconds=seconds)


def raw(body: str) -> Reply:
    return Reply("raw", body)


def hash_embedding(text_: str, dim: int = 8) -> list[float]:
    """A deterministic vector per text (what a real model's embedding is, for a test)."""
    digest = hashlib.sha256(text_.encode("utf-8")).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest[:dim]]


@dataclasses.dataclass
class Recorded:
    path: str
    body: dict
    authorization: str | None


class FakeOpenAIServer:
    def __init__(self) -> None:
        self.chat: Callable[[dict], Reply] = lambda body: text("{}")
        self.embedding: Callable[[str], list[float]] = hash_embedding
        self.faults: deque[Reply] = deque()
        self.chat_faults: deque[Reply] = deque()  # served only to chat requests
        self.embed_faults: deque[Reply] = deque()  # served only to embedding requests
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server._record(self.path, body, self.headers.get("Authorization"))
                if self.path.endswith("/chat/completions"):
                    reply = server._next_fault(server.chat_faults) or server.chat(body)
                    self._answer_chat(reply, body)
                elif self.path.endswith("/embeddings"):
                    reply = server._next_fault(server.embed_faults)
                    if reply is not None:
                        self._answer_chat(reply, body)
                    else:
                        self._answer_embeddings(body)
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def _json(self, code: int, obj: Any, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a scripted timeout)

            def _answer_chat(self, reply: Reply, body: dict) -> None:
                if reply.kind == "status":
                    self._json(reply.status, {"error": {"message": reply.text, "type": "scripted"}}, reply.headers)
                    return
                if reply.kind == "raw":
                    data = reply.text.encode("utf-8")
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if reply.kind == "sleep":
                    time.sleep(reply.seconds)
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", ""),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": reply.prompt_tokens,
                            "completion_tokens": reply.completion_tokens,
                            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                        },
                    },
                )

            def _answer_embeddings(self, body: dict) -> None:
                inputs = body["input"]
                if isinstance(inputs, str):
                    inputs = [inputs]
                data = [
                    {"object": "embedding", "index": i, "embedding": server.embedding(t)}
                    for i, t in enumerate(inputs)
                ]
                tokens = sum(len(t.split()) for t in inputs)
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body.get("model", ""),
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    },
                )

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- bookkeeping
    def _record(self, path: str, body: dict, authorization: str | None) -> None:
        with self._lock:
            self.requests.append(Recorded(path, body, authorization))

    def _next_fault(self, specific: deque) -> Reply | None:
        with self._lock:
            if specific:
                return specific.popleft()
            if self.faults:
                return self.faults.popleft()
        return None

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return len(self.requests)
            suffix = "/chat/completions" if kind == "chat" else "/embeddings"
            return sum(r.path.endswith(suffix) for r in self.requests)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()
