"""Baseline models: chunk-size invariance, the classic rules, and an explanation per change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.models.kinds import BASELINE_KINDS, build_model


@pytest.fixture(scope="module")
def market() -> BarBatch:
    return SyntheticProvider(DataConfig(n_symbols=5, bars=700), seed=3).load().bars


def _weights(kind, bars, chunk, params=None, seed=1):
    model = build_model("m", kind, params or {}, bars.symbols, seed=seed)
    parts = [model.decide(c) for c in bars.chunks(chunk)]
    records = [e for p in parts if p.explanations is not None for e in p.explanations.records(bars.symbols)]
    return np.vstack([p.weights for p in parts]), records


@pytest.mark.parametrize("kind", BASELINE_KINDS)
@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_weights_are_bit_identical_whatever_the_chunk_size(market, kind, chunk):
    whole, whole_expl = _weights(kind, market, len(market))
    chunked, chunked_expl = _weights(kind, market, chunk)
    assert whole.tobytes() == chunked.tobytes()
    assert repr(whole_expl) == repr(chunked_expl)  # repr: base_value is NaN for rules


@pytest.mark.parametrize("kind", BASELINE_KINDS)
def test_every_change_of_weight_has_one_explanation(market, kind):
    weights, expl = _weights(kind, market, 64)
    prev = np.vstack([np.zeros(market.n_symbols), weights[:-1]])
    changes = {(int(t), market.symbols[s]) for t, s in zip(*np.nonzero(weights != prev), strict=True)}
    assert changes, "the model never traded on 700 bars"
    assert {(e.bar, e.symbol) for e in expl} == changes
    for e in expl:
        assert e.sentence and e.symbol in e.sentence and e.method == "rule"
        assert e.decision_id == f"m:{e.symbol}:{e.bar}"


def test_sma_crossover_is_the_classic_rule(market):
    weights, _ = _weights("sma_crossover", market, 100, {"fast": 5, "slow": 20, "weight": 1.0})
    close = pd.DataFrame(market.close)
    fast, slow = close.rolling(5).mean().to_numpy(), close.rolling(20).mean().to_numpy()
    up = (np.roll(fast, 1, 0) < np.roll(slow, 1, 0)) & (fast > slow)
    down = (np.roll(fast, 1, 0) > np.roll(slow, 1, 0)) & (fast < slow)
    up[0] = down[0] = False
    state, expected = np.zeros(market.n_symbols), []
    for t in range(len(market)):
        state = np.where(up[t], 1.0, np.where(down[t], 0.0, state))
        expected.append(state)
    assert np.array_equal(weights, np.array(expected))


def _wilder_rsi(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    d = np.diff(x)
    gain, loss = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = gain[:n].mean(), loss[:n].mean()
    out[n] = 100 - 100 / (1 + ag / al)
    for i in range(n + 1, len(x)):
        ag = (ag * (n - 1) + gain[i - 1]) / n
        al = (al * (n - 1) + loss[i - 1]) / n
        out[i] = 100 - 100 / (1 + ag / al)
    return out


def test_rsi_is_wilders(market):
    model = build_model("r", "rsi_reversion", {"period": 14}, market.symbols, seed=1)
    _, info = model._weights(market)
    for s in range(market.n_symbols):
        np.testing.assert_allclose(info["rsi"][:, s], _wilder_rsi(market.close[:, s], 14), rtol=1e-10,
                                   equal_nan=True)


def test_random_is_seeded(market):
    a, _ = _weights("random", market, 50, seed=1)
    b, _ = _weights("random", market, 50, seed=1)
    c, _ = _weights("random", market, 50, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_buy_and_hold_buys_each_symbol_on_its_first_bar():
    close = np.array([[np.nan, 10.0], [11.0, 10.5], [12.0, 11.0]])
    bars = BarBatch.from_arrays(np.arange(3), ["A", "B"], open=close, high=close, low=close, close=close,
                                volume=np.ones((3, 2)))
    model = build_model("h", "buy_and_hold", {}, bars.symbols, seed=1)
    d = model.decide(bars)
    assert d.weights.tolist() == [[0.0, 0.5], [0.5, 0.5], [0.5, 0.5]]
    assert [(e.symbol, e.bar) for e in d.explanations.records(bars.symbols)] == [("B", 0), ("A", 1)]


@pytest.mark.parametrize("params,match", [
    ({"fast": 30, "slow": 10}, "fast"), ({"period": 1}, "period"), ({"unknown": 1}, "unknown"),
])
def test_bad_params_are_refused(params, match):
    kind = "rsi_reversion" if "period" in params else "sma_crossover"
    with pytest.raises(ValueError, match=match):
        build_model("m", kind, params, ("A",), seed=1)
