"""The watchdog's decisions on an injected clock, and its webhook against a real local HTTP server."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from titan_ray.arena.watchdog import Alert, AlertKind, Watchdog, send_webhook, webhook_from_env
from titan_ray.net import free_port

SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSecretToken"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Received:
    """What the local webhook server got: (path, content type, parsed body) per request."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requests: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()


@pytest.fixture
def webhook_server() -> Iterator[Received]:
    """A real HTTP server on 127.0.0.1 (random port): 200 for any path, 500 for paths under /fail."""
    received: Received

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server dispatches on this name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.put((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received = Received(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def make(clock: FakeClock, alert: Any = None, **kw: Any) -> Watchdog:
    args = {"stall_after": 10.0, "max_restarts": 2, "window": 60.0} | kw
    return Watchdog(**args, alert=alert, clock=clock)


def kinds(alerts: list[Alert]) -> list[tuple[AlertKind, str]]:
    return [(a.kind, a.actor) for a in alerts]


def test_stall_is_alerted_once_and_recovery_on_the_next_beat() -> None:
    clock = FakeClock()
    dog = make(clock)
    assert dog.beat("sma", 0) == [] and dog.beat("rsi", 0) == []
    clock.now = 10.0
    assert dog.check() == []  # exactly stall_after old is not yet a stall
    dog.beat("rsi", 0)
    clock.now = 10.5
    stalled = dog.check()
    assert kinds(stalled) == [(AlertKind.STALLED, "sma")]
    assert stalled[0] == Alert(AlertKind.STALLED, "sma", "no heartbeat for 10.5 s (stall_after=10 s)", 10.5)
    clock.now = 15.0
    assert dog.check() == []  # still silent, but already reported
    clock.now = 21.0
    assert kinds(dog.check()) == [(AlertKind.STALLED, "rsi")]
    clock.now = 22.0
    recovered = dog.beat("sma", 0)
    assert kinds(recovered) == [(AlertKind.RECOVERED, "sma")]
    assert recovered[0].detail == "heartbeat again after 22.0 s of silence"
    clock.now = 33.0
    assert kinds(dog.check()) == [(AlertKind.STALLED, "sma")]  # a new stall after recovery alerts again
    assert [a.kind for a in dog.history] == [AlertKind.STALLED, AlertKind.STALLED, AlertKind.RECOVERED,
                                             AlertKind.STALLED]
    assert dog.removed == set()


def test_crash_loop_removes_the_actor_and_old_restarts_age_out() -> None:
    clock = FakeClock()
    dog = make(clock, max_restarts=2, window=60.0)
    dog.beat("sma", 0)
    dog.beat("rsi", 0)
    clock.now = 1.0
    assert kinds(dog.beat("rsi", 1)) == [(AlertKind.RESTARTED, "rsi")]
    clock.now = 62.0
    assert kinds(dog.beat("rsi", 2)) == [(AlertKind.RESTARTED, "rsi")]
    clock.now = 63.0
    # The restart at t=1 left the window: two restarts within 60 s is still within max_restarts.
    assert kinds(dog.beat("rsi", 3)) == [(AlertKind.RESTARTED, "rsi")]
    assert dog.removed == set()

    clock.now = 100.0
    dog.beat("sma", 1)
    dog.beat("sma", 2)
    assert dog.beat("sma", 1) == []  # late news from an older incarnation changes nothing
    clock.now = 101.0
    looped = dog.beat("sma", 3)
    assert kinds(looped) == [(AlertKind.RESTARTED, "sma"), (AlertKind.CRASH_LOOP, "sma")]
    assert looped[1].detail == "3 restarts within 60 s (max_restarts=2); removed from the arena"
    assert dog.removed == {"sma"}
    clock.now = 500.0
    assert dog.beat("sma", 4) == []  # benched: neither beats nor silence alert any more
    assert kinds(dog.check()) == [(AlertKind.STALLED, "rsi")]


def test_a_jump_of_several_incarnations_counts_each_restart() -> None:
    clock = FakeClock()
    dog = make(clock, max_restarts=2)
    dog.beat("lgbm", 0)
    assert kinds(dog.beat("lgbm", 3)) == [(AlertKind.RESTARTED, "lgbm"), (AlertKind.CRASH_LOOP, "lgbm")]
    assert dog.removed == {"lgbm"}


def test_every_alert_reaches_the_callable_as_slack_json_and_a_broken_sink_is_survived() -> None:
    clock = FakeClock()
    got: list[dict[str, Any]] = []
    dog = make(clock, got.append, max_restarts=0)
    dog.beat("sma", 0)
    clock.now = 11.0
    dog.check()
    dog.beat("sma", 1)
    detail = "no heartbeat for 11.0 s (stall_after=10 s)"
    assert got[0] == {
        "text": f"TitanRay: STALLED sma: {detail}",
        "titan_ray": {"kind": "STALLED", "actor": "sma", "detail": detail},
    }
    assert [p["titan_ray"]["kind"] for p in got] == ["STALLED", "RESTARTED", "CRASH_LOOP"]
    assert all(json.loads(json.dumps(p)) == p for p in got)

    def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    dog = make(clock, broken)
    dog.beat("rsi", 0)
    clock.now = 30.0
    assert kinds(dog.check()) == [(AlertKind.STALLED, "rsi")]


@pytest.mark.parametrize("bad", [{"stall_after": 0}, {"max_restarts": -1}, {"window": -5.0}])
def test_bad_settings_are_refused_by_name(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        make(FakeClock(), **bad)


def test_webhook_posts_slack_json_to_a_real_server(webhook_server: Received) -> None:
    clock = FakeClock()
    url = webhook_server.base + SECRET_PATH
    dog = make(clock, lambda payload: send_webhook(url, payload, timeout=2.0))
    dog.beat("sma", 0)
    clock.now = 12.0
    dog.check()
    path, content_type, body = webhook_server.requests.get(timeout=5)
    assert path == SECRET_PATH
    assert content_type == "application/json"
    detail = "no heartbeat for 12.0 s (stall_after=10 s)"
    assert body == {
        "text": f"TitanRay: STALLED sma: {detail}",
        "titan_ray": {"kind": "STALLED", "actor": "sma", "detail": detail},
    }


def test_webhook_failures_return_false_and_log_the_host_only(
    webhook_server: Received, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="titan_ray.watchdog")
    port = free_port()
    query = "?token=xoxQuerySecret"
    refused = f"http://127.0.0.1:{port}{SECRET_PATH}{query}"
    failing = f"{webhook_server.base}/fail{SECRET_PATH}{query}"
    assert send_webhook(refused, {"text": "x"}, timeout=2.0) is False
    assert send_webhook(failing, {"text": "x"}, timeout=2.0) is False
    assert webhook_server.requests.get(timeout=5)[0] == f"/fail{SECRET_PATH}{query}"
    assert send_webhook(f"ftp://127.0.0.1{SECRET_PATH}", {"text": "x"}) is False
    assert send_webhook(f"{webhook_server.base}{SECRET_PATH}", {"bad": float("nan")}) is False

    messages = [r.getMessage() for r in caplog.records if r.name == "titan_ray.watchdog"]
    assert len(messages) == 4
    assert f"127.0.0.1:{port} unreachable (Connection refused)" in messages[0]
    assert "answered HTTP 500" in messages[1]
    for secret in ("SECRET", "xoxSecretToken", "xoxQuerySecret", "services", "token="):
        assert secret not in caplog.text


def test_webhook_from_env_reads_the_secret_from_the_environment(
    webhook_server: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TITAN_RAY_ALERT_WEBHOOK", raising=False)
    assert webhook_from_env() is None
    monkeypatch.setenv("TITAN_RAY_ALERT_WEBHOOK", webhook_server.base + SECRET_PATH)
    post = webhook_from_env()
    assert post is not None
    post({"text": "hello"})
    assert webhook_server.requests.get(timeout=5)[2] == {"text": "hello"}
    monkeypatch.setenv("MY_HOOK", "hooks.slack.com" + SECRET_PATH)
    with pytest.raises(ValueError, match="MY_HOOK must be an http") as err:
        webhook_from_env("MY_HOOK")
    assert "SECRET" not in str(err.value)
