"""A local fake of Alpaca's APIs on loopback, speaking their documented wire formats.

So that alpaca-py's real clients run against it in tests (no test reaches the internet):

- REST (one HTTP server): market data v2 ``GET /v2/stocks/bars`` and v1beta3
  ``GET /v1beta3/crypto/us/bars`` (``{"bars": {symbol: [{t, o, h, l, c, v, n, vw}]},
  "next_page_token"}``, symbols then time ascending, at most ``page_size`` bars a page), and
  trading v2 ``GET /v2/account``, ``GET /v2/positions``, ``POST /v2/orders``,
  ``GET /v2/orders/{id}``, ``DELETE /v2/orders/{id}``. Keys are checked from the
  ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers (401 ``{"message": "unauthorized."}``);
  ``rate_limit(n)`` answers the next n data requests with 429 and Alpaca's rate-limit headers.
- WebSocket (a second port): the market-data stream ``/v2/{feed}`` and ``/v1beta3/crypto/us``
  (msgpack frames: ``connected``, ``auth`` -> ``authenticated`` or error 402 ``auth failed``,
  ``subscribe`` -> ``subscription``, bars ``{"T": "b", "S", "o", "h", "l", "c", "v", "t"
  (msgpack timestamp), "n", "vw"}``) and the trading stream ``/stream`` (JSON: ``authenticate``
  -> ``authorization``, ``listen`` -> ``listening``, then ``trade_updates`` events).

The market is a fixed table of one-minute bars per symbol. The fake has a market clock: REST
serves bars up to ``now`` (all of them when ``now`` is None) and ``advance()`` moves the clock on
by one bar time and pushes that minute's bars to every subscribed stream. ``drop_streams()`` cuts
the market-data sockets without a close frame, as a network failure would. An order is accepted,
then (on the trading stream) ``new``, ``partial_fill`` for half, and ``fill`` for the rest, at the
symbol's last close moved ``fill_bps`` against the buyer or seller, stamped one bar after the
market clock (when a real order sent after a bar's close would fill).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import msgpack
import numpy as np
import pandas as pd
from websockets.asyncio.server import serve

MINUTE = 60 * 1_000_000_000
log = logging.getLogger("fake_alpaca")


def random_walk_bars(symbols: list[str], start: str, n: int, *, seed: int = 3) -> dict[str, pd.DataFrame]:
    """``n`` one-minute bars per symbol from ``start`` (UTC), a seeded random walk."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").value
    ts = t0 + MINUTE * np.arange(n, dtype=np.int64)
    out = {}
    for k, s in enumerate(symbols):
        close = (100.0 + 50 * k) * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.0003, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
        volume = rng.integers(1_000, 5_000, n).astype(float)
        out[s] = pd.DataFrame({"timestamp": ts, "open": open_.round(4), "high": high.round(4), "low": low.round(4),
                               "close": close.round(4), "volume": volume})
    return out


