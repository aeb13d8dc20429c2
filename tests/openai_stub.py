"""A local OpenAI-compatible chat-completions server for the LLM model's tests: real HTTP on loopback.

``OpenAIStub`` serves ``POST /v1/chat/completions`` on 127.0.0.1 from a thread. It checks
``Authorization: Bearer KEY``, answers in the OpenAI response shape (``choices[0].message.content``
and ``usage``) and is scriptable: ``script`` is a queue of steps taken one per request before the
default answer applies (a 429 with ``Retry-After``, a 500, malformed JSON, a slow answer, a refusal,
fixed content). The default answer reads the request's own schema (the symbols to weigh) and the
prompt's features, and goes long every symbol whose ``ret_5`` is positive: deterministic, so an
arena run against it is repeatable. Every request is kept (``requests``) with its headers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def rule_answer(body: dict[str, Any]) -> str:
    """Long (equal share) every shown symbol whose ret_5 is positive; the rationale says which."""
    payload = json.loads(body["messages"][-1]["content"])
    longs = [s["symbol"] for s in payload["symbols"] if (s["features"].get("ret_5") or 0) > 0]
    names = [s["symbol"] for s in payload["symbols"]]
    w = 1.0 / len(names)
    return json.dumps({"weights": {n: (w if n in longs else 0.0) for n in names}, "confidence": 0.6,
                       "rationale": f"{body['model']}: positive 5-bar momentum in {', '.join(longs) or 'none'}."})


class OpenAIStub:
    def __init__(self, key: str = "test-key", answer: Callable[[dict[str, Any]], str] = rule_answer) -> None:
        self.key, self.answer = key, answer
        self.script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                stub._handle(self, raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        with self._lock:
            step = self.script.popleft() if self.script else {}
            self.requests.append({"path": h.path, "auth": h.headers.get("Authorization"), "raw": raw,
                                  "time": time.monotonic(), "step": step})
        if h.path != "/v1/chat/completions":
            return _send(h, 404, {"error": {"message": f"no route {h.path}"}})
        if h.headers.get("Authorization") != f"Bearer {self.key}":
            return _send(h, 401, {"error": {"message": "bad or missing bearer key"}})
        body = json.loads(raw)
        if "status" in step:
            headers = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else {}
            return _send(h, step["status"], {"error": {"message": "scripted"}}, headers)
        if "delay" in step:
            time.sleep(step["delay"])
        if step.get("malformed_body"):
            return _send_raw(h, 200, b'{"choices": [')
        if "refusal" in step:
            message = {"role": "assistant", "content": None, "refusal": step["refusal"]}
        else:
            message = {"role": "assistant", "content": step.get("content", self.answer(body))}
        prompt_tokens = len(raw) // 4
        completion_tokens = len(message["content"] or "") // 4
        return _send(h, 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


def _send(h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    _send_raw(h, status, json.dumps(doc).encode(), headers)


def _send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
    try:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (its deadline passed)
        pass
