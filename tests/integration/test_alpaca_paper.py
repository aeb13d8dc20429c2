"""Paper cross-validation's broker side: alpaca-py's TradingClient and TradingStream against the fake.

An order is accepted, partially filled and filled (trade_updates events); the fake's payloads are
checked against alpaca-py's own models, so the fake speaks the documented format.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from alpaca.trading.models import Order, Position, TradeAccount, TradeUpdate
from fakes.alpaca_server import FakeAlpaca, random_walk_bars

from titan_ray.broker.alpaca_paper import PaperAccount
from titan_ray.broker.crossval import PaperOrder, divergence, summary
from titan_ray.config import AlpacaConfig
from titan_ray.data.alpaca import AlpacaAuthError, AlpacaError
from titan_ray.domain.orders import Fill, Side

BARS = random_walk_bars(["AAPL", "MSFT"], "2024-03-04 14:30", 30, seed=9)


def _order(fake: FakeAlpaca, qty: float, side: str = "buy", symbol: str = "AAPL") -> PaperOrder:
    return PaperOrder(f"sma:{symbol}:10", symbol, side, qty, int(fake.times[10]), fake.last_close(symbol))


def test_an_order_is_accepted_partially_filled_and_filled():
    with FakeAlpaca(BARS, fill_bps=3) as fake:
        fake.set_now(10)
        account = PaperAccount(AlpacaConfig(), fake.environ(), run_id="run1")
        try:
            assert account.start() == {"status": "ACTIVE", "currency": "USD"}
            order = _order(fake, 9)
            account.submit(order)
            assert order.status == "accepted" and order.order_id in fake.orders
            assert fake.orders[order.order_id]["client_order_id"] == "run1:sma:AAPL:10"
            events = []
            while not order.done:
                account.pump(timeout=2)
                events.append((order.status, len(order.fills)))
            account.reconcile(cancel_open=True)
            positions = account.positions(("AAPL", "MSFT"))
        finally:
            account.close()
        raw = fake.orders[order.order_id]
    assert ("partially_filled", 1) in events and events[-1] == ("filled", 2)
    close = fake.last_close("AAPL")
    assert [(q, p) for _, q, p in order.fills] == [(4.0, round(close * 1.0003, 4)), (5.0, round(close * 1.0004, 4))]
    # stamped half a second and 1.5 s after the bar that follows the market clock
    t_next = int(fake.times[11])
    assert [t for t, _, _ in order.fills] == [t_next + 500_000_000, t_next + 1_500_000_000]
    assert order.submitted_ns == t_next and positions == {"AAPL": 9.0}
    assert Order(**raw).status.value == "filled" and float(raw["filled_avg_price"]) == pytest.approx(order.avg_price)

    ref = close * 0.9995  # the next bar's open, as the ledger saw it, and its fill 1 bp worse
    ledger = [Fill("sma", 1, "sma:AAPL:10", "AAPL", t_next, 11, Side.BUY, 9.0, ref * 1.0001, ref, 0, 0)]
    report = divergence([order], ledger, 60 * 10**9)
    row = report.iloc[0]
    assert row["price_diff_bps"] == pytest.approx((order.avg_price / (ref * 1.0001) - 1) * 1e4)
    assert row["slippage_bps"] == pytest.approx((order.avg_price / ref - 1) * 1e4) and row["slippage_bps"] > 5
    assert row["quantity_diff"] == 0 and row["timing_s"] == pytest.approx(1.5) and row["send_delay_s"] == 0
    stats = summary(report)
    assert stats["n_filled"] == 1 and stats["suggested_slippage"]["bps"] == round(row["slippage_bps"], 2)


def test_the_fake_speaks_alpaca_py_s_models_and_open_orders_are_cancelled_at_the_end():
    with FakeAlpaca(BARS, fill_delay_s=30) as fake:  # nothing fills during this test
        fake.set_now(5)
        fake.positions["MSFT"] = 3.0
        TradeAccount(**fake._account())
        Position(**fake._position("MSFT", 3.0))
        account = PaperAccount(AlpacaConfig(), fake.environ())
        try:
            account.start()
            assert account.positions(("AAPL", "MSFT")) == {"MSFT": 3.0}
            order = _order(fake, 2, side="sell", symbol="MSFT")
            account.submit(order)
            account.wait(0.2)
            account.reconcile(cancel_open=True)
        finally:
            account.close()
        assert order.status == "canceled" and order.fills == []
        update = {"event": "canceled", "order": fake.orders[order.order_id], "timestamp": "2024-03-04T14:36:00Z"}
        assert TradeUpdate(**json.loads(json.dumps(update))).order.status.value == "canceled"
        rejected = PaperOrder("sma:NOPE:10", "NOPE", "buy", 1, int(fake.times[10]), 1.0)
        account2 = PaperAccount(AlpacaConfig(), fake.environ())
        account2.submit(rejected)  # a refused order is a record, not the end of the run
        assert rejected.status == "rejected" and "HTTP 422" in rejected.reason
    report = divergence([order], [], 60 * 10**9)
    assert report["broker_quantity"].tolist() == [0.0] and pd.isna(report["price_diff_bps"].iloc[0])


def test_refused_keys_and_a_live_trading_endpoint_are_refused():
    with FakeAlpaca(BARS) as fake:
        env = fake.environ() | {"APCA_API_SECRET_KEY": "wrong-secret-123456"}
        with pytest.raises(AlpacaAuthError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY") as err:
            PaperAccount(AlpacaConfig(), env).start()
        assert "wrong-secret-123456" not in str(err.value) and fake.key_id not in str(err.value)
    live = AlpacaConfig(endpoints={"trading": "https://api.alpaca.markets"})
    with pytest.raises(AlpacaError, match="LIVE trading API"):
        PaperAccount(live, {"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"})