def _rfc3339(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAlpaca:
    def __init__(self, bars: dict[str, pd.DataFrame], *, key_id: str = "PKTESTKEY0000000001",
                 secret_key: str = "sEcReT-test-0123456789abcdef", page_size: int = 100, fill_bps: float = 3.0,
                 fill_delay_s: float = 0.05) -> None:
        self.bars = {s: f.sort_values("timestamp").reset_index(drop=True) for s, f in bars.items()}
        self.times = np.unique(np.concatenate([f["timestamp"].to_numpy(np.int64) for f in self.bars.values()]))
        self.key_id, self.secret_key = key_id, secret_key
        self.page_size, self.fill_bps, self.fill_delay_s = page_size, fill_bps, fill_delay_s
        self.now: int | None = None  # market clock (ns); None = every bar is history
        self.requests: list[dict[str, Any]] = []  # every REST request: method, path, query, status
        self._rate_limited = 0
        self._retry_after: str | None = None
        self._server_errors = 0
        self.orders: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, float] = {}
        self.connections: list[str] = []  # market-data connections that authenticated (path)
        self.subscriptions = 0
        self._data_sockets: set[Any] = set()
        self._subscribed: dict[Any, set[str]] = {}
        self._trade_sockets: set[Any] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: ThreadingHTTPServer | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._http_request(self, "GET")

            def do_POST(self) -> None:
                fake._http_request(self, "POST")

            def do_DELETE(self) -> None:
                fake._http_request(self, "DELETE")

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        ready = threading.Event()
        self._ws_thread = threading.Thread(target=self._run_ws, args=(ready,), daemon=True)
        self._ws_thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Alpaca WebSocket server did not start")

    def stop(self) -> None:
        """Stop both servers (again is fine): what a client sees when Alpaca is unreachable."""
        http, loop = self._http, self._loop
        self._http = self._loop = None
        if http is not None:
            http.shutdown()
            http.server_close()
        if loop is not None:
            loop.call_soon_threadsafe(self._stop_ws.set)
            self._ws_thread.join(10)

    def _run_ws(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_ws = asyncio.Event()
            async with serve(self._ws_handler, "127.0.0.1", 0) as server:
                self.ws_port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop_ws.wait()

        asyncio.run(main())

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def stream_url(self, feed: str = "iex", asset_class: str = "stocks") -> str:
        path = f"/v2/{feed}" if asset_class == "stocks" else "/v1beta3/crypto/us"
        return f"ws://127.0.0.1:{self.ws_port}{path}"

    def environ(self, *, keys: bool = True, feed: str = "iex", asset_class: str = "stocks") -> dict[str, str]:
        """The APCA_* variables that point alpaca-py at this fake (and carry its keys)."""
        env = {
            "APCA_API_DATA_URL": self.rest_url, "APCA_API_BASE_URL": self.rest_url,
            "APCA_API_STREAM_URL": self.stream_url(feed, asset_class),
            "APCA_API_TRADING_STREAM_URL": f"ws://127.0.0.1:{self.ws_port}/stream",
        }
        if keys:
            env |= {"APCA_API_KEY_ID": self.key_id, "APCA_API_SECRET_KEY": self.secret_key}
        return env

    # --- controls for tests -----------------------------------------------------------------------

    def rate_limit(self, n: int = 1, retry_after: str | None = None) -> None:
        self._rate_limited, self._retry_after = n, retry_after

    def fail(self, n: int = 1) -> None:
        """Answer the next ``n`` data requests with 503."""
        self._server_errors = n

    def data_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "/bars" in r["path"]]

    def set_now(self, index: int) -> None:
        """Put the market clock at bar time number ``index`` (0-based) without streaming anything."""
        self.now = int(self.times[index])

    def advance(self, n: int = 1) -> list[int]:
        """Move the clock ``n`` bar times on, streaming each to the subscribers; returns the times."""
        sent = []
        for _ in range(n):
            nxt = 0 if self.now is None else int(np.searchsorted(self.times, self.now, side="right"))
            if nxt >= len(self.times):
                break
            self.now = int(self.times[nxt])
            asyncio.run_coroutine_threadsafe(self._push_bars(self.now), self._loop).result(10)
            sent.append(self.now)
        return sent

    def drop_streams(self) -> None:
        """Cut every market-data socket without a close frame."""
        async def cut() -> None:
            for ws in list(self._data_sockets):
                ws.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def wait_subscribed(self, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.subscriptions < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no stream subscription #{count} within {timeout} s")
            time.sleep(0.01)

    # --- REST ----------------------------------------------------------------------------------------

    def _http_request(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = None
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = json.loads(h.rfile.read(length) or b"{}")
        status, payload, headers = self._route(method, url.path, query, body, h.headers)
        with self._lock:
            self.requests.append({"method": method, "path": url.path, "query": query, "status": status})
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, headers: Any
               ) -> tuple[int, Any, dict[str, str]]:
        key, secret = headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
        crypto = path.startswith("/v1beta3/crypto/")
        keyed = not crypto or key is not None  # crypto data works without keys, as on Alpaca
        if keyed and (key != self.key_id or secret != self.secret_key):
            return 401, {"message": "unauthorized."}, {}
        if path.endswith("/bars"):
            if self._rate_limited > 0:
                self._rate_limited -= 1
                extra = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                         "X-RateLimit-Reset": str(int(time.time()) + 1)}
                if self._retry_after is not None:
                    extra["Retry-After"] = self._retry_after
                return 429, {"message": "too many requests."}, extra
            if self._server_errors > 0:
                self._server_errors -= 1
                return 503, {"message": "service unavailable"}, {}
            if query.get("feed") == "sip":
                return 403, {"message": "subscription does not permit querying recent SIP data"}, {}
            return self._bars(query)
        if path == "/v2/account" and method == "GET":
            return 200, self._account(), {}
        if path == "/v2/positions" and method == "GET":
            return 200, [self._position(s, q) for s, q in self.positions.items() if q], {}
        if path == "/v2/orders" and method == "POST":
            return self._new_order(body)
        if path.startswith("/v2/orders/"):
            order = self.orders.get(path.rsplit("/", 1)[-1])
            if order is None:
                return 404, {"code": 40410000, "message": "order not found"}, {}
            if method == "DELETE":
                if order["status"] not in ("filled", "canceled"):
                    order["status"] = "canceled"
                    self._trade_event("canceled", order)
                return 204, None, {}
            return 200, order, {}
        return 404, {"code": 40410000, "message": f"no route {method} {path}"}, {}

    def _bars(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        step = _timeframe_ns(q.get("timeframe", "1Min"))
        if step is None:
            return 422, {"code": 42210000, "message": f"invalid timeframe {q.get('timeframe')}"}, {}
        start = pd.Timestamp(q["start"]).value if q.get("start") else 0
        end = pd.Timestamp(q["end"]).value if q.get("end") else np.iinfo(np.int64).max
        if self.now is not None:
            end = min(end, self.now)
        rows = []
        for s in sorted(q.get("symbols", "").split(",")):
            f = self.bars.get(s)
            if f is None:
                continue
            f = _resample(f, step)
            f = f[(f["timestamp"] >= start) & (f["timestamp"] <= end)]
            rows += [(s, r) for r in f.itertuples(index=False)]
        offset = int(base64.b64decode(q["page_token"]).decode()) if q.get("page_token") else 0
        limit = min(int(q.get("limit") or 1000), self.page_size)
        page = rows[offset: offset + limit]
        out: dict[str, list[dict[str, Any]]] = {}
        for s, r in page:
            out.setdefault(s, []).append({"t": _rfc3339(int(r.timestamp)), "o": r.open, "h": r.high, "l": r.low,
                                          "c": r.close, "v": r.volume, "n": 42, "vw": round((r.high + r.low) / 2, 4)})
        more = offset + limit < len(rows)
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return 200, {"bars": out, "next_page_token": token}, {}

    def last_close(self, symbol: str) -> float:
        f = self.bars[symbol]
        if self.now is not None:
            f = f[f["timestamp"] <= self.now]
        return float(f["close"].iloc[-1])

    def _account(self) -> dict[str, Any]:
        return {"id": "a1b2c3d4-0000-4000-8000-000000000001", "account_number": "PA3FAKE00001", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "buying_power": "400000", "cash": "100000",
                "portfolio_value": "100000", "equity": "100000", "pattern_day_trader": False,
                "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
                "trade_suspended_by_user": False, "shorting_enabled": True, "multiplier": "4",
                "created_at": "2024-01-02T15:00:00Z"}

    def _position(self, symbol: str, qty: float) -> dict[str, Any]:
        price = self.last_close(symbol)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol.replace("/", ""),
                "exchange": "NASDAQ", "asset_class": "us_equity", "avg_entry_price": str(price), "qty": str(qty),
                "side": "long" if qty > 0 else "short", "cost_basis": str(price * qty)}

    def _market_time(self) -> int:
        return (self.now if self.now is not None else int(self.times[-1])) + MINUTE

    def _new_order(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if body.get("type") != "market" or body.get("side") not in ("buy", "sell") or body["symbol"] not in self.bars:
            return 422, {"code": 42210000, "message": "invalid order"}, {}
        if any(o["client_order_id"] == body.get("client_order_id") for o in self.orders.values()):
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}, {}
        at = _rfc3339(self._market_time())
        order = {
            "id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "created_at": at, "updated_at": at, "submitted_at": at, "filled_at": None, "expired_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])), "symbol": body["symbol"],
            "asset_class": "crypto" if "/" in body["symbol"] else "us_equity", "notional": None,
            "qty": str(body["qty"]), "filled_qty": "0", "filled_avg_price": None, "order_class": "simple",
            "order_type": "market", "type": "market", "side": body["side"], "time_in_force": body["time_in_force"],
            "limit_price": None, "stop_price": None, "status": "accepted", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None, "position_intent": None,
        }
        self.orders[order["id"]] = order
        asyncio.run_coroutine_threadsafe(self._fill_later(order["id"]), self._loop)
        return 200, dict(order), {}

    async def _fill_later(self, order_id: str) -> None:
        """new, then a partial fill of half, then the rest, each after ``fill_delay_s``."""
        order = self.orders[order_id]
        await asyncio.sleep(self.fill_delay_s)
        order["status"] = "new"
        self._trade_event("new", order)
        qty = float(order["qty"])
        sign = 1 if order["side"] == "buy" else -1
        base = self.last_close(order["symbol"])
        first = float(np.floor(qty / 2)) if qty >= 2 else 0.0
        parts = [(first, 0.5), (qty - first, 1.5)] if first > 0 else [(qty, 1.0)]
        done = 0.0
        value = 0.0
        for i, (q, offset_s) in enumerate(parts):
            await asyncio.sleep(self.fill_delay_s)
            if order["status"] == "canceled":
                return
            price = round(base * (1 + sign * (self.fill_bps + i) / 1e4), 4)
            done += q
            value += q * price
            last = i == len(parts) - 1
            stamp = _rfc3339(int(pd.Timestamp(order["submitted_at"]).value + offset_s * 1e9))
            order.update(status="filled" if last else "partially_filled", filled_qty=str(done),
                         filled_avg_price=str(round(value / done, 6)), updated_at=stamp,
                         filled_at=stamp if last else None)
            self.positions[order["symbol"]] = self.positions.get(order["symbol"], 0.0) + sign * q
            self._trade_event("fill" if last else "partial_fill", order, price=price, qty=q, at=stamp)

    def _trade_event(self, event: str, order: dict[str, Any], *, price: float | None = None,
                     qty: float | None = None, at: str | None = None) -> None:
        data: dict[str, Any] = {"event": event, "order": dict(order), "timestamp": at or order["updated_at"]}
        if price is not None:
            data |= {"execution_id": str(uuid.uuid4()), "price": str(price), "qty": str(qty),
                     "position_qty": str(self.positions.get(order["symbol"], 0.0))}
        message = json.dumps({"stream": "trade_updates", "data": data})
        for ws in list(self._trade_sockets):
            if _in_loop(self._loop):
                asyncio.ensure_future(ws.send(message))
            else:
                asyncio.run_coroutine_threadsafe(ws.send(message), self._loop)

    # --- WebSocket -----------------------------------------------------------------------------------

    async def _ws_handler(self, ws: Any) -> None:
        path = ws.request.path
        if path == "/stream":
            await self._trading_stream(ws)
        elif path.startswith(("/v2/", "/v1beta3/crypto/")):
            await self._data_stream(ws, path)
        else:
            await ws.close(code=1008, reason="unknown path")

    async def _data_stream(self, ws: Any, path: str) -> None:
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        try:
            auth = msgpack.unpackb(await ws.recv())
            if auth.get("action") != "auth" or auth.get("key") != self.key_id or auth.get("secret") != self.secret_key:
                await ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
                await ws.close()
                return
            await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
            self.connections.append(path)
            self._data_sockets.add(ws)
            async for raw in ws:
                msg = msgpack.unpackb(raw)
                if msg.get("action") == "subscribe":
                    subs = self._subscribed.setdefault(ws, set())
                    subs.update(msg.get("bars", []))
                    await ws.send(msgpack.packb([{
                        "T": "subscription", "trades": [], "quotes": [], "bars": sorted(subs), "updatedBars": [],
                        "dailyBars": [], "statuses": [], "lulds": [], "corrections": [], "cancelErrors": [],
                    }]))
                    self.subscriptions += 1
        except Exception:
            log.debug("data stream connection ended", exc_info=True)
        finally:
            self._data_sockets.discard(ws)
            self._subscribed.pop(ws, None)

    async def _push_bars(self, t: int) -> None:
        for ws, symbols in list(self._subscribed.items()):
            for s in sorted(symbols):
                f = self.bars.get(s)
                if f is None:
                    continue
                row = f[f["timestamp"] == t]
                if row.empty:
                    continue
                r = row.iloc[0]
                bar = {"T": "b", "S": s, "o": float(r.open), "h": float(r.high), "l": float(r.low),
                       "c": float(r.close), "v": float(r.volume), "t": msgpack.Timestamp.from_unix_nano(t),
                       "n": 42, "vw": float((r.high + r.low) / 2)}
                try:
                    await ws.send(msgpack.packb([bar]))
                except Exception:
                    log.debug("a bar was not delivered", exc_info=True)

    async def _trading_stream(self, ws: Any) -> None:
        try:
            msg = json.loads(await ws.recv())
            data = msg.get("data") or {}
            ok = (msg.get("action") in ("authenticate", "auth") and data.get("key_id") == self.key_id
                  and data.get("secret_key") == self.secret_key)
            await ws.send(json.dumps({"stream": "authorization",
                                      "data": {"action": "authenticate",
                                               "status": "authorized" if ok else "unauthorized"}}))
            if not ok:
                await ws.close()
                return
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("action") == "listen":
                    streams = msg.get("data", {}).get("streams", [])
                    await ws.send(json.dumps({"stream": "listening", "data": {"streams": streams}}))
                    if "trade_updates" in streams:
                        self._trade_sockets.add(ws)
        except Exception:
            log.debug("trading stream connection ended", exc_info=True)
        finally:
            self._trade_sockets.discard(ws)


