"""``allocator``: a fund of the arena's models. Its weight is its members' weights mixed by an allocation set
from their returns, causally; the allocation is its "why"; and neither chunk size nor a replay from the
members' signals changes a decision."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from titan_ray.config import ConfigError, DataConfig, SyntheticConfig, parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import ExplanationBatch, action_phrase
from titan_ray.models.allocator import AllocatorModel
from titan_ray.models.base import Stacker, TradingModel
from titan_ray.models.kinds import build_model
from titan_ray.models.params import AllocatorParams
from titan_ray.risk.allocation import equal_weights, hrp_weights, inverse_vol_weights

WARM, N_BARS = 100, 700
MEMBERS = ("sma", "rsi", "hold", "coin")
FUND = {"inputs": list(MEMBERS), "method": "hrp", "lookback": 40, "rebalance_every": 15}


def market(seed: int = 4) -> BarBatch:
    syn = SyntheticConfig(signal=0.1, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=4, bars=N_BARS, synthetic=syn), seed).load().bars


def members(symbols: tuple[str, ...]) -> list[TradingModel]:
    return [build_model("sma", "sma_crossover", {"fast": 5, "slow": 20}, symbols, seed=3),
            build_model("rsi", "rsi_reversion", {"period": 7}, symbols, seed=3),
            build_model("hold", "buy_and_hold", {}, symbols, seed=3),
            build_model("coin", "random", {"every": 13, "allow_short": True}, symbols, seed=3)]


def wire(fund: TradingModel, inputs: list[TradingModel]) -> None:
    """As a restarted actor's are: the members keep their signals, the fund reads them where it is not fed."""
    by_name = {m.name: m for m in inputs}
    for m in inputs:
        m.record_signals()
    fund.attach(lambda start, stop, oof: {n: by_name[n].signals(start, stop, oof) for n in fund.stacked})


def arena(bars: BarBatch, params: dict | None = None, *, size: int = 64, feed: bool = True,
          left_out: dict[int, str] | None = None):
    """The arena's order in one process: the members decide each chunk, then the fund, fed their decisions
    (``feed=False``: reading their signals, as a restarted actor does; ``left_out``: chunk index → a member
    left out of it)."""
    bases = members(bars.symbols)
    fund = build_model("fund", "allocator", {**FUND, **(params or {})}, bars.symbols, seed=3)
    wire(fund, bases)
    for chunk in bars.slice(0, WARM).chunks(size):
        for m in (*bases, fund):
            m.observe(chunk)
    decided: dict[str, list] = {m.name: [] for m in (*bases, fund)}
    for k, chunk in enumerate(bars.slice(WARM, len(bars)).chunks(size)):
        ds = {b.name: b.decide(chunk) for b in bases}
        if feed:
            out = (left_out or {}).get(k)
            fund.feed(chunk.start, chunk.stop, {n: None if n == out else d for n, d in ds.items()})
        ds["fund"] = fund.decide(chunk)
        for name, d in ds.items():
            decided[name].append(d)
    weights = {n: np.vstack([d.weights for d in ds]) for n, ds in decided.items()}
    ex = ExplanationBatch.concat([d.explanations for d in decided["fund"] if d.explanations is not None])
    return fund, weights, ex


