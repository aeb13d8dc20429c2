"""An Alpaca paper account through alpaca-py: market orders out, fills in from ``trade_updates``.

``PaperAccount`` holds alpaca-py's ``TradingClient`` (REST: account, orders, positions) and its
``TradingStream`` (WebSocket ``trade_updates``) running in a background thread; alpaca-py
reconnects the stream itself. Every fill event (``partial_fill``, ``fill``) and final status is
applied to the ``PaperOrder`` it belongs to. Only paper accounts are allowed: a trading endpoint
that points at Alpaca's live API is refused, because cross-validation must never move real money.
Keys come from the same environment variables as the data (APCA_API_KEY_ID / APCA_API_SECRET_KEY).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from titan_ray.broker.crossval import PaperOrder
from titan_ray.data.alpaca import KEY_ENV, SECRET_ENV, AlpacaAuthError, AlpacaError, Credentials, endpoints

log = logging.getLogger("titan_ray.broker.alpaca_paper")
_LIVE_TRADING = "api.alpaca.markets"


def _ns(text: Any) -> int:
    return pd.Timestamp(text).tz_convert("UTC").as_unit("ns").value if text else 0


class PaperAccount:
    def __init__(self, cfg: Any, environ: Mapping[str, str], *, run_id: str = "",
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        from alpaca.trading.client import TradingClient
        from alpaca.trading.stream import TradingStream

        self._creds = Credentials.from_env(environ)
        urls = endpoints(cfg, environ)
        if urls["trading"] and urls["trading"].split("://")[-1].startswith(_LIVE_TRADING):
            raise AlpacaError(f"data.alpaca.endpoints.trading {urls['trading']} is Alpaca's LIVE trading API; paper "
                              "cross-validation only trades a paper account (leave it unset for paper-api)")
        keys = {"api_key": self._creds.key_id, "secret_key": self._creds.secret_key}
        self.client = TradingClient(**keys, paper=True, raw_data=True, url_override=urls["trading"])
        self._stream = TradingStream(**keys, paper=True, raw_data=True, url_override=urls["trading_stream"])
        self._stream._reconnect_min_backoff = 0.5
        self.updates: queue.Queue = queue.Queue()
        self._now_ns = now_ns
        self._run_id = run_id
        self._thread: threading.Thread | None = None
        self.orders: dict[str, PaperOrder] = {}  # by broker order id
        self._seen_executions: set[str] = set()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from alpaca.common.exceptions import APIError

        try:
            return fn()
        except APIError as err:
            text = self._creds.redact(str(err))[:300]
            if err.status_code in (401, 403):
                raise AlpacaAuthError(f"the Alpaca paper account refused the API keys while {what} (HTTP "
                                      f"{err.status_code}: {text}); set {KEY_ENV} and {SECRET_ENV} to your paper "
                                      "account's key pair") from None
            raise AlpacaError(f"Alpaca paper trading failed while {what}: HTTP {err.status_code}: {text}") from None
        except OSError as err:
            raise AlpacaError(f"cannot reach the Alpaca paper trading API while {what}: {type(err).__name__}") from None

    def start(self) -> dict[str, Any]:
        """Check the account (keys, status) and start listening for fills; returns the account's summary."""
        account = self._call("reading the account", self.client.get_account)
        if account.get("trading_blocked") or account.get("account_blocked"):
            raise AlpacaError("the Alpaca paper account is blocked from trading; check it in the Alpaca dashboard")
        updates = self.updates

        async def on_update(msg: dict[str, Any]) -> None:
            updates.put(msg.get("data", msg))

        self._stream.subscribe_trade_updates(on_update)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates", daemon=True)
        self._thread.start()
        return {"status": account.get("status"), "currency": account.get("currency")}

    def positions(self, symbols: tuple[str, ...]) -> dict[str, float]:
        held = self._call("reading positions", self.client.get_all_positions)
        wanted = {s.replace("/", ""): s for s in symbols}  # crypto positions come without the slash
        return {wanted[p["symbol"]]: float(p["qty"]) for p in held if p["symbol"] in wanted}

    def submit(self, order: PaperOrder) -> None:
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        crypto = "/" in order.symbol
        request = MarketOrderRequest(
            symbol=order.symbol, qty=order.quantity, side=OrderSide(order.side),
            time_in_force=TimeInForce.GTC if crypto else TimeInForce.DAY,
            client_order_id=_client_id(self._run_id, order.decision_id),
        )
        order.submitted_ns = self._now_ns()
        try:
            raw = self._call(f"sending order {order.decision_id}", lambda: self.client.submit_order(request))
        except AlpacaAuthError:
            raise
        except AlpacaError as err:  # a rejected order is a record, not the end of the run
            order.status, order.reason = "rejected", str(err)
            return
        order.order_id = str(raw["id"])
        order.status = raw.get("status", "accepted")
        order.submitted_ns = _ns(raw.get("submitted_at")) or order.submitted_ns  # the broker's clock
        self.orders[order.order_id] = order

    def pump(self, timeout: float = 0.0) -> int:
        """Apply the trade updates that have arrived (waiting up to ``timeout`` for the first)."""
        n = 0
        while True:
            try:
                update = self.updates.get(timeout=timeout if n == 0 and timeout > 0 else 0.0) if timeout \
                    else self.updates.get_nowait()
            except queue.Empty:
                return n
            self._apply(update)
            n += 1

    def _apply(self, update: dict[str, Any]) -> None:
        raw = update.get("order") or {}
        order = self.orders.get(str(raw.get("id")))
        if order is None:
            return  # another client's order on the same account
        event = update.get("event")
        if event in ("fill", "partial_fill"):
            key = str(update.get("execution_id") or (update.get("timestamp"), update.get("qty")))
            if key not in self._seen_executions:
                self._seen_executions.add(key)
                order.fills.append((_ns(update.get("timestamp")), float(update["qty"]), float(update["price"])))
        order.status = raw.get("status", order.status)

    def wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for every order to reach a final state."""
        deadline = time.monotonic() + seconds
        while any(not o.done for o in self.orders.values()) and time.monotonic() < deadline:
            self.pump(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        self.pump()

    def reconcile(self, cancel_open: bool) -> None:
        """Final states over REST: fills the stream missed (during a reconnect) count too."""
        for order_id, order in self.orders.items():
            if cancel_open and not order.done:
                try:
                    self._call(f"cancelling {order.decision_id}", lambda i=order_id: self.client.cancel_order_by_id(i))
                except AlpacaError as err:
                    log.warning("%s", err)
            raw = self._call(f"reading order {order.decision_id}", lambda i=order_id: self.client.get_order_by_id(i))
            order.status = raw.get("status", order.status)
            filled = float(raw.get("filled_qty") or 0)
            missing = filled - order.filled
            if missing > 1e-9 and raw.get("filled_avg_price"):
                # the stream missed some fills: add the rest at the price that makes the average right
                avg = float(raw["filled_avg_price"])
                rest_price = (avg * filled - order.avg_price * order.filled if order.filled else avg * filled) / missing
                order.fills.append((_ns(raw.get("filled_at")), missing, rest_price))

    def close(self) -> None:
        stream, thread = self._stream, self._thread
        self._thread = None
        loop = getattr(stream, "_loop", None)
        if loop is not None and loop.is_running():

            async def halt() -> None:
                await stream.stop_ws()
                await stream.close()

            try:
                asyncio.run_coroutine_threadsafe(halt(), loop).result(timeout=5)
            except Exception:  # a loop already shutting down
                log.debug("trade stream stop raced its shutdown", exc_info=True)
        if thread is not None:
            thread.join(timeout=10)


def _client_id(run_id: str, decision: str) -> str:
    """Alpaca's client_order_id (unique per account, at most 128 characters): run id and decision id."""
    return f"{run_id}:{decision}"[-128:] if run_id else decision[-128:]