def _in_loop(loop: asyncio.AbstractEventLoop | None) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _timeframe_ns(tf: str) -> int | None:
    for suffix, unit in (("Min", MINUTE), ("T", MINUTE), ("Hour", 60 * MINUTE), ("H", 60 * MINUTE),
                         ("Day", 1440 * MINUTE), ("D", 1440 * MINUTE)):
        if tf.endswith(suffix) and tf[: -len(suffix)].isdigit():
            return int(tf[: -len(suffix)]) * unit
    return None


def _resample(f: pd.DataFrame, step: int) -> pd.DataFrame:
    if step == MINUTE:
        return f
    if step >= 1440 * MINUTE:  # Alpaca labels day bars at midnight New York time
        local = pd.DatetimeIndex(f["timestamp"].to_numpy().astype("datetime64[ns]"), tz="UTC").tz_convert(
            "America/New_York")
        key = local.normalize().tz_convert("UTC").as_unit("ns").asi8
    else:
        key = f["timestamp"].to_numpy(np.int64) // step * step
    g = f.groupby(key, sort=True)
    return pd.DataFrame({"timestamp": np.asarray(list(g.groups), dtype=np.int64),
                         "open": g["open"].first().to_numpy(), "high": g["high"].max().to_numpy(),
                         "low": g["low"].min().to_numpy(), "close": g["close"].last().to_numpy(),
                         "volume": g["volume"].sum().to_numpy()})