def by_hand(bars: BarBatch, w: dict[str, np.ndarray], p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fund's allocation (T, M) and weights (T, S) over the traded bars, one bar at a time, from the
    members' weights ``w`` and the formulas of the module's docstring."""
    close = bars.close[WARM - 1:]  # the last warm-up close, then the traded bars'
    W = np.stack([w[n] for n in MEMBERS], axis=2)  # (T, S, M)
    allocate = {"equal": lambda r: equal_weights(r.shape[1]), "inverse_vol": inverse_vol_weights,
                "hrp": hrp_weights}[p["method"]]
    a, returns = equal_weights(len(MEMBERS)), []
    alloc, weights = [], []
    for t in range(len(W)):
        if t > 0:  # the weights decided at t-1 earn bar t's close-to-close move
            move = close[t + 1] / close[t] - 1
            returns.append(sum(W[t - 1, s] * move[s] for s in range(len(move))))
            n = len(returns)
            if n >= p["lookback"] and (n - p["lookback"]) % p["rebalance_every"] == 0:
                a = allocate(np.array(returns[-p["lookback"]:]))
        alloc.append(a)
        weights.append(np.clip(sum(a[m] * W[t, :, m] for m in range(len(MEMBERS))), -1, 1))
    return np.array(alloc), np.array(weights)


@pytest.fixture(scope="module")
def bars() -> BarBatch:
    return market()


@pytest.fixture(scope="module")
def run(bars):
    return arena(bars)


def test_it_is_a_stacker_over_its_members_and_may_go_short(run):
    fund, w, _ = run
    assert isinstance(fund, AllocatorModel) and isinstance(fund, Stacker) and fund.stacked == MEMBERS
    assert fund.long_only is False and (w["coin"] < 0).any()
    assert (w["fund"] < 0).any()  # where the member that shorts holds most of its symbol's weight


@pytest.mark.parametrize("method", ["equal", "inverse_vol", "hrp"])
def test_the_weights_are_the_formulas_bar_by_bar(bars, method):
    p = {**FUND, "method": method}
    fund, w, ex = arena(bars, {"method": method})
    alloc, expected = by_hand(bars, w, p)
    np.testing.assert_allclose(w["fund"], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(fund.allocation, alloc[-1], rtol=0, atol=1e-12)
    # the allocation shown with each decision is the one in force at its bar
    np.testing.assert_allclose(ex.values, alloc[ex.bar - WARM], rtol=0, atol=1e-12)
    # it moved off equal weight at the first rebalance (lookback returns: the bar after 40 decided), no earlier
    moved = np.flatnonzero(np.abs(alloc - 0.25).max(axis=1) > 0)
    if method == "equal":
        assert not len(moved)
    else:
        assert moved[0] == FUND["lookback"]
        changes = np.flatnonzero(np.abs(np.diff(alloc, axis=0)).max(axis=1) > 0) + 1
        assert set(changes) <= set(range(FUND["lookback"], len(alloc), FUND["rebalance_every"]))
        assert fund.rebalanced_at is not None and (fund.rebalanced_at - WARM - 40) % 15 == 0


def test_the_allocation_is_the_why_and_the_contributions_add_up_to_the_weight(run, bars):
    _, w, ex = run
    assert ex.method == "allocation" and ex.kind == "allocator" and ex.feature_names == MEMBERS and len(ex) > 20
    member = np.stack([w[n][ex.bar - WARM, ex.symbol] for n in MEMBERS], axis=1)
    np.testing.assert_array_equal(ex.attributions, ex.values * member)
    np.testing.assert_allclose(ex.attributions.sum(axis=1), ex.new_weight, rtol=0, atol=1e-15)
    assert np.nanmax(ex.gap) < 1e-15 and (ex.base_value == 0).all()
    np.testing.assert_allclose(ex.values.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    texts = ex.texts(bars.symbols)
    assert all(": hrp allocation sma " in s and ", coin " in s and "%" in s for s in texts)
    late = int(np.flatnonzero(ex.bar > WARM + 60)[0])  # after the first rebalance
    a, held = ex.values[late], member[late]
    shares = ", ".join(f"{n} {v:.0%}" for n, v in zip(MEMBERS, a, strict=True))
    holding = ", ".join(f"{n} {'long' if x > 0 else 'short'} ({x:.3g})" if x else f"{n} flat"
                        for n, x, v in zip(MEMBERS, held, a, strict=True) if v > 0)
    action = action_phrase(bars.symbols[ex.symbol[late]], ex.old_weight[late], ex.new_weight[late])
    assert texts[late] == f"{action}: hrp allocation {shares}; {holding}."


@pytest.mark.parametrize("size", [1, 7, 500])
def test_the_same_decisions_whatever_the_chunk_size(run, bars, size):
    _, w, ex = run
    _, w2, ex2 = arena(bars, size=size)
    assert w["fund"].tobytes() == w2["fund"].tobytes()
    assert repr(ex.records(bars.symbols)) == repr(ex2.records(bars.symbols))


def test_a_replay_from_the_members_signals_decides_as_when_fed(run, bars):
    _, w, ex = run
    _, w2, ex2 = arena(bars, feed=False, size=50)
    assert w["fund"].tobytes() == w2["fund"].tobytes()
    assert repr(ex.records(bars.symbols)) == repr(ex2.records(bars.symbols))


def test_no_look_ahead_another_future_leaves_every_earlier_decision_as_it_was(bars):
    k = 400  # the market changes from this bar on
    other = market(21)
    scale = bars.close[k - 1] / other.close[k - 1]
    prices = {f: np.vstack([getattr(bars, f)[:k], getattr(other, f)[k:] * scale])
              for f in ("open", "high", "low", "close")}
    spliced = BarBatch.from_arrays(bars.timestamps, bars.symbols, volume=bars.volume, **prices)
    _, wa, ea = arena(bars)
    _, wb, eb = arena(spliced)
    n = k - WARM
    np.testing.assert_array_equal(wa["fund"][:n], wb["fund"][:n])
    np.testing.assert_array_equal(ea.values[ea.bar < k], eb.values[eb.bar < k])
    assert not np.array_equal(wa["fund"][n:], wb["fund"][n:])


def test_a_member_left_out_is_read_as_flat_and_the_sentences_say_so(bars):
    _, _, ex = arena(bars, left_out={2: "hold"})
    rows = (ex.bar >= WARM + 128) & (ex.bar < WARM + 192)
    assert rows.any()
    assert (ex.attributions[rows, MEMBERS.index("hold")] == 0).all()
    assert all("(hold left out: read as flat)" in s for s in np.array(ex.texts(bars.symbols))[rows])
    assert not any("left out" in s for s in np.array(ex.texts(bars.symbols))[~rows])


def test_a_missing_close_earns_nothing_and_the_next_close_is_compared_with_the_last_known():
    t0 = np.datetime64("2024-03-04T14:30", "ns").astype(np.int64)
    ts = t0 + np.arange(6, dtype=np.int64) * 86_400 * 10**9
    close = np.array([[100.0, 50.0], [110.0, 50.0], [np.nan, 55.0], [121.0, 55.0], [121.0, 55.0], [121.0, 55.0]])
    bars = BarBatch.from_arrays(ts, ("A", "B"), open=close, high=close, low=close, close=close,
                                volume=np.ones((6, 2)))
    fund = AllocatorModel("fund", {"inputs": ["x", "y"], "method": "inverse_vol", "lookback": 4,
                                   "rebalance_every": 1}, bars.symbols, seed=0)
    weights = {"x": np.tile([1.0, 0.0], (6, 1)), "y": np.tile([0.0, 1.0], (6, 1))}
    fund.observe(bars.slice(0, 1))
    fund.feed(1, 6, {n: w[1:] for n, w in weights.items()})
    fund.decide(bars.slice(1, 6))
    # returns from bar 2: x holds A (NaN, then 121 vs 110, then flat), y holds B (+10%, then flat)
    np.testing.assert_allclose(fund._returns, [[0.0, 0.1], [0.1, 0.0], [0.0, 0.0], [0.0, 0.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(fund.allocation, [0.5, 0.5])  # the same volatility each
    assert fund.rebalanced_at == 5


def test_feeding_the_wrong_models_or_bars_is_refused(bars):
    fund = build_model("fund", "allocator", FUND, bars.symbols, seed=0)
    with pytest.raises(ValueError, match="allocates across"):
        fund.feed(0, 5, {"sma": np.zeros((5, 4))})
    with pytest.raises(ValueError, match="for bars"):
        fund.feed(0, 5, {n: np.zeros((4, 4)) for n in MEMBERS})
    with pytest.raises(RuntimeError, match="attach a source"):
        fund.decide(bars.slice(0, 5))
    with pytest.raises(TypeError, match="in an arena"):
        fund.explain(bars.slice(0, 50))


def test_params():
    p = AllocatorParams(inputs=["a", "b"])
    assert (p.method, p.lookback, p.rebalance_every) == ("hrp", 60, 20)
    assert p.arena_inputs() == ("a", "b") and p.min_history() == 0
    with pytest.raises(ValidationError, match="inputs"):
        AllocatorParams()
    with pytest.raises(ValidationError, match="at least 1"):
        AllocatorParams(inputs=[])
    with pytest.raises(ValidationError, match="listed twice"):
        AllocatorParams(inputs=["a", "a"])
    with pytest.raises(ValidationError, match="method"):
        AllocatorParams(inputs=["a"], method="mean_variance")
    with pytest.raises(ValidationError, match="lookback"):
        AllocatorParams(inputs=["a"], lookback=1)


def test_an_arena_config_orders_the_fund_after_its_members_and_checks_their_names():
    models = [{"name": "fund", "kind": "allocator", "params": {"inputs": ["sma", "hold"]}},
              {"name": "sma", "kind": "sma_crossover"}, {"name": "hold", "kind": "buy_and_hold"}]
    cfg = parse_config({"models": models})
    assert cfg.stacking_inputs == {"fund": ("sma", "hold")}
    assert cfg.decision_order == ["sma", "hold", "fund"]
    bad = [{**models[0], "params": {"inputs": ["sma", "hodl"]}}, *models[1:]]
    with pytest.raises(ConfigError, match="did you mean 'hold'"):
        parse_config({"models": bad})
