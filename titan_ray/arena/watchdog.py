"""The watchdog: notices actors that stall or crash-loop, alerts a person, and benches crash-loopers.

Three parts, from pure to wired:

- ``Watchdog``, a plain class fed with heartbeats. ``beat(name, incarnation)`` records that an actor
  is alive; ``incarnation`` counts its restarts (0 at first start), so a higher number means Ray
  restarted it. ``check()``, called periodically, marks an actor STALLED once when its last beat
  is older than ``stall_after`` seconds; its next beat marks it RECOVERED. More than
  ``max_restarts`` new incarnations of one actor within ``window`` seconds is a CRASH_LOOP: the
  actor's name goes into ``removed`` and the arena takes that model out rather than let it burn
  restarts for the rest of the run. Every decision is one frozen ``Alert``, returned to the
  caller, kept in ``history`` and handed to the ``alert`` callable.
- ``send_webhook`` posts an alert's payload as JSON to an incoming-webhook URL (Slack's format:
  ``{"text": ...}``), and ``webhook_from_env`` builds that callable from an environment variable,
  the only place the secret URL comes from. Webhook URLs carry their secret in the path, so logs
  name the host only.
- ``WatchdogActor``, a thin Ray actor around ``Watchdog`` that posts alerts to a webhook from a
  background thread, so a slow webhook never delays the heartbeats or the driver's ``removed()``.

Times are seconds on the injected clock (``time.monotonic`` by default), never wall time.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import ray

log = logging.getLogger("titan_ray.watchdog")

# History kept for ``alerts()``: enough for a run's story; bounded so a flapping actor cannot grow
# the watchdog's memory without limit over a long run.
HISTORY_LIMIT = 1000


class AlertKind(str, Enum):
    STALLED = "STALLED"  # no heartbeat for longer than stall_after
    RECOVERED = "RECOVERED"  # a stalled actor beat again
    RESTARTED = "RESTARTED"  # a heartbeat came with a higher incarnation: Ray restarted the actor
    CRASH_LOOP = "CRASH_LOOP"  # more than max_restarts restarts within window: actor removed


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    actor: str
    detail: str
    timestamp: float  # the watchdog's clock when it decided

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "actor": self.actor, "detail": self.detail,
                "timestamp": self.timestamp}

    def payload(self) -> dict[str, Any]:
        """Slack-compatible webhook body; ``titan_ray`` carries the fields for other receivers."""
        return {
            "text": f"TitanRay: {self.kind.value} {self.actor}: {self.detail}",
            "titan_ray": {"kind": self.kind.value, "actor": self.actor, "detail": self.detail},
        }


@dataclass(slots=True)
class _ActorState:
    incarnation: int
    last_beat: float
    stalled: bool = False
    restarts: deque[float] = field(default_factory=deque)  # clock times of restarts seen in window


class Watchdog:
    """Heartbeat bookkeeping and the stall / restart / crash-loop decisions; no Ray, no I/O."""

    def __init__(
        self,
        *,
        stall_after: float,
        max_restarts: int,
        window: float,
        alert: Callable[[dict[str, Any]], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stall_after > 0:
            raise ValueError(f"Watchdog stall_after must be > 0 seconds, got {stall_after}")
        if max_restarts < 0:
            raise ValueError(f"Watchdog max_restarts must be >= 0, got {max_restarts}")
        if not window > 0:
            raise ValueError(f"Watchdog window must be > 0 seconds, got {window}")
        self._stall_after = stall_after
        self._max_restarts = max_restarts
        self._window = window
        self._alert = alert
        self._clock = clock
        self._actors: dict[str, _ActorState] = {}
        self._history: deque[Alert] = deque(maxlen=HISTORY_LIMIT)
        self.removed: set[str] = set()

    @property
    def history(self) -> tuple[Alert, ...]:
        """The latest alerts, oldest first (at most ``HISTORY_LIMIT``)."""
        return tuple(self._history)

    def beat(self, name: str, incarnation: int) -> list[Alert]:
        now = self._clock()
        if name in self.removed:
            return []  # benched for the run: a late beat from it changes nothing
        state = self._actors.get(name)
        if state is None:
            # First sight is the baseline, whatever the incarnation: restarts before the watchdog
            # knew the actor have no times, so they cannot count toward a crash loop.
            self._actors[name] = _ActorState(incarnation=incarnation, last_beat=now)
            return []
        if incarnation < state.incarnation:
            return []  # late news from an older incarnation: the newer one has spoken already
        alerts: list[Alert] = []
        if incarnation > state.incarnation:
            alerts.append(Alert(AlertKind.RESTARTED, name,
                                f"incarnation {state.incarnation} -> {incarnation}", now))
            state.restarts.extend([now] * (incarnation - state.incarnation))
            state.incarnation = incarnation
            while state.restarts and now - state.restarts[0] > self._window:
                state.restarts.popleft()
            if len(state.restarts) > self._max_restarts:
                self.removed.add(name)
                alerts.append(Alert(
                    AlertKind.CRASH_LOOP, name,
                    f"{len(state.restarts)} restarts within {self._window:g} s "
                    f"(max_restarts={self._max_restarts}); removed from the arena",
                    now,
                ))
                del self._actors[name]  # removed actors are no longer watched for stalls
                return self._emit(alerts)
        if state.stalled:
            alerts.append(Alert(AlertKind.RECOVERED, name,
                                f"heartbeat again after {now - state.last_beat:.1f} s of silence", now))
            state.stalled = False
        state.last_beat = now
        return self._emit(alerts)

    def check(self) -> list[Alert]:
        now = self._clock()
        alerts: list[Alert] = []
        for name, state in self._actors.items():
            silent = now - state.last_beat
            if not state.stalled and silent > self._stall_after:
                state.stalled = True  # alert once per stall; the next beat clears it
                detail = f"no heartbeat for {silent:.1f} s (stall_after={self._stall_after:g} s)"
                alerts.append(Alert(AlertKind.STALLED, name, detail, now))
        return self._emit(alerts)

    def _emit(self, alerts: list[Alert]) -> list[Alert]:
        for a in alerts:
            self._history.append(a)
            level = logging.INFO if a.kind is AlertKind.RECOVERED else logging.WARNING
            log.log(level, "%s %s: %s", a.kind.value, a.actor, a.detail)
            if self._alert is not None:
                try:
                    self._alert(a.payload())
                except Exception:  # any failure: a broken alert sink must not blind the watchdog
                    log.exception("alert callback failed for %s %s", a.kind.value, a.actor)
        return alerts


def send_webhook(url: str, payload: dict[str, Any], *, timeout: float = 5.0) -> bool:
    """POST ``payload`` as JSON to ``url``; True on a 2xx answer. Never raises; logs the host only."""
    host = _host(url)
    try:
        body = json.dumps(payload, allow_nan=False).encode()
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the webhook URL must start with http:// or https://")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # scheme checked above
            status = response.status
    except urllib.error.HTTPError as exc:
        log.warning("alert webhook at %s answered HTTP %d; alert not delivered", host, exc.code)
        return False
    except (OSError, ValueError, TypeError, http.client.HTTPException) as exc:
        log.warning("alert webhook at %s unreachable (%s); alert not delivered", host, _failure(exc))
        return False
    if not 200 <= status < 300:
        log.warning("alert webhook at %s answered HTTP %d; alert not delivered", host, status)
        return False
    return True


def webhook_from_env(var: str = "TITAN_RAY_ALERT_WEBHOOK") -> Callable[[dict[str, Any]], None] | None:
    """An alert callable posting to the webhook URL in ``$var``; None when the variable is unset."""
    url = os.environ.get(var, "").strip()
    if not url:
        return None
    _check_webhook_url(url, var)

    def post(payload: dict[str, Any]) -> None:
        send_webhook(url, payload)

    return post


def _check_webhook_url(url: str, source: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value itself is not quoted: it may be a secret with a typo in it.
        raise ValueError(
            f"{source} must be an http(s) URL such as https://hooks.slack.com/services/...; "
            f"got one with scheme {parts.scheme!r} and {'a' if parts.hostname else 'no'} host"
        )


def _failure(exc: BaseException) -> str:
    """What went wrong, in words that cannot quote the URL (its path is the secret).

    An OS error's strerror ("Connection refused") never holds the URL; other exceptions' text can,
    so only their type is named.
    """
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(exc, ValueError | TypeError):
        return f"{type(exc).__name__}: invalid webhook URL or payload"
    return type(reason if isinstance(reason, BaseException) else exc).__name__


def _host(url: str) -> str:
    """The URL's host (and explicit port), the one part of a webhook URL safe to log."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or "an invalid URL")
    except ValueError:
        return "an invalid URL"


