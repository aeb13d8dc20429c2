"""The compiled booking core against the Python ledger it replaced, and its exact-money parts.

- ``value_micro`` and ``commission`` give the integers of the money policy's Python reference
  (``money.fill_value_micro``, ``money.Commission``), over the whole float range;
- ``pairwise_sum`` gives numpy's ``sum`` bit for bit, whatever the length;
- on random markets, weights and settings (several models, skipped chunks, invalid weights, holes
  in the prices, zero volumes, a kill switch, weights staged between chunks as the training env
  does), ``Ledger`` books exactly what ``oracle.Ledger`` books: the same fills, orders (detail
  texts included), round trips, positions and P&L, and equity curves equal to the bit. One
  difference by design: a risk rule's flattening carries its own id, ``risk:RULE:MODEL:SYMBOL:BAR``
  (a ``ForcedId``), where the Python ledger wrote the bare rule (``risk:circuit_breaker``), and it
  comes with explanation rows; the comparison reads each ``ForcedId`` as its rule and leaves
  those rows out (tests/unit/ledger/test_forced.py checks them).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DAY, T0, batch, decisions, ledger
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import Ledger as OracleLedger

from titan_ray.config import parse_config
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions, ForcedId
from titan_ray.domain.orders import ForcedBy
from titan_ray.ledger import kernel
from titan_ray.ledger.engine import Ledger, ModelResults
from titan_ray.ledger.money import Commission, fill_value_micro

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=3000)
@given(quantity=finite, price=finite)
def test_value_micro_is_the_money_policy_to_the_unit(quantity, price):
    expected = fill_value_micro(quantity, price)
    if abs(expected) >= 1 << 62:
        with pytest.raises(OverflowError):
            kernel.value_micro(quantity, price)
    else:
        assert kernel.value_micro(quantity, price) == expected


@settings(max_examples=1500)
@given(quantity=st.integers(1, 10**6).map(float) | st.floats(1e-6, 1e6), price=st.floats(1e-4, 1e6))
def test_value_micro_on_trading_sizes(quantity, price):
    assert kernel.value_micro(quantity, price) == fill_value_micro(quantity, price)


@settings(max_examples=1500)
@given(value=st.integers(-(1 << 62), 1 << 62),
       bps=st.sampled_from(["0", "1", "10", "25.5", "0.1", "3.14159", "12.5e-3", "99999.123456789012"]))
def test_commission_is_the_money_policy_to_the_unit(value, bps):
    c = Commission(bps)
    expected = c(value)
    if abs(expected) >= 1 << 63:
        with pytest.raises(OverflowError):
            kernel.commission(value, c.num, c.den)
    else:  # the widest products take Python's path
        assert kernel.commission(value, c.num, c.den) == expected


@pytest.mark.parametrize("n", [*range(40), 127, 128, 129, 255, 256, 257, 300, 1000, 1031])
def test_pairwise_sum_is_numpys_sum(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        a = rng.normal(size=n) * 10.0 ** rng.uniform(-8, 8, size=n)
        assert kernel.pairwise_sum(a) == a.sum()
        rows = rng.normal(size=(7, n)) * 10.0 ** rng.uniform(-8, 8, size=(7, n))
        assert [kernel.pairwise_sum(r) for r in rows] == rows.sum(axis=1).tolist()


@st.composite
def markets(draw):
    n_t = draw(st.integers(2, 60))
    n_s = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, draw(st.sampled_from([0.01, 0.05, 0.2])), (n_t, n_s)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, (n_t, n_s)))
    volume = rng.integers(0, 5000, (n_t, n_s)).astype(float)
    volume[rng.random((n_t, n_s)) < 0.05] = 0.0  # no trading: no liquidity for impact or participation
    if draw(st.booleans()):  # holes: no bar for a symbol at some timestamps (never the first)
        hole = rng.random((n_t, n_s)) < 0.1
        hole[0] = False
        close[hole], volume[hole] = np.nan, 0.0
        open_[hole | (rng.random((n_t, n_s)) < 0.05)] = np.nan
        open_[0] = close[0]
    n_models = draw(st.integers(1, 3))
    levels = np.array([-1.0, -0.6, -0.3, 0.0, 0.0, 0.1, 0.25, 0.5, 1.0])
    weights = levels[rng.integers(0, len(levels), (n_models, n_t, n_s))]
    hold = rng.random((n_models, n_t, n_s)) < draw(st.sampled_from([0.3, 0.6, 0.9]))
    for t in range(1, n_t):
        weights[:, t] = np.where(hold[:, t], weights[:, t - 1], weights[:, t])
    if draw(st.booleans()):
        bad = rng.random(weights.shape) < 0.03
        weights[bad] = rng.choice([np.nan, np.inf, 1.5, -2.0], size=int(bad.sum()))
    long_only = [draw(st.booleans()) for _ in range(n_models)]
    overrides = {
        "ledger": {
            "commission_bps": draw(st.sampled_from([0, 1, 10, 25.5, "0.123456789"])),
            "slippage": draw(st.sampled_from([
                {"model": "fixed_bps", "bps": 0}, {"model": "fixed_bps", "bps": 7},
                {"model": "sqrt_impact", "coefficient": 0.05, "bps": 1},
                {"model": "sqrt_impact", "coefficient": 3.0, "bps": 0},
            ])),
            "sizing": draw(st.sampled_from([{"mode": "target_weight"}, {"mode": "fixed_quantity", "quantity": 37},
                                            {"mode": "fixed_quantity", "quantity": 0.75}])),
            "fill": draw(st.sampled_from(["next_open", "same_close"])),
            "fractional": draw(st.booleans()),
            "max_participation": draw(st.sampled_from([None, 0.05, 0.5, 1.0])),
            "initial_cash": draw(st.sampled_from([100_000, 1_000_000, "250000.125", 1000])),
        },
        "risk": {
            "max_position_pct": draw(st.sampled_from([0.3, 1.0, 2.0])),
            "max_gross_exposure": draw(st.sampled_from([0.5, 1.0, 3.0])),
            "daily_loss_limit_pct": draw(st.sampled_from([None, 0.02, 0.2])),
            "max_drawdown_pct": draw(st.sampled_from([None, 0.1, 0.5])),
        },
    }
    chunk = draw(st.integers(1, n_t))
    calendar = draw(st.sampled_from(["continuous", "equities"]))
    step = draw(st.sampled_from([DAY // 4, DAY, 3_600 * 10**9]))
    skip = [draw(st.sets(st.integers(0, n_t), max_size=2)) for _ in range(n_models)]
    kill = draw(st.none() | st.tuples(st.integers(0, n_models - 1), st.integers(0, n_t), st.booleans()))
    staged = draw(st.sets(st.integers(0, n_t), max_size=3))  # chunks after which weights are staged
    return close, open_, volume, weights, long_only, overrides, chunk, calendar, step, skip, kill, staged


def _book(cls, market):
    close, open_, volume, weights, long_only, overrides, chunk, calendar, step, skip, kill, staged = market
    cfg = parse_config({**overrides, "models": [{"name": "x", "kind": "buy_and_hold"}]})
    n_t, n_s = close.shape
    symbols = [f"S{i}" for i in range(n_s)]
    bars = BarBatch.from_arrays(
        T0 + np.arange(n_t) * step, symbols, open=open_, high=np.fmax(open_, close), low=np.fmin(open_, close),
        close=close, volume=volume,
    )
    names = [f"m{i}" for i in range(len(long_only))]
    led = cls(ledger=cfg.ledger, risk=cfg.risk, symbols=symbols, calendar=calendar,
              models=dict(zip(names, long_only, strict=True)))
    for seq, part in enumerate(bars.chunks(chunk)):
        decs = [None if seq in skip[i] else Decisions(name, part.start, weights[i, part.start:part.stop])
                for i, name in enumerate(names)]
        led.apply(seq, part, decs)
        if seq == 0:
            led.results()  # reading results mid-run changes nothing
        if kill is not None and kill[1] == seq:
            led.kill_switch(names[kill[0]], kill[2])
        if seq in staged:
            led.stage(names[0], weights[0, part.stop - 1][::-1].copy(), part.stop - 1,
                      int(part.timestamps[-1]))
    return led.results()


def _as_oracle(records: list) -> list:
    """Fills or orders with each ``ForcedId`` read as its rule, as the Python ledger wrote it (the
    only change of format: the id's model and symbol are the record's own)."""
    out = []
    for r in records:
        did = getattr(r, "decision_id", None)  # round trips have none
        if isinstance(did, ForcedId):
            assert did == f"risk:{did.rule}:{r.model}:{r.symbol}:{did.bar}"
            r = r._replace(decision_id=ForcedBy.of(did))
        out.append(r)
    return out


def _same(a: ModelResults, b: ModelResults) -> None:
    for name in ("timestamps", "equity", "cash", "gross_exposure"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name  # to the bit, -0.0 included
    for name in ("fills", "orders", "round_trips"):
        x, y = _as_oracle(getattr(a, name)), getattr(b, name)
        assert x == y and repr(x) == repr(y), name
        assert [type(v) for r in x for v in r] == [type(v) for r in y for v in r], name
    for name in ("positions", "avg_cost", "realized_pnl", "cash_micro", "initial_cash_micro", "skipped_chunks",
                 "halted", "symbols", "marks", "model"):
        x, y = getattr(a, name), getattr(b, name)
        assert repr(x) == repr(y), name
    assert [e for e in a.explanations if e.rule is None] == b.explanations


@settings(max_examples=400)
@given(markets())
def test_the_kernel_books_what_the_python_ledger_booked(market):
    try:
        expected = _book(OracleLedger, market)
    except (ValueError, OverflowError):  # the Python ledger refused (a NaN equity, say): so must the kernel
        with pytest.raises((ValueError, OverflowError)):
            _book(Ledger, market)
        return
    got = _book(Ledger, market)
    assert got.keys() == expected.keys()
    for name in expected:
        _same(got[name], expected[name])


def test_amounts_beyond_exact_int64_money_are_refused_with_the_field_and_the_fix():
    with pytest.raises(ValueError, match=r"ledger.initial_cash=.*use a smaller amount"):
        ledger(ledger={"initial_cash": "5e12"})
    with pytest.raises(ValueError, match=r"ledger.commission_bps=.*round it"):
        ledger(ledger={"commission_bps": "1.0000000000000000000001"})
    led = ledger(ledger={"sizing": {"mode": "fixed_quantity", "quantity": 1e15}}, risk={"max_position_pct": 1e13,
                                                                                         "max_gross_exposure": 1e13})
    with pytest.raises(OverflowError, match="2\\*\\*62 micro-units"):
        led.apply(0, batch([100.0, 100.0]), [decisions("m", [1.0, 1.0])])


def test_staged_weights_of_the_wrong_shape_are_refused():
    led = ledger(n_symbols=2)
    with pytest.raises(ValueError, match=r"shape \(3,\); expected \(2,\)"):
        led.stage("m", np.ones(3), 0, T0)
