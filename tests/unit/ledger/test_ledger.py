"""The ledger's order pipeline on hand-made bars: timing, sizing, slippage, fills, risk, reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import batch, decisions, ledger

from titan_ray.domain.orders import OrderStatus, RejectReason
from titan_ray.ledger.money import commission_micro, fill_value_micro

PRICES = [100.0, 101.0, 102.0, 103.0, 104.0]


def _run(led, bars, weights, model="m", seq=0):
    led.apply(seq, bars, [decisions(model, weights, start=bars.start)])
    return led.results()[model]


def test_next_open_fill_sizes_by_equity_at_the_fill_bars_open():
    led = ledger(ledger={"commission_bps": 10})
    opens = [100.0, 110.0, 120.0, 130.0]
    closes = [105.0, 115.0, 125.0, 135.0]
    res = _run(led, batch(opens, closes), [0.5, 0.5, 0.5, 0.5])
    (fill,) = res.fills
    # decided at bar 0's close, filled at bar 1's open: trunc(0.5 * 1e6 / 110) shares
    assert (fill.bar, fill.price, fill.quantity) == (1, 110.0, 4545.0)
    value = fill_value_micro(4545, 110.0)
    assert fill.value_micro == value == 499_950_000_000
    assert fill.commission_micro == commission_micro(value, 10) == 499_950_000
    cash = 1_000_000_000_000 - value - fill.commission_micro
    assert res.cash_micro == cash
    assert res.equity[0] == 1_000_000.0  # nothing held on the decision bar
    assert res.equity[-1] == pytest.approx(cash / 1e6 + 4545 * 135.0, abs=1e-9)


def test_same_close_fills_on_the_decision_bar():
    led = ledger(ledger={"commission_bps": 0, "fill": "same_close"})
    res = _run(led, batch([100.0, 110.0], [105.0, 115.0]), [1.0, 1.0])
    (fill,) = res.fills
    assert (fill.bar, fill.price, fill.quantity) == (0, 105.0, math.trunc(1e6 / 105.0))


def test_fixed_bps_slippage_buys_high_and_sells_low():
    led = ledger(ledger={"commission_bps": 0, "slippage": {"model": "fixed_bps", "bps": 50},
                         "sizing": {"mode": "fixed_quantity", "quantity": 10}})
    res = _run(led, batch(PRICES), [1, 1, 0, 0, 0])
    buy, sell = res.fills
    assert buy.price == 101.0 * (1 + 50 / 1e4) and buy.reference_price == 101.0
    assert sell.price == 103.0 * (1 - 50 / 1e4)
    (trip,) = res.round_trips
    assert trip.pnl_micro == fill_value_micro(10, sell.price) - fill_value_micro(10, buy.price)


def test_sqrt_impact_grows_with_participation():
    led = ledger(ledger={"commission_bps": 0, "sizing": {"mode": "fixed_quantity", "quantity": 400},
                         "slippage": {"model": "sqrt_impact", "coefficient": 0.1, "bps": 0}})
    res = _run(led, batch(PRICES, volume=[10_000] * 5), [1, 1, 1, 1, 1])
    (fill,) = res.fills
    assert fill.price == pytest.approx(101.0 * (1 + 0.1 * math.sqrt(400 / 10_000)))


def test_participation_cap_fills_partially_and_keeps_working():
    led = ledger(ledger={"commission_bps": 0, "max_participation": 0.1,
                         "sizing": {"mode": "fixed_quantity", "quantity": 250}})
    res = _run(led, batch(PRICES, volume=[1000] * 5), [1, 1, 1, 1, 1])
    assert [f.quantity for f in res.fills] == [100, 100, 50]
    assert [f.bar for f in res.fills] == [1, 2, 3]
    (order,) = res.orders
    assert order.status is OrderStatus.FILLED and order.filled == 250


def test_new_target_replaces_the_unfilled_rest():
    led = ledger(ledger={"commission_bps": 0, "max_participation": 0.1,
                         "sizing": {"mode": "fixed_quantity", "quantity": 250}})
    res = _run(led, batch(PRICES, volume=[1000] * 5), [1, 0, 0, 0, 0])
    first, second = res.orders
    assert first.status is OrderStatus.REPLACED and first.filled == 100
    assert second.status is OrderStatus.FILLED and second.quantity == 100  # back to flat
    assert res.positions == {}


def test_max_position_rejection_keeps_its_reason():
    led = ledger(risk={"max_position_pct": 0.2})
    res = _run(led, batch(PRICES), [0.5] * 5)
    (order,) = res.orders
    assert order.status is OrderStatus.REJECTED and order.reason is RejectReason.MAX_POSITION_EXCEEDED
    assert "max_position_pct=0.2" in order.detail and not res.fills


def test_gross_exposure_counts_other_positions():
    led = ledger(n_symbols=2, risk={"max_gross_exposure": 1.0}, ledger={"commission_bps": 0})
    w = np.array([[0.6, 0.0], [0.6, 0.0], [0.6, 0.6], [0.6, 0.6]])
    res = _run(led, batch(np.full((4, 2), 100.0)), w)
    assert [o.reason for o in res.orders] == [None, RejectReason.GROSS_EXPOSURE_EXCEEDED]
    assert res.positions == {"S0": 6000.0}


def test_drawdown_circuit_breaker_flattens_and_halts():
    led = ledger(risk={"max_drawdown_pct": 0.1}, ledger={"commission_bps": 0})
    opens = [100, 100, 80, 80, 80, 80]
    w = [1, 1, 1, 0, 0.5, 0.5]
    res = _run(led, batch(opens), w)
    sides = [(f.bar, f.side.value) for f in res.fills]
    assert sides == [(1, "BUY"), (3, "SELL")]  # breached at bar 2's close, flattened at bar 3's open
    assert res.halted == "CIRCUIT_BREAKER"
    assert res.orders[-1].reason is RejectReason.CIRCUIT_BREAKER


def test_daily_loss_limit_flattens_for_the_day_only():
    led = ledger(risk={"daily_loss_limit_pct": 0.05}, ledger={"commission_bps": 0})
    res = _run(led, batch([100, 100, 90, 90, 90]), [1, 1, 1, 1, 1])
    assert [(f.bar, f.side.value) for f in res.fills] == [(1, "BUY"), (3, "SELL")]
    assert res.halted is None


def test_kill_switch_flattens_rejects_and_lifts():
    led = ledger(ledger={"commission_bps": 0})
    led.apply(0, batch(PRICES[:3]), [decisions("m", [1, 1, 1])])
    led.kill_switch("m")
    led.apply(1, batch(PRICES[3:], start=3), [decisions("m", [0.5, 0.5], start=3)])
    res = led.results()["m"]
    assert res.positions == {} and res.halted == "KILL_SWITCH"
    assert res.orders[-1].reason is RejectReason.KILL_SWITCH
    led.kill_switch("m", on=False)
    led.apply(2, batch([105, 106], start=5), [decisions("m", [1.0, 1.0], start=5)])
    assert led.results()["m"].positions


@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.2, math.inf])
def test_invalid_weights_are_rejected_and_the_previous_target_kept(bad):
    led = ledger(ledger={"commission_bps": 0})
    res = _run(led, batch(PRICES), [0.5, 0.5, bad, 0.5, 0.5])
    (rejected,) = [o for o in res.orders if o.status is OrderStatus.REJECTED]
    assert rejected.reason is RejectReason.INVALID_WEIGHT and rejected.bar == 2
    assert len(res.fills) == 1  # the bad weight traded nothing and the position stayed


def test_no_price_on_the_fill_bar_is_rejected():
    led = ledger()
    res = _run(led, batch([100, math.nan, 102], [100, math.nan, 102]), [1, 1, 1])
    assert res.orders[0].reason is RejectReason.NO_MARKET_DATA
    assert np.isfinite(res.equity).all()  # marks carry the last close


def test_a_chunk_seen_twice_is_applied_once():
    led = ledger()
    bars = batch(PRICES)
    led.apply(0, bars, [decisions("m", [1] * 5)])
    led.apply(0, bars, [decisions("m", [0] * 5)])
    res = led.results()["m"]
    assert len(res.equity) == 5 and len(res.fills) == 1


def test_a_missing_model_keeps_positions_and_the_skip_is_recorded():
    led = ledger(models=("a", "b"))
    led.apply(0, batch(PRICES[:2]), [decisions("a", [1, 1]), decisions("b", [1, 1])])
    led.apply(1, batch(PRICES[2:], start=2), [decisions("a", [1, 1, 1], start=2), None])
    b = led.results()["b"]
    assert b.skipped_chunks == [1] and len(b.equity) == 5 and b.positions


def test_weights_of_the_wrong_shape_are_refused():
    led = ledger()
    with pytest.raises(ValueError, match="shape"):
        led.apply(0, batch(PRICES), [decisions("m", [1, 1])])
