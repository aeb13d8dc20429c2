"""Redis fan-out: the arena's bars, fills and leaderboard published for outside consumers.

``RedisPublisher`` (an ``EventSink``, ``titan_ray.domain.events``) sends one JSON message per call
to Redis pub/sub, on three channels per run:

    titan-ray:{run_id}:bars          one message per replayed chunk
    titan-ray:{run_id}:fills         one message per list of fills (an empty list sends nothing)
    titan-ray:{run_id}:leaderboard   one message per leaderboard snapshot

Fan-out is a side channel: the arena never waits on a consumer and never fails because Redis is
away. A failed publish drops the message, logs one warning for the whole outage on the
``titan_ray.publish`` logger, and the publisher then stays quiet, trying the connection again only
once ``retry_after`` seconds (on the injected clock) have passed; the first message that gets
through again logs that fan-out resumed. ``published`` and ``dropped`` count messages. Pub/sub
keeps nothing for a late subscriber: a consumer that must not miss a message should read the run's
files, not this feed.

The runner builds one publisher and hands it to the market-data and ledger actors as their sink. It
pickles without its Redis client: each actor's copy builds its own, which connects on its first
publish, in the actor's process, and counts its own ``seq`` from 0 (the market sends the bars, the
ledger the fills and the leaderboard, so each channel has one sender).

Message schema (version 1). Every message is one JSON object, strict JSON (no NaN or Infinity):

    {"schema": 1, "run_id": str, "type": "bars" | "fills" | "leaderboard", "seq": int, "data": ...}

``seq`` counts the messages of one channel from 0, dropped ones included, so a gap in ``seq`` tells
a consumer how many messages it missed while Redis was away. Timestamps are int64 nanoseconds UTC:
they exceed 2**53, so a JavaScript consumer must parse them as BigInt (or strings) to keep them
exact.

``bars``: one chunk, columnar. ``start`` is the global index of the chunk's first timestamp in the
replay; each price/volume field is a list of rows, one per timestamp, each row one value per symbol
in ``symbols`` order. A symbol without a bar at a timestamp has ``null`` prices (NaN in the arena)::

    {"schema": 1, "run_id": "demo", "type": "bars", "seq": 0,
     "data": {"start": 120, "timestamps": [1704205800000000000, 1704206700000000000],
              "symbols": ["AAPL", "MSFT"],
              "open": [[185.2, 370.1], [185.6, null]], "high": [[185.9, 371.0], [186.0, null]],
              "low": [[185.0, 369.8], [185.3, null]], "close": [[185.6, 370.5], [185.8, null]],
              "volume": [[120500.0, 80200.0], [98000.0, 0.0]]}}

``fills``: a list of objects with every field of ``titan_ray.domain.orders.Fill`` (``side`` as its
value, ``"BUY"`` or ``"SELL"``; exact money as integer micro-dollars in ``value_micro`` and
``commission_micro``), plus the same money as float dollars in ``value`` and ``commission`` for
consumers that only display it::

    {"schema": 1, "run_id": "demo", "type": "fills", "seq": 3,
     "data": [{"model": "sma", "order_id": 7, "decision_id": "sma:AAPL:121", "symbol": "AAPL",
               "timestamp": 1704206700000000000, "bar": 121, "side": "BUY", "quantity": 10.0,
               "price": 185.65, "reference_price": 185.6, "value_micro": 1856500000,
               "commission_micro": 1000000, "value": 1856.5, "commission": 1.0}]}

``leaderboard``: the rows as the caller gave them (the runner's live snapshot or the final
leaderboard), except that a non-finite float (a Sharpe ratio not yet defined) becomes ``null`` and
numpy scalars become plain numbers::

    {"schema": 1, "run_id": "demo", "type": "leaderboard", "seq": 12,
     "data": [{"model": "sma", "equity": 100412.5, "total_return": 0.0041, "sharpe": null,
               "max_drawdown": -0.002, "n_trades": 3, "n_fills": 6, "n_rejected": 0}]}
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.domain.orders import Fill

SCHEMA_VERSION = 1
KINDS = ("bars", "fills", "leaderboard")

# A publish runs inside the market-data and ledger actors: a Redis host that drops packets must cost
# at most this long per attempt, and attempts happen once per ``retry_after`` at most.
_SOCKET_TIMEOUT = 2.0

log = logging.getLogger("titan_ray.publish")


class RedisPublisher:
    """Publishes the arena's bars, fills and leaderboard to Redis; never raises for Redis trouble.

    Not thread-safe: one publisher (one copy of it) belongs to one actor's loop.
    """

    def __init__(
        self,
        url: str,
        run_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = 30.0,
    ) -> None:
        if not run_id or not run_id.strip():
            raise ValueError("RedisPublisher run_id must be a non-empty string (it names the channels)")
        if not retry_after > 0:
            raise ValueError(f"RedisPublisher retry_after must be > 0 seconds, got {retry_after}")
        self._url = url
        self._endpoint = _endpoint(url)
        self._password = urlsplit(url).password  # kept only to scrub it from error text we log
        # from_url raises ValueError for a malformed URL: a config error, left to surface here.
        self._client = _client(url)
        self._run_id = run_id
        self._channels = {kind: f"titan-ray:{run_id}:{kind}" for kind in KINDS}
        self._clock = clock
        self._retry_after = retry_after
        self._seq = dict.fromkeys(KINDS, 0)
        self._paused_until: float | None = None  # set while an outage lasts
        self._closed = False
        self.published = 0
        self.dropped = 0

    def __getstate__(self) -> dict[str, Any]:
        # A client holds sockets and locks, which do not cross processes: the copy builds its own.
        state = self.__dict__.copy()
        del state["_client"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = _client(self._url)

    @property
    def channels(self) -> dict[str, str]:
        """Channel name per message type (``bars``, ``fills``, ``leaderboard``); a copy."""
        return dict(self._channels)

    def bars(self, batch: BarBatch) -> None:
        def data() -> dict[str, Any]:
            out: dict[str, Any] = {
                "start": int(batch.start),
                "timestamps": batch.timestamps.tolist(),
                "symbols": list(batch.symbols),
            }
            for field in FIELDS:
                out[field] = _rows_with_nulls(getattr(batch, field))
            return out

        self._publish("bars", data)

    def fills(self, fills: list[Fill]) -> None:
        if fills:
            self._publish("fills", lambda: [_fill_dict(f) for f in fills])

    def leaderboard(self, rows: list[dict[str, Any]]) -> None:
        self._publish("leaderboard", lambda: [json_safe(row) for row in rows])

    def close(self) -> None:
        """Release the connection; later calls drop their messages. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        except (redis.RedisError, OSError):
            pass  # the connection was already broken: nothing left to release

    def _publish(self, kind: str, data: Callable[[], Any]) -> None:
        """Send one message, or count it dropped.

        ``data`` builds the payload only when the message is going to be sent: a paused publisher
        costs the replay loop a clock read, not the JSON of a whole chunk.
        """
        seq = self._seq[kind]
        self._seq[kind] = seq + 1  # dropped messages take a seq too, so consumers see the gap
        if self._closed:
            self.dropped += 1
            return
        now = self._clock()
        if self._paused_until is not None and now < self._paused_until:
            self.dropped += 1
            return
        message = json.dumps(
            {"schema": SCHEMA_VERSION, "run_id": self._run_id, "type": kind, "seq": seq, "data": data()},
            allow_nan=False,
            separators=(",", ":"),
        )
        try:
            self._client.publish(self._channels[kind], message)
        except (redis.RedisError, OSError) as exc:
            self.dropped += 1
            self._pause(now, exc)
            return
        self.published += 1
        if self._paused_until is not None:
            self._paused_until = None
            log.info("Redis at %s reachable again; fan-out resumed (%d messages dropped so far)",
                     self._endpoint, self.dropped)

    def _pause(self, now: float, exc: BaseException) -> None:
        first = self._paused_until is None
        self._paused_until = now + self._retry_after
        reason = f"{type(exc).__name__}: {exc}"
        if self._password:
            reason = reason.replace(self._password, "***")
        if first:
            log.warning("Redis at %s unreachable; fan-out paused, the arena goes on; retrying in %g s (%s)",
                        self._endpoint, self._retry_after, reason)
        else:
            # Still down at the retry: the one warning of this outage has been given already.
            log.debug("Redis at %s still unreachable; retrying in %g s (%s)", self._endpoint,
                      self._retry_after, reason)


def _client(url: str) -> redis.Redis:
    """A client that connects on its first command, with one attempt per publish.

    No backoff sleeps inside redis-py: the retry policy is the publisher's (pause for
    ``retry_after``), and the replay loop must not sleep in a library's retries.
    """
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=_SOCKET_TIMEOUT,
        socket_timeout=_SOCKET_TIMEOUT,
    )


def _endpoint(url: str) -> str:
    """host:port (or the socket path) of a Redis URL: what a log may show, never the credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "a unix socket"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _rows_with_nulls(values: np.ndarray) -> list[list[float | None]]:
    """A (T, S) float array as nested lists, NaN and infinities as None (strict JSON has neither)."""
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    out = values.astype(object)
    out[~finite] = None
    return out.tolist()


def _fill_dict(fill: Fill) -> dict[str, Any]:
    row = fill._asdict()
    row["side"] = fill.side.value
    row["value"] = fill.value_micro / 1e6
    row["commission"] = fill.commission_micro / 1e6
    return row


def json_safe(value: Any) -> Any:
    """Non-finite floats to None and numpy scalars to Python ones, through dicts and lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
