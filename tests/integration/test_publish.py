"""The arena's side channels on real services: Redis fan-out (real redis-server) and the watchdog actor.

The outage test points a publisher at a closed port, then starts a real redis-server on that very
port while the publisher is paused: no message may get through before ``retry_after`` (so the
publisher really stays quiet), and the first one after it must.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from titan_ray.arena.publish import RedisPublisher
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.orders import Fill, Side
from titan_ray.net import free_port

T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC in ns: above 2**53, must stay exact
STEP = 900_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def strict_json(raw: bytes) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in a message")

    return json.loads(raw, parse_constant=refuse)


def subscribe(url: str, channels: list[str]) -> redis.client.PubSub:
    """A subscriber that is registered on the server before the function returns."""
    sub = redis.Redis.from_url(url).pubsub()
    sub.subscribe(*channels)
    confirmed = 0
    deadline = time.monotonic() + 5
    while confirmed < len(channels) and time.monotonic() < deadline:
        msg = sub.get_message(timeout=0.5)
        confirmed += msg is not None and msg["type"] == "subscribe"
    assert confirmed == len(channels), "subscription not confirmed by redis-server"
    return sub


def next_message(sub: redis.client.PubSub) -> tuple[str, dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = sub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            return msg["channel"].decode(), strict_json(msg["data"])
    raise AssertionError("no message arrived within 5 s")


@pytest.fixture
def late_redis(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    """A free port, and a function that starts a real redis-server on it when the test says so."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed; `.ci/run` installs it"
        procs.append(subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        url = f"redis://127.0.0.1:{port}/0"
        with redis.Redis.from_url(url) as client:
            for _ in range(100):
                try:
                    client.ping()
                    return url
                except redis.ConnectionError:
                    time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    yield port, start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def webhook_inbox() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 (random port) that queues every JSON body posted to it."""
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server dispatches on this name
            inbox.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/hook", inbox
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def small_batch() -> BarBatch:
    open_ = np.array([[100.0, 50.0], [101.0, np.nan]])
    return BarBatch.from_arrays(
        np.array([T0, T0 + STEP]), ["AAA", "BBB"],
        open=open_, high=open_ + 1.0, low=open_ - 1.0, close=open_ + 0.5,
        volume=np.array([[1000.0, 500.0], [1200.0, 0.0]]), start=40,
    )


def a_fill() -> Fill:
    return Fill(
        model="sma", order_id=7, decision_id="sma:41:AAA", symbol="AAA", timestamp=T0 + STEP, bar=41,
        side=Side.BUY, quantity=10.0, price=101.25, reference_price=101.0, value_micro=1_012_500_000,
        commission_micro=1_250_000,
    )


def test_bars_fills_and_leaderboard_arrive_as_schema_1_json(redis_url: str) -> None:
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    pub = RedisPublisher(redis_url, run_id)
    assert pub.channels == {kind: f"titan-ray:{run_id}:{kind}" for kind in ("bars", "fills", "leaderboard")}
    sub = subscribe(redis_url, list(pub.channels.values()))
    try:
        pub.bars(small_batch())
        pub.fills([a_fill()])
        pub.fills([])  # nothing to say: no message
        pub.leaderboard([{"model": "sma", "equity": 100_012.5, "sharpe": float("nan"),
                          "n_trades": np.int64(1)}])
        pub.bars(small_batch().slice(1, 2))

        channel, bars = next_message(sub)
        assert channel == pub.channels["bars"]
        assert bars == {
            "schema": 1, "run_id": run_id, "type": "bars", "seq": 0,
            "data": {
                "start": 40, "timestamps": [T0, T0 + STEP], "symbols": ["AAA", "BBB"],
                "open": [[100.0, 50.0], [101.0, None]], "high": [[101.0, 51.0], [102.0, None]],
                "low": [[99.0, 49.0], [100.0, None]], "close": [[100.5, 50.5], [101.5, None]],
                "volume": [[1000.0, 500.0], [1200.0, 0.0]],
            },
        }
        channel, fills = next_message(sub)
        assert channel == pub.channels["fills"]
        assert fills == {
            "schema": 1, "run_id": run_id, "type": "fills", "seq": 0,
            "data": [{
                "model": "sma", "order_id": 7, "decision_id": "sma:41:AAA", "symbol": "AAA",
                "timestamp": T0 + STEP, "bar": 41, "side": "BUY", "quantity": 10.0, "price": 101.25,
                "reference_price": 101.0, "value_micro": 1_012_500_000, "commission_micro": 1_250_000,
                "value": 1012.5, "commission": 1.25,
            }],
        }
        channel, board = next_message(sub)
        assert channel == pub.channels["leaderboard"]
        assert board == {
            "schema": 1, "run_id": run_id, "type": "leaderboard", "seq": 0,
            "data": [{"model": "sma", "equity": 100_012.5, "sharpe": None, "n_trades": 1}],
        }
        channel, second = next_message(sub)
        assert (channel, second["seq"], second["data"]["start"]) == (pub.channels["bars"], 1, 41)
        assert (pub.published, pub.dropped) == (4, 0)
    finally:
        sub.close()
        pub.close()


def test_redis_down_never_raises_warns_once_and_retries_after_the_pause(
    late_redis: tuple[int, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="titan_ray.publish")
    port, start_redis = late_redis
    clock = FakeClock()
    pub = RedisPublisher(f"redis://:pw-s3cret@127.0.0.1:{port}/0", "outage", clock=clock, retry_after=30.0)

    began = time.monotonic()
    pub.bars(small_batch())
    pub.fills([a_fill()])
    pub.leaderboard([{"model": "sma"}])
    assert time.monotonic() - began < 2.0  # a refused connection fails fast: no sleeps in retries
    assert (pub.published, pub.dropped) == (0, 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "titan_ray.publish"
    assert warnings[0].getMessage().startswith(
        f"Redis at 127.0.0.1:{port} unreachable; fan-out paused, the arena goes on; retrying in 30 s"
    )

    clock.now = 30.0  # the pause is over: one attempt, still refused, and no second warning
    pub.bars(small_batch())
    assert (pub.published, pub.dropped) == (0, 4)

    url = start_redis()
    sub = subscribe(url, [pub.channels["bars"]])
    try:
        clock.now = 59.9  # Redis is back, but the publisher stays quiet until the pause ends
        pub.bars(small_batch())
        assert (pub.published, pub.dropped) == (0, 5)
        clock.now = 60.0
        pub.bars(small_batch())
        assert (pub.published, pub.dropped) == (1, 5)
        channel, msg = next_message(sub)
        assert (channel, msg["type"], msg["seq"]) == (pub.channels["bars"], "bars", 3)  # bars 0..2 dropped
    finally:
        sub.close()
        pub.close()

    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    resumed = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert resumed == [
        f"Redis at 127.0.0.1:{port} reachable again; fan-out resumed (5 messages dropped so far)"
    ]
    assert "s3cret" not in caplog.text
    pub.bars(small_batch())  # closed: dropped quietly
    assert pub.dropped == 6


def test_watchdog_actor_counts_restarts_removes_a_crash_looping_model_and_posts_alerts(
    ray_session: Any, webhook_inbox: tuple[str, queue.Queue[dict[str, Any]]]
) -> None:
    from titan_ray.arena.watchdog import WatchdogActor

    ray = ray_session
    url, inbox = webhook_inbox
    dog = WatchdogActor.remote(stall_after=60.0, max_restarts=1, window=60.0, webhook_url=url)
    try:
        ray.get([dog.beat.remote("sma", 0), dog.beat.remote("rsi", 0)])
        assert ray.get(dog.beat.remote("sma", 1))[0]["kind"] == "RESTARTED"
        looped = ray.get(dog.beat.remote("sma", 2))
        assert [a["kind"] for a in looped] == ["RESTARTED", "CRASH_LOOP"]
        assert ray.get(dog.removed.remote()) == {"sma"}
        assert ray.get(dog.check.remote()) == []  # rsi beat just now; sma is no longer watched
        history = ray.get(dog.alerts.remote())
        assert [(a["kind"], a["actor"]) for a in history] == [
            ("RESTARTED", "sma"), ("RESTARTED", "sma"), ("CRASH_LOOP", "sma"),
        ]
        assert json.loads(json.dumps(history)) == history
        posted = [inbox.get(timeout=10) for _ in history]  # posted from the actor's own thread, in order
        assert [p["titan_ray"]["kind"] for p in posted] == ["RESTARTED", "RESTARTED", "CRASH_LOOP"]
        assert posted[2]["text"] == (
            "TitanRay: CRASH_LOOP sma: 2 restarts within 60 s (max_restarts=1); removed from the arena"
        )
    finally:
        ray.kill(dog)
