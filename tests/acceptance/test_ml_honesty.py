"""Are the learned models honest? No edge where there is none, an edge where one was planted.

(a) No look-ahead: on several synthetic random walks, traded with costs, no ML model's
    out-of-sample Sharpe ratio is significantly above zero (probabilistic Sharpe ratio,
    Bonferroni over every market x model). The same check flags a model given one deliberately
    leaky feature (the next bars' return), so it can catch look-ahead when there is some.
(b) Signal is found: on markets with a weak planted predictable component (momentum in each
    symbol's idiosyncratic shocks, a few % of variance), LightGBM and the torch models beat
    buy_and_hold and random out of sample (after the warm-up they fitted on), fixed seeds.

Every model fits only on the warm-up bars and trades the rest through the arena's own ledger.
"""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import DataConfig, LedgerConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.features import FeatureEngine
from titan_ray.metrics.performance import sharpe
from titan_ray.metrics.significance import probabilistic_sharpe_ratio
from titan_ray.ml.backtest import backtest
from titan_ray.models.kinds import build_model
from titan_ray.models.lightgbm_model import LightGBMModel

N_SYMBOLS, N_BARS, WARM = 6, 1400, 700
PERIODS = 252 * 26  # 15-minute bars
ALPHA = 0.05
ML = {  # small settings: the point is honesty, not polish
    "lightgbm": {"n_estimators": 80, "cv_folds": 2},
    "stacking": {"lgb_rounds": 40},
    "lstm_attention": {"window": 8, "hidden": 16, "epochs": 4, "max_train_windows": 3000},
    "tft": {"window": 8, "hidden": 8, "epochs": 4, "max_train_windows": 3000},
}
RANDOM_WALK_SEEDS = (21, 22, 23)
PLANTED_SEEDS = (1, 2)


def market(seed: int, *, signal: float = 0.0) -> BarBatch:
    syn = SyntheticConfig(random_walk=signal == 0, signal=signal, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=N_SYMBOLS, bars=N_BARS, synthetic=syn), seed).load().bars


def significantly_positive(returns: np.ndarray, n_tests: int) -> bool:
    """H0: Sharpe <= 0, rejected at ALPHA / n_tests (Bonferroni) by the probabilistic Sharpe ratio."""
    psr = probabilistic_sharpe_ratio(returns, 0.0)
    return bool(np.isfinite(psr) and psr > 1 - ALPHA / n_tests)


class _LeakyStream:
    def __init__(self, engine: _LeakyEngine) -> None:
        self.engine, self.inner = engine, engine.inner.stream()

    def update(self, chunk: BarBatch) -> np.ndarray:
        return self.engine.add_leak(self.inner.update(chunk), chunk)


class _LeakyEngine:
    """The usual features plus one that peeks: the log return over the NEXT 5 bars."""

    def __init__(self, future_close: np.ndarray) -> None:
        self.inner = FeatureEngine()
        self.names = (*self.inner.names, "future_ret_5")
        self.lookback = self.inner.lookback
        logc = np.log(future_close)
        self._future = np.full(logc.shape, np.nan)
        self._future[:-5] = logc[5:] - logc[:-5]

    def add_leak(self, x: np.ndarray, chunk: BarBatch) -> np.ndarray:
        leak = self._future[chunk.start : chunk.stop][:, :, None]
        return np.concatenate([x, leak], axis=2)

    def transform(self, bars: BarBatch) -> np.ndarray:
        return self.add_leak(self.inner.transform(bars), bars)

    def stream(self) -> _LeakyStream:
        return _LeakyStream(self)


def leaky_lightgbm(bars: BarBatch, seed: int) -> LightGBMModel:
    m = LightGBMModel("leaky", ML["lightgbm"], bars.symbols, seed=seed)
    m.features = _LeakyEngine(bars.close)  # type: ignore[assignment]
    m._stream = m.features.stream()
    return m


@pytest.fixture(scope="module")
def random_walk_runs():
    runs = []
    for seed in RANDOM_WALK_SEEDS:
        bars = market(seed)
        models = [build_model(kind, kind, params, bars.symbols, seed=seed) for kind, params in ML.items()]
        models.append(leaky_lightgbm(bars, seed))
        runs.append(backtest(models, bars, warmup=WARM, ledger=LedgerConfig(commission_bps=10)))  # 10 bps + 0 slip
    return runs


def test_no_model_has_a_significant_edge_on_random_walks(random_walk_runs):
    n_tests = len(RANDOM_WALK_SEEDS) * len(ML)
    report = {}
    for seed, bt in zip(RANDOM_WALK_SEEDS, random_walk_runs, strict=True):
        for name in ML:
            r = bt.returns(name)
            assert len(r) == N_BARS - WARM
            report[(seed, name)] = (round(sharpe(r, PERIODS), 2), round(probabilistic_sharpe_ratio(r, 0.0), 4))
            assert bt.results[name].fills, f"{name} never traded on market {seed}: the check would be empty"
            assert not significantly_positive(r, n_tests), f"{name} on random walk {seed}: {report}"


def test_the_same_check_catches_a_leaky_feature(random_walk_runs):
    n_tests = len(RANDOM_WALK_SEEDS) * len(ML)
    for seed, bt in zip(RANDOM_WALK_SEEDS, random_walk_runs, strict=True):
        r = bt.returns("leaky")
        assert significantly_positive(r, n_tests), (seed, sharpe(r, PERIODS), probabilistic_sharpe_ratio(r, 0.0))


def test_learned_models_find_a_planted_signal_out_of_sample():
    kinds = ("lightgbm", "lstm_attention", "tft")
    sharpes: dict[str, list[float]] = {k: [] for k in (*kinds, "buy_and_hold", "random")}
    for seed in PLANTED_SEEDS:
        bars = market(seed, signal=0.25)
        models = [build_model(k, k, ML[k], bars.symbols, seed=seed) for k in kinds]
        models += [build_model(k, k, {}, bars.symbols, seed=seed) for k in ("buy_and_hold", "random")]
        bt = backtest(models, bars, warmup=WARM, ledger=LedgerConfig(commission_bps=2))
        for m in models:
            sharpes[m.name].append(sharpe(bt.returns(m.name), PERIODS))
    mean = {k: float(np.mean(v)) for k, v in sharpes.items()}
    bar = max(mean["buy_and_hold"], mean["random"])
    assert mean["lightgbm"] > bar + 1.0, mean
    assert max(mean["lstm_attention"], mean["tft"]) > bar + 1.0, mean
