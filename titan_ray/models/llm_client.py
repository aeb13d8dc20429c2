"""Talking to an OpenAI-compatible chat-completions endpoint, and remembering every answer.

Two parts, both plain code (the model actor only calls them):

- ``ChatCache``: one JSON file per request, named by the SHA-256 of the canonical request body
  (model, messages, parameters: never the key, which is a header and not in the body). A file
  holds the request, the outcome (the response, or the error that ended the attempt) and the
  latency measured when it was fetched, so a rerun from the cache reports the same numbers and is
  bit-identical without any network. Failures the endpoint caused are cached too (a timeout, a 429
  storm that outlasted the deadline): a rerun must see what the first run saw; delete the file to ask
  again. An endpoint that could not be reached at all is a failure that is not cached.
- ``ChatClient``: POSTs ``{base_url}/chat/completions`` with ``Authorization: Bearer KEY`` (the key read
  from the environment variable named in the config, when one is named), retries 429 and 5xx after
  ``Retry-After`` (seconds) or an exponential back-off, all inside one deadline per request, and
  turns every ending into a ``ChatOutcome``: exceptions never reach the model except the ones that
  need a person (``LlmCacheMiss``, ``LlmKeyMissing``, ``LlmEndpointError`` for a 4xx such as a bad key
  or an unknown model). The clock and the sleep are injected.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_ONLY_ENV = "TITAN_RAY_LLM_CACHE_ONLY"


class LlmCacheMiss(RuntimeError):
    """Cache-only mode and no cached answer for a request: a person must point at the right cache."""


class LlmKeyMissing(RuntimeError):
    """The environment variable that should hold the API key is not set where the model runs."""


class LlmEndpointError(RuntimeError):
    """The endpoint refused the request for a reason a retry cannot fix (a bad key, an unknown model, a
    request it does not accept): a person must fix the config. Never cached."""


# 4xx answers worth a retry (the server was busy or the request raced); the other 4xx need a person
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class ChatOutcome:
    """How one request ended: the answer's text (None when it failed), its usage, its latency and why it failed."""

    content: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None  # "timeout: ...", "http 500: ...", "refused: ...", "bad response: ..."
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical(body: dict[str, Any]) -> str:
    """The request body as one canonical JSON text: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_key(body: dict[str, Any], sample: int = 0) -> str:
    """SHA-256 (hex) of the canonical request body (the key is never in it); ``sample`` > 0 tells apart the
    repeats of one request (a committee that lists a model twice samples it twice)."""
    text = canonical(body) if sample == 0 else canonical({"request": body, "sample": sample})
    return hashlib.sha256(text.encode()).hexdigest()


class ChatCache:
    """Outcomes by request hash, one file each: ``FOLDER/ab/abcdef....json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> ChatOutcome | None:
        p = self.path(key)
        if not p.is_file():
            return None
        saved = json.loads(p.read_text(encoding="utf-8"))
        return ChatOutcome(**saved["outcome"])

    def put(self, key: str, body: dict[str, Any], outcome: ChatOutcome) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "request": body, "outcome": outcome.to_dict()}, indent=1,
                                  ensure_ascii=False, sort_keys=True), encoding="utf-8")
        os.replace(tmp, p)  # atomic: a reader sees the whole file or none


def cache_only_from_env() -> bool:
    return os.environ.get(CACHE_ONLY_ENV, "").strip().lower() in ("1", "true", "yes")