@ray.remote(num_cpus=0)  # heartbeat bookkeeping: it must not take a CPU from the models
class WatchdogActor:
    """``Watchdog`` as an actor; alerts go to ``webhook_url`` (if any) from a background thread."""

    def __init__(
        self,
        *,
        stall_after: float,
        max_restarts: int,
        window: float,
        webhook_url: str | None = None,
        webhook_timeout: float = 5.0,
    ) -> None:
        alert: Callable[[dict[str, Any]], None] | None = None
        # One worker keeps alerts in order; a webhook taking its full timeout delays only the
        # alerts behind it, never beat() or the driver's removed().
        self._poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="titan-ray-webhook")
        if webhook_url:
            _check_webhook_url(webhook_url, "WatchdogActor webhook_url")

            def alert(payload: dict[str, Any]) -> None:
                self._poster.submit(send_webhook, webhook_url, payload, timeout=webhook_timeout)

        self._watchdog = Watchdog(
            stall_after=stall_after, max_restarts=max_restarts, window=window, alert=alert
        )

    def beat(self, name: str, incarnation: int) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self._watchdog.beat(name, incarnation)]

    def check(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self._watchdog.check()]

    def removed(self) -> set[str]:
        return set(self._watchdog.removed)

    def alerts(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self._watchdog.history]
