"""Issue 20 in the ledger: sizing modes, protective exits, execution algorithms, Almgren-Chriss
impact, the VaR limit and group caps, each against numbers worked out by hand here.

The bars are daily on the continuous calendar (one bar a day), commission 0 unless a test says
otherwise, so each expected quantity and price is a line of arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import DAY, T0, decisions, ledger

from titan_ray.arena.results import decisions_frame
from titan_ray.commands import why
from titan_ray.config import parse_config
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.orders import OrderStatus, RejectReason, Side
from titan_ray.ledger.estimates import ATR, MU, SD, MarketEstimates
from titan_ray.metrics.execution import shortfall


def bars(open_, high=None, low=None, close=None, volume=None, start=0) -> BarBatch:
    o = np.asarray(open_, dtype=float).reshape(len(open_), -1)
    c = o if close is None else np.asarray(close, dtype=float).reshape(o.shape)
    h = np.fmax(o, c) if high is None else np.asarray(high, dtype=float).reshape(o.shape)
    lo = np.fmin(o, c) if low is None else np.asarray(low, dtype=float).reshape(o.shape)
    v = np.full(o.shape, 1e6) if volume is None else np.asarray(volume, dtype=float).reshape(o.shape)
    ts = T0 + (start + np.arange(len(o))) * DAY
    return BarBatch.from_arrays(ts, [f"S{i}" for i in range(o.shape[1])], open=o, high=h, low=lo, close=c,
                                volume=v, start=start)


def run(b: BarBatch, weights, chunk: int | None = None, **overrides):
    overrides.setdefault("ledger", {})
    overrides["ledger"] = {"commission_bps": 0, **overrides["ledger"]}
    led = ledger(n_symbols=b.n_symbols, **overrides)
    w = np.asarray(weights, dtype=float).reshape(len(b), -1)
    for seq, part in enumerate(b.chunks(chunk or len(b))):
        led.apply(seq, part, [decisions("m", w[part.start:part.stop], start=part.start)])
    return led.results()["m"]


# --- execution algorithms: child slices by hand ----------------------------------------------------


def test_twap_sends_equal_slices_and_the_last_bar_takes_the_rest():
    # 100,300 of cash, price 100: the target weight 1 is 1,003 shares, worked over 4 bars from bar 1
    b = bars([100.0] * 7)
    res = run(b, [1] * 7, ledger={"initial_cash": 100_300, "execution": {"algo": "twap", "bars": 4}})
    # 1003/4 = 250.75 -> 250; 753/3 = 251; 502/2 = 251; the last bar: 251
    assert [(f.bar, f.quantity) for f in res.fills] == [(1, 250), (2, 251), (3, 251), (4, 251)]
    assert len({f.order_id for f in res.fills}) == 1  # children of one parent
    (order,) = res.orders
    assert (order.status, order.quantity, order.filled, order.bar) == (OrderStatus.FILLED, 1003, 1003, 1)


def test_vwap_slices_follow_the_bar_volume_against_the_expected_volume():
    volume = [1000, 3000, 2000, 6000, 1000, 4000, 1000]
    b = bars([100.0] * 7, volume=volume)
    res = run(b, [1] * 7, ledger={"initial_cash": 100_000, "execution": {"algo": "vwap", "bars": 3,
                                                                              "volume_window": 2}})
    # 1,000 shares from bar 1. Expected bar volume as of the last close: the mean of the last 2 bars
    # (at bar 1 only one bar has closed: no estimate yet, so the bar's own volume stands in)
    remaining, got = 1000.0, []
    for child, bar in enumerate((1, 2, 3)):
        expected = (volume[bar - 1] + volume[bar - 2]) / 2 if bar >= 2 else volume[bar]
        left = 3 - child
        share = 1.0 if left == 1 else volume[bar] / (volume[bar] + (left - 1) * expected)
        qty = math.floor(remaining * share)
        got.append((bar, qty))
        remaining -= qty
    assert [(f.bar, f.quantity) for f in res.fills] == got
    assert sum(q for _, q in got) == 1000


def test_pov_takes_its_rate_of_each_bars_volume_until_done():
    volume = [5000, 1234, 4321, 999, 10000, 10000]
    b = bars([100.0] * 6, volume=volume)
    res = run(b, [0.05] * 6, ledger={"initial_cash": 100_000, "execution": {"algo": "pov", "rate": 0.2}})
    # 50 shares: floor(0.2 x 1234) = 246 > 50, so all at bar 1
    assert [(f.bar, f.quantity) for f in res.fills] == [(1, 50)]
    res = run(b, [1] * 6, ledger={"initial_cash": 100_000, "execution": {"algo": "pov", "rate": 0.2}})
    # 1,000 shares: floor(0.2 x volume) a bar (246, 864, 199, ...) until none remain
    expected, left = [], 1000
    for bar in range(1, 6):
        qty = min(left, math.floor(0.2 * volume[bar]))
        if qty:
            expected.append((bar, qty))
        left -= qty
    assert [(f.bar, f.quantity) for f in res.fills] == expected


def test_implementation_shortfall_is_the_fills_against_the_decision_close_by_hand():
    # decided at bar 0's close (100); twap over 2 bars fills at the opens 101 and 103, commission 10 bps
    b = bars([100, 101, 103, 103], close=[100, 102, 103, 103])
    res = run(b, [0.5] * 4, ledger={"initial_cash": 100_000, "commission_bps": 10,
                                       "execution": {"algo": "twap", "bars": 2}})
    fills = list(res.fills)
    assert [(f.bar, f.price) for f in fills] == [(1, 101.0), (2, 103.0)]
    cost = sum(f.quantity * f.price for f in fills) - sum(f.quantity for f in fills) * 100.0
    cost += sum(f.commission_micro for f in fills) / 1e6
    r = res.orders.rows
    money, bps = shortfall(r["side"], r["filled"], r["value"], r["commission"], r["arrival"])
    assert r["arrival"][0] == 100.0
    assert money[0] == pytest.approx(cost, rel=1e-12)
    assert bps[0] == pytest.approx(cost / (r["filled"][0] * 100.0) * 1e4, rel=1e-12)


# --- protective exits ------------------------------------------------------------------------------


def test_a_stop_loss_fills_at_its_level_when_the_low_crosses_it():
    # long 1,000 at bar 1's open of 100; stop 5% below: 95. Bar 2's low 96 holds, bar 3's low 94 hits it.
    b = bars([100, 100, 99, 97, 97], high=[100, 101, 100, 98, 98], low=[100, 99, 96, 94, 96],
             close=[100, 100, 98, 96, 97])
    res = run(b, [1] * 5, ledger={"initial_cash": 100_000, "stops": {"stop_loss_pct": 0.05}})
    exit_ = res.fills[-1]
    assert (exit_.bar, exit_.side, exit_.quantity, exit_.price) == (3, Side.SELL, 1000, 95.0)
    assert exit_.decision_id == "risk:stop_loss:m:S0:3"
    assert not res.positions  # and it does not buy back while the model's weight stays the same
    order = next(o for o in res.orders if o.order_id == exit_.order_id)
    assert (order.status, order.decision_id) == (OrderStatus.FILLED, exit_.decision_id)
    why = {e.decision_id: e for e in res.explanation_records()}[exit_.decision_id]
    assert why.method == "risk" and "stop-loss at 95.0000 (-5.00% from the entry 100.0000)" in why.sentence
    assert {f.name: f.value for f in why.features} == {"trigger_price": 94.0, "level": 95.0,
                                                       "equity": res.equity[2], "entry_price": 100.0}


def test_why_reads_a_stop_exit_from_the_results_folder_frames():
    b = bars([100, 100, 99, 97, 97], high=[100, 101, 100, 98, 98], low=[100, 99, 96, 94, 96],
             close=[100, 100, 98, 96, 97])
    res = run(b, [1] * 5, ledger={"initial_cash": 100_000, "stops": {"stop_loss_pct": 0.05}})
    frame = decisions_frame({"m": res})
    row = frame[frame["decision_id"] == "risk:stop_loss:m:S0:3"].iloc[0]
    text = why.render(why._record(row))
    weight = 1000 * 95.0 / res.equity[2]  # the position at the exit's price, of the last close's equity
    assert text.splitlines()[2].startswith(f"Sold 1000 S0 (weight {weight:.4g} → 0): stop-loss at 95.0000")
    assert "exiting at 95.0000; order FILLED, filled 1000 at 95.0000" in text


def test_a_gap_through_the_stop_fills_at_the_open():
    b = bars([100, 100, 92, 92], high=[100, 101, 93, 93], low=[100, 99, 90, 91], close=[100, 100, 92, 92])
    res = run(b, [1] * 4, ledger={"initial_cash": 100_000, "stops": {"stop_loss_pct": 0.05}})
    assert (res.fills[-1].bar, res.fills[-1].price) == (2, 92.0)
    assert "gap rule" in res.explanation_records()[-1].sentence


def test_take_profit_and_the_pessimistic_order_when_a_bar_touches_both():
    # take-profit 10% above 100 = 110; a bar with high 111 exits there
    b = bars([100, 100, 105, 105], high=[100, 101, 111, 106], low=[100, 99, 104, 104], close=[100, 100, 105, 105])
    res = run(b, [1] * 4, ledger={"initial_cash": 100_000, "stops": {"take_profit_pct": 0.1}})
    assert (res.fills[-1].bar, res.fills[-1].price, res.fills[-1].decision_id) == (2, 100 * (1 + 0.1),
                                                                                 "risk:take_profit:m:S0:2")
    # high 111 and low 94 in one bar: the stop (95) is taken, not the target
    b = bars([100, 100, 100, 100], high=[100, 101, 111, 101], low=[100, 99, 94, 99], close=[100, 100, 100, 100])
    res = run(b, [1] * 4, ledger={"initial_cash": 100_000, "stops": {"take_profit_pct": 0.1, "stop_loss_pct": 0.05}})
    assert (res.fills[-1].bar, res.fills[-1].price, res.fills[-1].decision_id) == (2, 95.0, "risk:stop_loss:m:S0:2")


def test_a_trailing_stop_follows_the_best_high_up_to_the_bar_before():
    # entry 100 at bar 1; highs 104 (bar 1), 110 (bar 2): the level for bar 3 is 110 x 0.95 = 104.5.
    # Bar 2's own high 110 and low 104 do not stop it (its level is 104 x 0.95 = 98.8).
    b = bars([100, 100, 105, 106, 106], high=[100, 104, 110, 107, 107], low=[100, 99, 104, 104, 105],
             close=[100, 103, 106, 105, 106])
    res = run(b, [1] * 5, ledger={"initial_cash": 100_000, "stops": {"trailing_pct": 0.05}})
    exit_ = res.fills[-1]
    assert (exit_.bar, exit_.price, exit_.decision_id) == (3, 110 * 0.95, "risk:trailing_stop:m:S0:3")


def test_atr_levels_use_the_atr_of_the_last_close_before_the_first_bar_watched():
    o = np.array([100, 101, 102, 100, 101, 100, 98.0])
    h, lo, c = o + 2, o - 2, o.copy()
    b = bars(o, high=h, low=lo, close=c)
    res = run(b, [0, 0, 1, 1, 1, 1, 1], ledger={"initial_cash": 100_000,
                                                 "stops": {"stop_loss_atr": 0.5, "atr_period": 2}})
    # entry at bar 3's open (100); the ATR at bar 2's close: the mean true range of bars 1 and 2
    tr = [max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in (1, 2)]
    level = 100 - 0.5 * np.mean(tr)
    first = next(i for i in range(3, 7) if lo[i] <= level)
    exit_ = res.fills[-1]
    assert (exit_.bar, exit_.price) == (first, min(o[first], level))


def test_stops_never_see_the_future():
    rng = np.random.default_rng(3)
    n, t = 120, 60
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 2)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, (n, 2)))
    high, low = np.fmax(open_, close) * 1.01, np.fmin(open_, close) * 0.99
    weights = np.where(rng.random((n, 2)) < 0.1, 0.0, 0.4)
    cfg = {"ledger": {"initial_cash": 1_000_000, "stops": {"stop_loss_atr": 1, "take_profit_pct": 0.03,
                                                           "trailing_pct": 0.02, "atr_period": 5},
                      "sizing": {"mode": "vol_target", "window": 5}, "slippage": {"model": "almgren_chriss",
                                                                                   "window": 5}}}
    a = run(bars(open_, high, low, close), weights, chunk=17, **cfg)
    future = rng.random((n - t - 1, 2)) + 0.5  # bars after t: anything at all
    b = run(bars(np.vstack([open_[:t + 1], open_[t + 1:] * future]), np.vstack([high[:t + 1], high[t + 1:] * future * 1.1]),
                 np.vstack([low[:t + 1], low[t + 1:] * future * 0.9]), np.vstack([close[:t + 1], close[t + 1:] * future])),
            weights, chunk=23, **cfg)
    assert any(f.decision_id.startswith("risk:") for f in a.fills if f.bar <= t)  # exits happened by t
    assert [f for f in a.fills if f.bar <= t] == [f for f in b.fills if f.bar <= t]
    assert np.array_equal(a.equity[:t + 1], b.equity[:t + 1])
    why_a = [repr(e) for e in a.explanation_records() if e.bar <= t]  # repr: their gap is NaN
    assert why_a == [repr(e) for e in b.explanation_records() if e.bar <= t]


# --- sizing ----------------------------------------------------------------------------------------


def _closes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.015, n))), 2)


def test_vol_target_scales_the_weight_by_the_causal_volatility():
    c = _closes(30)
    b = bars(c)  # open = close: orders fill at the next bar's close-equal open
    w = np.zeros(30)
    w[25:] = 0.8
    res = run(b, w, ledger={"initial_cash": 1_000_000, "sizing": {"mode": "vol_target", "target_vol": 0.1,
                                                                   "window": 20, "max_leverage": 3}})
    r = pd.Series(c).pct_change()
    sd = r.rolling(20).std().iloc[25]  # as of the decision's close (bar 25)
    scale = min(3.0, 0.1 / (sd * math.sqrt(365)))  # continuous calendar, daily bars: 365 a year
    equity = 1_000_000.0  # flat until the fill
    assert res.fills[0].quantity == math.trunc(0.8 * scale * equity / c[26])


def test_kelly_stakes_the_fraction_of_mu_over_sigma_squared_capped():
    c = 100 * np.cumprod(np.r_[1, 1 + 0.002 + 0.01 * np.tile([1, -1], 20)[:39]])  # a rising series
    b = bars(c)
    w = np.zeros(40)
    w[30:] = 0.5
    res = run(b, w, ledger={"initial_cash": 1_000_000, "sizing": {"mode": "kelly", "fraction": 0.5, "cap": 0.9,
                                                                   "window": 20}})
    r = pd.Series(c).pct_change()
    mu, sd = r.rolling(20).mean().iloc[30], r.rolling(20).std().iloc[30]
    stake = min(0.9, max(0.0, 0.5 * mu / sd**2))
    assert res.fills[0].quantity == math.trunc(0.5 * stake * 1_000_000 / c[31])
    # short the rising market: the Kelly stake of a bet against the drift is 0, so no order at all
    res = run(b, -w, ledger={"initial_cash": 1_000_000, "sizing": {"mode": "kelly", "window": 20}})
    assert len(res.fills) == 0


def test_risk_parity_spreads_the_gross_weight_by_inverse_volatility():
    rng = np.random.default_rng(5)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, [0.01, 0.03, 0.02], (30, 3)), axis=0)), 2)
    b = bars(c)
    w = np.zeros((30, 3))
    w[25:, 0], w[25:, 1] = 0.3, 0.3  # the model holds two symbols
    res = run(b, w, ledger={"initial_cash": 1_000_000, "sizing": {"mode": "risk_parity", "window": 20}})
    sd = pd.DataFrame(c).pct_change().rolling(20).std().iloc[25].to_numpy()
    inv = 1 / sd[:2]
    sized = 0.6 * inv / inv.sum()
    got = {f.symbol: f.quantity for f in res.fills}
    assert got == {"S0": math.trunc(sized[0] * 1_000_000 / c[26, 0]), "S1": math.trunc(sized[1] * 1_000_000 / c[26, 1])}


def test_market_estimates_match_pandas_rolling_whatever_the_chunking():
    rng = np.random.default_rng(9)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (80, 2)), axis=0))
    high, low = close * 1.01, close * 0.98
    cfg = parse_config({"models": [{"name": "x", "kind": "buy_and_hold"}],
                        "ledger": {"sizing": {"mode": "kelly", "window": 7},
                                   "stops": {"stop_loss_atr": 1, "atr_period": 4}}})
    from titan_ray.domain.calendar import Calendar

    def estimates(chunk: int) -> np.ndarray:
        est = MarketEstimates(cfg.ledger, 2, Calendar.CONTINUOUS)
        ts = T0 + np.arange(80) * DAY
        parts = [est.update(ts[i:i + chunk], close[i:i + chunk], high[i:i + chunk], low[i:i + chunk],
                            np.ones((min(chunk, 80 - i), 2))) for i in range(0, 80, chunk)]
        return np.concatenate([p[1:] for p in parts])

    whole, pieces = estimates(80), estimates(9)
    np.testing.assert_array_equal(whole, pieces)
    r = pd.DataFrame(close).pct_change()
    np.testing.assert_allclose(whole[:, :, SD], r.rolling(7).std().to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(whole[:, :, MU], r.rolling(7).mean().to_numpy(), rtol=1e-12, equal_nan=True)
    prev = pd.DataFrame(close).shift()
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    np.testing.assert_allclose(whole[:, :, ATR], pd.DataFrame(tr).rolling(4).mean().to_numpy(), rtol=1e-12,
                               equal_nan=True)


# --- impact ----------------------------------------------------------------------------------------


def test_almgren_chriss_prices_a_fill_with_its_temporary_and_permanent_parts():
    rng = np.random.default_rng(11)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 30))), 2)
    volume = rng.integers(20_000, 40_000, 30).astype(float)
    b = bars(c, volume=volume)
    w = np.zeros(30)
    w[24:27], w[27:] = 0.5, 1.0
    cfg = {"ledger": {"initial_cash": 1_000_000, "slippage": {"model": "almgren_chriss", "window": 10,
                                                              "liquidity_factor": 2.0}}}
    res = run(b, w, **cfg)
    r = pd.Series(c).pct_change()
    first, second = res.fills[0], res.fills[1]

    def price(bar: int, qty: float, position: float) -> float:
        sigma = r.rolling(10).std().iloc[bar - 1]  # one bar a day: sigma_day = sigma_bar, ADV = V_bar
        v_bar = pd.Series(volume).rolling(10).mean().iloc[bar - 1]
        temporary = 0.142 * sigma * (qty / v_bar) ** 0.6
        permanent = 0.314 * sigma * (position + qty / 2) / v_bar * 2.0
        return c[bar] * (1 + temporary + permanent)

    assert (first.bar, second.bar) == (25, 28)
    assert first.price == pytest.approx(price(25, first.quantity, 0.0), rel=1e-12)
    # the second buy pays the permanent shift of the model's own first one
    assert second.price == pytest.approx(price(28, second.quantity, first.quantity), rel=1e-12)
    assert second.price / c[28] - 1 > first.price / c[25] - 1


# --- the VaR limit and the group caps --------------------------------------------------------------


def test_the_var_limit_rejects_new_risk_while_the_rolling_var_is_past_it():
    from titan_ray.metrics.tail import historical_var

    rng = np.random.default_rng(2)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.03, 80))), 2)
    b = bars(c)
    w = np.where(np.arange(80) % 7 < 4, 1.0, 0.0)  # in and out: new risk every week
    risk = {"max_var_pct": 0.02, "var_window": 20}
    res = run(b, w, ledger={"initial_cash": 1_000_000}, risk=risk)
    returns = np.diff(np.r_[1_000_000.0, res.equity]) / np.r_[1_000_000.0, res.equity[:-1]]
    rejected = [o for o in res.orders if o.reason is RejectReason.VAR_LIMIT]
    assert rejected, "the limit never bit: the test's market is too calm"
    for o in res.orders:
        if o.side is not Side.BUY or o.status is OrderStatus.REJECTED and o.reason is not RejectReason.VAR_LIMIT:
            continue
        window = returns[max(0, o.bar - 20): o.bar]  # closes up to the bar before the fill
        breached = len(window) == 20 and -historical_var(window, 0.95) > 0.02
        assert (o.reason is RejectReason.VAR_LIMIT) == breached, o
    assert rejected[0].detail.startswith("VAR_LIMIT: the historical 95% VaR over 20 bars is a loss of")


def test_a_group_cap_rejects_what_would_pass_it():
    b = bars(np.full((4, 3), 100.0))
    w = np.array([[0.3, 0.3, 0.3]] * 4)
    res = run(b, w, ledger={"initial_cash": 1_000_000},
              risk={"max_group_pct": 0.5, "groups": {"S0": "tech", "S1": "tech", "S2": "energy"}})
    by_symbol = {o.symbol: o for o in res.orders}
    assert by_symbol["S0"].status is OrderStatus.FILLED and by_symbol["S2"].status is OrderStatus.FILLED
    assert by_symbol["S1"].reason is RejectReason.GROUP_EXPOSURE_EXCEEDED
    assert by_symbol["S1"].detail == "GROUP_EXPOSURE_EXCEEDED: max_group_pct=0.5, group_after=0.600000"


def test_a_group_cap_needs_its_groups():
    with pytest.raises(ValueError, match="give `groups`"):
        parse_config({"models": [{"name": "x", "kind": "buy_and_hold"}], "risk": {"max_group_pct": 0.5}})
    with pytest.raises(ValueError, match="stop_loss_pct and stop_loss_atr are both set"):
        parse_config({"models": [{"name": "x", "kind": "buy_and_hold"}],
                      "ledger": {"stops": {"stop_loss_pct": 0.1, "stop_loss_atr": 2}}})


@pytest.mark.parametrize("method", ["historical", "parametric"])
def test_the_kernels_var_is_metrics_tails_on_the_last_window(method):
    from titan_ray.metrics.tail import historical_var, parametric_var

    rng = np.random.default_rng(4)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 60))), 2)
    b = bars(c)
    led = ledger(ledger={"commission_bps": 0, "initial_cash": 1_000_000},
                 risk={"max_var_pct": 0.5, "var_window": 25, "var_level": 0.99, "var_method": method})
    led.apply(0, b, [decisions("m", np.where(np.arange(60) % 9 < 6, 1.0, 0.0))])
    equity = led.results()["m"].equity
    returns = np.diff(np.r_[1_000_000.0, equity]) / np.r_[1_000_000.0, equity[:-1]]
    want = (historical_var(returns[-25:], 0.99) if method == "historical"
            else parametric_var(returns[-25:], 0.99, "normal"))
    assert led.books["m"].account[0]["var_value"] == pytest.approx(want, rel=1e-12, abs=1e-15)