class ChatClient:
    """One endpoint's chat completions, with back-off and a deadline per request, behind a ``ChatCache``."""

    def __init__(self, base_url: str, api_key_env: str | None, cache: ChatCache, *, timeout_s: float,
                 max_retries: int = 4, backoff_s: float = 0.5, cache_only: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.cache = cache
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.cache_only = cache_only
        self._clock, self._sleep = clock, sleep

    def complete(self, body: dict[str, Any], sample: int = 0) -> tuple[str, ChatOutcome]:
        """The outcome of ``body`` (from the cache, else from the endpoint, then cached) and its cache key."""
        key = request_key(body, sample)
        hit = self.cache.get(key)
        if hit is not None:
            return key, hit
        if self.cache_only:
            raise LlmCacheMiss(f"LLM cache miss in cache-only mode: no answer for request {key[:16]}... (model "
                               f"{body.get('model')!r}) in {self.cache.folder}; point params.cache_dir at the "
                               f"cache of the run to replay, or unset {CACHE_ONLY_ENV} / --llm-cache-only")
        outcome, keep = self._fetch(body)
        if keep:
            self.cache.put(key, body, outcome)
        return key, outcome

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise LlmKeyMissing(f"environment variable {self.api_key_env} (params.api_key_env) is not set "
                                    "where the model runs; export it before starting Ray (keys are read from "
                                    "the environment only)")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _fetch(self, body: dict[str, Any]) -> tuple[ChatOutcome, bool]:
        """The outcome, and whether to cache it: everything the endpoint answered or failed to answer in
        time is (a rerun must see it again); an endpoint that could not be reached at all is not (a server
        that was not started must not poison the cache)."""
        data = canonical(body).encode()
        headers = self._headers()
        start = self._clock()
        deadline = start + self.timeout_s
        attempt, error, answered = 0, "timeout: no attempt", False
        while True:
            attempt += 1
            left = deadline - self._clock()
            if left <= 0:
                return self._failed(f"timeout: deadline of {self.timeout_s:g}s passed ({error})", start,
                                    attempt - 1), answered
            wait: float | None = None
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=left) as resp:
                    raw = resp.read()
                return _parse(raw, self._clock() - start, attempt), True
            except urllib.error.HTTPError as err:
                detail = err.read()[:200].decode("utf-8", "replace")
                error, answered = f"http {err.code}: {detail}", True
                if err.code < 500 and err.code not in RETRYABLE_4XX:
                    raise LlmEndpointError(f"{self.url} answered {error} (model {body.get('model')!r}): check "
                                           "base_url, model and the key's variable (api_key_env)") from None
                wait = _retry_after(err.headers.get("Retry-After"))
            except TimeoutError as err:
                return self._failed(f"timeout: deadline of {self.timeout_s:g}s passed ({err})", start, attempt), True
            except (urllib.error.URLError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError):
                    return self._failed(f"timeout: deadline of {self.timeout_s:g}s passed", start, attempt), True
                error = f"connection: {reason}"
            if attempt > self.max_retries:
                return self._failed(f"gave up after {attempt} attempts: {error}", start, attempt), answered
            pause = wait if wait is not None else self.backoff_s * 2 ** (attempt - 1)
            if self._clock() + pause >= deadline:
                return self._failed(f"timeout: a retry in {pause:g}s would pass the {self.timeout_s:g}s deadline "
                                    f"({error})", start, attempt), answered
            self._sleep(pause)

    def _failed(self, error: str, start: float, attempts: int) -> ChatOutcome:
        return ChatOutcome(None, latency_s=round(self._clock() - start, 6), error=error, attempts=attempts)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds form; an HTTP date is treated as absent)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _parse(raw: bytes, latency: float, attempts: int) -> ChatOutcome:
    """The answer's text and usage from an OpenAI-shaped response; a refusal or a malformed shape is an error."""
    latency = round(latency, 6)
    try:
        doc = json.loads(raw)
        message = doc["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        return ChatOutcome(None, latency_s=latency, error=f"bad response: {type(err).__name__} {err}"[:300],
                           attempts=attempts)
    usage = doc.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if message.get("refusal"):
        return ChatOutcome(None, *tokens, latency_s=latency, error=f"refused: {message['refusal']}"[:300],
                           attempts=attempts)
    content = message.get("content")
    if not isinstance(content, str):
        return ChatOutcome(None, *tokens, latency_s=latency, error="bad response: no message content",
                           attempts=attempts)
    return ChatOutcome(content, *tokens, latency_s=latency, attempts=attempts)
