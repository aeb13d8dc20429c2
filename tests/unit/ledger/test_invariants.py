"""Property tests: whatever the prices, weights and settings, the books balance exactly.

- cash moves only by fills and commissions: cash = initial - buys + sells - commissions, to the
  micro-unit (integers, no float drift);
- equity = cash + sum(position x mark) at every bar;
- the round trips' exact P&L plus the open trips' cash flows equal cash - initial;
- every rejected order carries a reason, every fill a positive quantity, and an order's fills (the
  child fills of twap, vwap and pov parents) add up to what it says it filled;
- results do not depend on how the bars are chunked.
"""

from __future__ import annotations

import numpy as np
from helpers import DAY, T0
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_ray.config import parse_config
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions
from titan_ray.domain.orders import OrderStatus, Side
from titan_ray.ledger.engine import Ledger


@st.composite
def scenarios(draw):
    n_t = draw(st.integers(2, 40))
    n_s = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.05, (n_t, n_s)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, (n_t, n_s)))
    volume = rng.integers(0, 5000, (n_t, n_s)).astype(float)
    levels = np.array([-0.6, -0.3, 0.0, 0.0, 0.25, 0.5, 1.0])
    weights = levels[rng.integers(0, len(levels), (n_t, n_s))]
    hold = rng.random((n_t, n_s)) < 0.6  # weights change only sometimes, as models do
    for t in range(1, n_t):
        weights[t] = np.where(hold[t], weights[t - 1], weights[t])
    overrides = {
        "ledger": {
            "commission_bps": draw(st.sampled_from([0, 1, 10, 25.5])),
            "slippage": draw(st.sampled_from([
                {"model": "fixed_bps", "bps": 0}, {"model": "fixed_bps", "bps": 7},
                {"model": "sqrt_impact", "coefficient": 0.05, "bps": 1},
                {"model": "almgren_chriss", "window": 3, "bps": 2},
            ])),
            "sizing": draw(st.sampled_from([
                {"mode": "target_weight"}, {"mode": "fixed_quantity", "quantity": 37},
                {"mode": "vol_target", "window": 3, "target_vol": 0.5}, {"mode": "kelly", "window": 4, "cap": 2},
                {"mode": "risk_parity", "window": 3},
            ])),
            "stops": draw(st.sampled_from([
                {}, {"stop_loss_pct": 0.04}, {"take_profit_pct": 0.05, "trailing_pct": 0.03},
                {"stop_loss_atr": 1.5, "take_profit_atr": 2, "trailing_atr": 1, "atr_period": 3},
            ])),
            "execution": draw(st.sampled_from([
                {"algo": "immediate"}, {"algo": "twap", "bars": 3}, {"algo": "vwap", "bars": 4, "volume_window": 3},
                {"algo": "pov", "rate": 0.2},
            ])),
            "fill": draw(st.sampled_from(["next_open", "same_close"])),
            "fractional": draw(st.booleans()),
            "max_participation": draw(st.sampled_from([None, 0.05, 0.5])),
            "initial_cash": draw(st.sampled_from([100_000, 1_000_000, "250000.125"])),
        },
        "risk": {
            "max_position_pct": draw(st.sampled_from([0.3, 1.0, 2.0])),
            "max_gross_exposure": draw(st.sampled_from([0.5, 1.0, 3.0])),
            "daily_loss_limit_pct": draw(st.sampled_from([None, 0.02])),
            "max_drawdown_pct": draw(st.sampled_from([None, 0.1])),
            **draw(st.sampled_from([{}, {"max_var_pct": 0.01, "var_window": 10},
                                    {"max_var_pct": 0.02, "var_window": 12, "var_method": "parametric"}])),
            **draw(st.sampled_from([{}, {"max_group_pct": 0.6, "groups": {"S0": "a", "S1": "a", "S3": "b"}}])),
        },
    }
    chunk = draw(st.integers(1, n_t))
    return close, open_, volume, weights, overrides, chunk


def _run(close, open_, volume, weights, overrides, chunk):
    cfg = parse_config({**overrides, "models": [{"name": "x", "kind": "buy_and_hold"}]})
    n_t, n_s = close.shape
    symbols = [f"S{i}" for i in range(n_s)]
    bars = BarBatch.from_arrays(
        T0 + np.arange(n_t) * DAY // 4, symbols, open=open_, high=np.fmax(open_, close) * 1.01,
        low=np.fmin(open_, close) * 0.99, close=close, volume=volume,
    )
    led = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=symbols, calendar="continuous", models={"m": False})
    for seq, part in enumerate(bars.chunks(chunk)):
        led.apply(seq, part, [Decisions("m", part.start, weights[part.start:part.stop])])
    return led.results()["m"], bars, cfg


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_books_balance_exactly(scenario):
    res, bars, _cfg = _run(*scenario)
    buys = sum(f.value_micro for f in res.fills if f.side is Side.BUY)
    sells = sum(f.value_micro for f in res.fills if f.side is Side.SELL)
    commissions = sum(f.commission_micro for f in res.fills)
    assert res.cash_micro == res.initial_cash_micro - buys + sells - commissions
    assert res.cash[-1] == res.cash_micro / 1e6

    position = np.zeros(bars.n_symbols)
    for f in res.fills:
        position[bars.symbols.index(f.symbol)] += f.quantity if f.side is Side.BUY else -f.quantity
        assert f.quantity > 0 and np.isfinite(f.price) and f.price > 0
    assert {s: q for s, q in zip(bars.symbols, position, strict=True) if q} == res.positions
    expected = res.cash[-1] + float(position @ bars.close[-1])
    assert abs(res.equity[-1] - expected) <= 1e-9 * max(1.0, abs(expected))

    trips = sum(t.pnl_micro for t in res.round_trips)
    open_flows = res.cash_micro - res.initial_cash_micro - trips
    if not res.positions:
        assert open_flows == 0  # everything closed: the round trips are the whole cash P&L

    filled: dict[int, float] = {}
    for f in res.fills:
        filled[f.order_id] = filled.get(f.order_id, 0.0) + f.quantity
    for o in res.orders:
        assert (o.status is OrderStatus.REJECTED) == (o.reason is not None)
        assert o.filled <= o.quantity + 1e-9
        assert abs(filled.pop(o.order_id, 0.0) - o.filled) <= 1e-9 * max(1.0, o.filled)
        if o.status is OrderStatus.FILLED:
            assert o.filled == o.quantity
        if o.status is OrderStatus.REJECTED:
            assert o.detail.startswith(o.reason.value)
    assert not filled  # every fill belongs to an order


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_results_do_not_depend_on_the_chunk_size(scenario):
    close, open_, volume, weights, overrides, chunk = scenario
    a, _, _ = _run(close, open_, volume, weights, overrides, chunk)
    b, _, _ = _run(close, open_, volume, weights, overrides, len(close))
    assert np.array_equal(a.equity, b.equity) and a.cash_micro == b.cash_micro
    assert a.fills == b.fills and a.orders == b.orders
